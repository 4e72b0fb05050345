#!/bin/sh
# mkdeb.sh OUTDIR VERSION - build the Debian packages (debian/) from a copy
# of this source tree in OUTDIR/shmbus-VERSION; the .deb files land in
# OUTDIR. The tree is copied as git sees it (tracked and new files, not
# ignored ones), or whole but for build directories without git.
set -eu
out=$1
version=$2
deb_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
if [ "${deb_version%%-*}" != "$version" ]; then
	echo "mkdeb: debian/changelog is at $deb_version, the library at" \
	     "$version (include/shmbus.h): add a changelog entry" >&2
	exit 1
fi
src=$out/shmbus-$version
rm -rf "$src" "$out"/*.deb "$out"/*.ddeb "$out"/*.buildinfo "$out"/*.changes
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude='./build*' --exclude="./$out" -cf - . | tar -xf - -C "$src"
fi
echo "mkdeb: building in $src"
( cd "$src" && dpkg-buildpackage -us -uc -b ) > "$out/build.log" 2>&1 || {
	tail -40 "$out/build.log"
	echo "mkdeb: dpkg-buildpackage failed (log: $out/build.log)" >&2
	exit 1
}
ls "$out"/*.deb
