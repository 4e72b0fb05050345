#!/bin/sh
# extract-vmlinux.sh IMAGE - print the ELF kernel inside a bzImage, as the
# kernel's scripts/extract-vmlinux does: find the compressed payload by
# its magic, decompress from there, keep the result if it is ELF. qemu
# boots the ELF (PVH entry) without the guest decompressing it under TCG.
set -eu
img=$1
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
try() {	# magic (as grep -P bytes), decompressor
	for pos in $(LC_ALL=C grep -obUaP "$1" "$img" | cut -d: -f1); do
		tail -c +$((pos + 1)) "$img" | $2 > "$tmp" 2>/dev/null || true
		if [ "$(head -c 4 "$tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			cat "$tmp"
			exit 0
		fi
	done
}
try '\xfd\x37\x7a\x58\x5a\x00' 'xz -dc'
try '\x1f\x8b\x08' 'gzip -dc'
try '\x28\xb5\x2f\xfd' 'zstd -dc'
echo "extract-vmlinux: no ELF kernel found in $img" >&2
exit 1
