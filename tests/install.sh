#!/bin/sh
# install.sh - `make install` into a staging root (DESTDIR), then use what
# it installed as a user would:
#  - every file is there, and the programs and library are the very files
#    the build made (install copies, it does not link again);
#  - the installed programs find the installed library by themselves;
#  - every installed header (<shmbus.h>, <shmbus/*.h>) compiles, as C and
#    as C++, with the flags pkg-config gives;
#  - both examples build with the README's line,
#    cc app.c $(pkg-config --cflags --libs libshmbus),
#    and hello runs against the installed daemon, which it starts itself.
# Environment: B (build dir), MAKE.
set -u

B=${B:-build}
MAKE=${MAKE:-make}
root=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-install-XXXXXX") || exit 1
pre=$root/usr/local
passed=0
failed=0
trap 'stop_daemon; rm -rf "$root"' EXIT

ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
stop_daemon() {
	[ -f "$root/sock.lock" ] || return 0
	pid=$(cat "$root/sock.lock" 2>/dev/null) && [ -n "$pid" ] &&
		kill "$pid" 2>/dev/null
	return 0
}

if ! $MAKE -s install DESTDIR="$root" PREFIX=/usr/local >"$root/install.log" 2>&1; then
	cat "$root/install.log"
	bad "make install"
	echo "$passed passed, $failed failed"
	exit 1
fi
ok "make install"

missing=""
for f in bin/shmbusd bin/shmbus lib/libshmbus.so.0 lib/libshmbus.so \
	 lib/libshmbus.a lib/pkgconfig/libshmbus.pc include/shmbus.h \
	 include/shmbus/layout.h include/shmbus/kmod.h include/shmbus/bpf.h; do
	[ -e "$pre/$f" ] || missing="$missing $f"
done
check "installed files${missing:+ (missing:$missing)}" [ -z "$missing" ]

same=true
for f in bin/shmbusd bin/shmbus lib/libshmbus.a; do
	cmp -s "$B/$f" "$pre/$f" || { echo "  $f differs from $B/$f"; same=false; }
done
cmp -s "$B/lib/libshmbus.so.0" "$pre/lib/libshmbus.so.0" ||
	{ echo "  libshmbus.so.0 differs"; same=false; }
check "installed files are the built files" $same

for p in shmbus shmbusd; do
	check "$p finds the installed library" \
		sh -c "ldd '$pre/bin/$p' | grep -q '=> $pre/bin/../lib/libshmbus.so.0'"
done

export PKG_CONFIG_PATH="$pre/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
cflags=$(pkg-config --cflags libshmbus) && libs=$(pkg-config --libs libshmbus)
check "pkg-config knows libshmbus $(pkg-config --modversion libshmbus)" \
	[ -n "$libs" ]

printf '#include <shmbus.h>\n#include <shmbus/layout.h>\n#include <shmbus/kmod.h>\n#include <shmbus/bpf.h>\nint main(void) { return shmbus_version()[0] == 0; }\n' > "$root/all.c"
check "installed headers compile as C" \
	${CC:-cc} -std=c11 -Wall -Wextra -Werror $cflags -c "$root/all.c" -o "$root/all.o"
check "installed headers compile as C++" \
	${CXX:-c++} -x c++ -std=c++11 -Wall -Wextra -Werror $cflags -fsyntax-only "$root/all.c"

for ex in examples/*.c; do
	n=$(basename "$ex" .c)
	# shellcheck disable=SC2086 # word splitting is the point
	check "examples/$n.c builds with pkg-config" \
		${CC:-cc} "$ex" -o "$root/$n" $cflags $libs
done

if [ -x "$root/hello" ]; then
	out=$(LD_LIBRARY_PATH="$pre/lib" SHMBUS_SOCKET="$root/sock" \
	      SHMBUS_DAEMON="$pre/bin/shmbusd" timeout 30 "$root/hello" 2>&1)
	rc=$?
	got=$(echo "$out" | grep -c "got: hello #")
	good=false
	[ $rc -eq 0 ] && [ "$got" = 5 ] && good=true
	$good || echo "$out" | sed 's/^/  /'
	check "hello runs with the installed daemon ($got of 5 received)" $good
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
