#!/bin/sh
# vm-kernel.sh DIR KVER [MODULE...] - Debian's kernel of release KVER for
# the test VMs (tests/kmod/run-vm.sh, tests/powercut/run-vm.sh), cached in
# DIR: prints the path of the image qemu should boot, the ELF vmlinux
# when it could be extracted (qemu boots it directly, PVH, in a third of
# the time under TCG), else the vmlinuz.
#
# Each MODULE is a path under the package's lib/modules/KVER/kernel/
# (fs/ext4/ext4.ko); it is copied, uncompressed as the package has it,
# to DIR/modules-KVER/ under its file name. The package is downloaded
# with apt-get only when something is missing, and only the files named
# are taken out of it: installing it would run update-initramfs for
# nothing.
set -eu

dir=$1
kver=$2
shift 2
mods=$dir/modules-$kver

missing() {
	[ -s "$dir/vmlinux-$kver" ] || [ -s "$dir/vmlinuz-$kver" ] || return 0
	for m in "$@"; do
		[ -s "$mods/$(basename "$m")" ] || return 0
	done
	return 1
}

fetch_deb() {
	rm -f "$dir"/linux-image-*.deb
	( cd "$dir" &&
	  { apt-get download -q -o APT::Sandbox::User=root \
		"linux-image-$kver" >/dev/null 2>&1 ||
	    { apt-get update -q >/dev/null &&
	      apt-get download -q -o APT::Sandbox::User=root \
		"linux-image-$kver" >/dev/null; }; } )
}

mkdir -p "$dir"
if missing "$@"; then
	fetch_deb
	deb=$(ls "$dir"/linux-image-*.deb)
	if [ ! -s "$dir/vmlinuz-$kver" ]; then
		dpkg-deb --fsys-tarfile "$deb" |
			tar -xO "./boot/vmlinuz-$kver" > "$dir/vmlinuz-$kver.tmp"
		mv "$dir/vmlinuz-$kver.tmp" "$dir/vmlinuz-$kver"
	fi
	if [ $# -gt 0 ]; then
		rm -rf "$mods.tmp"
		mkdir -p "$mods.tmp"
		for m in "$@"; do
			echo "./lib/modules/$kver/kernel/$m"
		done > "$dir/modules.list"
		dpkg-deb --fsys-tarfile "$deb" |
			tar -x -C "$mods.tmp" -T "$dir/modules.list"
		mkdir -p "$mods"
		for m in "$@"; do
			mv "$mods.tmp/lib/modules/$kver/kernel/$m" "$mods/"
		done
		rm -rf "$mods.tmp" "$dir/modules.list"
	fi
	rm -f "$deb"
fi
if [ ! -s "$dir/vmlinux-$kver" ]; then
	sh tools/scripts/extract-vmlinux.sh "$dir/vmlinuz-$kver" \
		> "$dir/vmlinux-$kver.tmp" &&
		mv "$dir/vmlinux-$kver.tmp" "$dir/vmlinux-$kver" ||
		rm -f "$dir/vmlinux-$kver.tmp"
fi
if [ -s "$dir/vmlinux-$kver" ]; then
	echo "$dir/vmlinux-$kver"
else
	echo "$dir/vmlinuz-$kver"
fi
