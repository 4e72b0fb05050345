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
#    and hello runs against the installed daemon, which it starts itself;
#  - a program linked against the build tree, elsewhere, starts the
#    build tree's daemon, found beside the library it runs with;
#  - make uninstall removes every file install put there; install runs
#    ldconfig when it installs into the real root (no DESTDIR), and only
#    then (checked with make -n);
#  - in a build tree of its own, PREFIX=/opt/shmbus LIBDIR=/opt/shmbus/lib64
#    gives programs that look for the library in that LIBDIR, and
#    RUNPATH= gives programs that look nowhere but the linker's path, and
#    make uninstall removes that installation too.
# The first part installs $B as it was configured ($B/.paths), so that it
# rebuilds nothing. Environment: B (build dir), MAKE.
set -u

B=${B:-build}
MAKE=${MAKE:-make}
root=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-install-XXXXXX") || exit 1
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

# the build's own paths: installing with others would rebuild it
paths() { sed -n "s/^$1=//p" "$B/.paths" 2>/dev/null; }
PREFIX=$(paths PREFIX) BINDIR=$(paths BINDIR) LIBDIR=$(paths LIBDIR)
INCDIR=$(paths INCDIR) SYSCONFDIR=$(paths SYSCONFDIR) UNITDIR=$(paths UNITDIR)
USERUNITDIR=$(paths USERUNITDIR) MANDIR=$(paths MANDIR)
if [ "$PREFIX" != /usr/local ] || [ "$BINDIR" != /usr/local/bin ] ||
   [ "$LIBDIR" != /usr/local/lib ] || [ "$INCDIR" != /usr/local/include ]; then
	echo "note: $B is configured for $PREFIX; checking that installation"
fi
pre=$root$PREFIX
if ! $MAKE -s B="$B" install DESTDIR="$root" PREFIX="$PREFIX" BINDIR="$BINDIR" \
	LIBDIR="$LIBDIR" INCDIR="$INCDIR" SYSCONFDIR="$SYSCONFDIR" UNITDIR="$UNITDIR" USERUNITDIR="$USERUNITDIR" MANDIR="$MANDIR" \
	>"$root/install.log" 2>&1; then
	cat "$root/install.log"
	bad "make install"
	echo "$passed passed, $failed failed"
	exit 1
fi
ok "make install"

missing=""
for f in "$BINDIR/shmbusd" "$BINDIR/shmbus" "$BINDIR/shmbus-bridge" \
	 "$UNITDIR/shmbus-bridge@.service" "$UNITDIR/shmbusd.service" \
	 "$UNITDIR/shmbusd.socket" "$USERUNITDIR/shmbusd.service" \
	 "$USERUNITDIR/shmbusd.socket" "$LIBDIR/libshmbus.so.0" \
	 "$LIBDIR/libshmbus.so" "$LIBDIR/libshmbus.a" \
	 "$LIBDIR/pkgconfig/libshmbus.pc" "$INCDIR/shmbus.h" \
	 "$INCDIR/shmbus/layout.h" "$INCDIR/shmbus/kmod.h" \
	 "$INCDIR/shmbus/bpf.h" "$MANDIR/man1/shmbus.1" \
	 "$MANDIR/man1/shmbus-bridge.1" "$MANDIR/man3/libshmbus.3" \
	 "$MANDIR/man5/shmbusd.conf.5" "$MANDIR/man8/shmbusd.8"; do
	[ -e "$root$f" ] || missing="$missing $f"
done
check "installed files${missing:+ (missing:$missing)}" [ -z "$missing" ]

same=true
for f in bin/shmbusd bin/shmbus bin/shmbus-bridge; do
	cmp -s "$B/$f" "$root$BINDIR/${f#bin/}" ||
		{ echo "  $f differs from $B/$f"; same=false; }
done
for f in libshmbus.a libshmbus.so.0; do
	cmp -s "$B/lib/$f" "$root$LIBDIR/$f" ||
		{ echo "  $f differs from $B/lib/$f"; same=false; }
done
check "installed files are the built files" $same

# man finds every page where it was installed
for p in shmbus shmbusd shmbusd.conf libshmbus shmbus-bridge; do
	check "man $p" sh -c "man -M '$root$MANDIR' -w $p | grep -q '^$root$MANDIR/'"
done

if [ "$LIBDIR" = "$PREFIX/lib" ] && [ "$BINDIR" = "$PREFIX/bin" ]; then
	for p in shmbus shmbusd shmbus-bridge; do
		check "$p finds the installed library" \
			sh -c "ldd '$pre/bin/$p' | grep -q '=> $pre/bin/../lib/libshmbus.so.0'"
	done
fi

# the unit as systemd reads it, its ExecStart pointed at the staging root
# (systemd-analyze checks that the program is there)
unit=$root$UNITDIR/shmbus-bridge@.service
if [ -e "$unit" ]; then
	mkdir -p "$root/units"
	sed "s|$BINDIR/|$root$BINDIR/|" "$unit" > "$root/units/shmbus-bridge@test.service"
	check "shmbus-bridge@.service: systemd-analyze verify" \
		systemd-analyze verify --man=no "$root/units/shmbus-bridge@test.service"
	grep -q "^ExecStart=$BINDIR/shmbus-bridge --config $SYSCONFDIR/shmbus/bridge/%i.conf --start-daemon false\$" "$unit"
	check "shmbus-bridge@.service runs $BINDIR/shmbus-bridge" [ $? -eq 0 ]
fi

# the daemon's units, root's and a user's: they verify, the service runs
# the installed daemon on the socket its socket unit listens on, which is
# where the library looks by default
for kind in system user; do
	if [ $kind = system ]; then
		dir=$UNITDIR sock=/run/shmbus/shmbusd.sock opt=
	else
		dir=$USERUNITDIR sock=%t/shmbus/shmbusd.sock opt=--user
		mkdir -p -m 0700 "$root/rt"
	fi
	mkdir -p "$root/units-$kind"
	for u in shmbusd.service shmbusd.socket; do
		sed "s|$BINDIR/|$root$BINDIR/|" "$root$dir/$u" > "$root/units-$kind/$u"
	done
	check "shmbusd.socket and .service ($kind): systemd-analyze verify" \
		sh -c "cd '$root/units-$kind' && XDG_RUNTIME_DIR='$root/rt' \
		       systemd-analyze $opt verify --man=no shmbusd.socket shmbusd.service"
	grep -q "^ListenSequentialPacket=$sock\$" "$root$dir/shmbusd.socket" &&
		grep -q "^ExecStart=$BINDIR/shmbusd --socket $sock\$" \
			"$root$dir/shmbusd.service"
	check "shmbusd.service ($kind) runs $BINDIR/shmbusd on $sock" [ $? -eq 0 ]
done
# what the library takes for root's default socket
grep -q '"/run/shmbus/shmbusd.sock"' userspace/lib/client.c
check "the system socket is the library's default for root" [ $? -eq 0 ]
exposure=$(systemd-analyze security --offline=yes \
	"$root/units-system/shmbusd.service" 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
echo "shmbusd.service: systemd-analyze security: exposure ${exposure:-?}"
check "shmbusd.service: exposure ${exposure:-?} is \"OK\" or better (<= 4.9)" \
	awk "BEGIN { exit !(\"${exposure:-9}\" + 0 <= 4.9) }"

export PKG_CONFIG_PATH="$root$LIBDIR/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
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
	out=$(LD_LIBRARY_PATH="$root$LIBDIR" SHMBUS_SOCKET="$root/sock" \
	      SHMBUS_DAEMON="$root$BINDIR/shmbusd" timeout 30 "$root/hello" 2>&1)
	rc=$?
	got=$(echo "$out" | grep -c "got: hello #")
	good=false
	[ $rc -eq 0 ] && [ "$got" = 5 ] && good=true
	$good || echo "$out" | sed 's/^/  /'
	check "hello runs with the installed daemon ($got of 5 received)" $good
fi

# A program linked against the build tree, elsewhere, with no shmbusd
# beside it, none named by $SHMBUS_DAEMON and none on $PATH, starts the
# build tree's: the one beside the library it runs with (../bin from it).
absb=$(cd "$B" && pwd)
mkdir -p "$root/elsewhere"
if ${CC:-cc} examples/hello.c -o "$root/elsewhere/hello" -Iinclude \
	-L"$absb/lib" -lshmbus -Wl,-rpath,"$absb/lib" 2>"$root/elsewhere.log"; then
	out=$(env -u SHMBUS_DAEMON PATH=/usr/bin:/bin \
	      SHMBUS_SOCKET="$root/sock2" timeout 30 "$root/elsewhere/hello" 2>&1)
	pid=$(cat "$root/sock2.lock" 2>/dev/null)
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	check "a program linked against $B starts $B's daemon (${exe:-none})" \
		[ "$exe" = "$absb/bin/shmbusd" ]
else
	cat "$root/elsewhere.log"
	bad "examples/hello.c against $B"
fi

# make uninstall takes away what install put there, and nothing else
stop_daemon
$MAKE -s B="$B" uninstall DESTDIR="$root" PREFIX="$PREFIX" BINDIR="$BINDIR" \
	LIBDIR="$LIBDIR" INCDIR="$INCDIR" SYSCONFDIR="$SYSCONFDIR" UNITDIR="$UNITDIR" USERUNITDIR="$USERUNITDIR" \
	>>"$root/install.log" 2>&1
left=$(find "$root$PREFIX" "$root$LIBDIR" "$root$BINDIR" "$root$UNITDIR" \
	\( -type f -o -type l \) 2>/dev/null | sort -u)
[ -z "$left" ] || echo "$left" | sed 's/^/  left: /'
check "make uninstall leaves no file of the installation" [ -z "$left" ]
# ldconfig runs after an install into the real root only
real=$($MAKE -n B="$B" install PREFIX="$PREFIX" BINDIR="$BINDIR" \
	LIBDIR="$LIBDIR" INCDIR="$INCDIR" SYSCONFDIR="$SYSCONFDIR" \
	UNITDIR="$UNITDIR" USERUNITDIR="$USERUNITDIR" 2>/dev/null |
	grep -c '^ldconfig$')
staged=$($MAKE -n B="$B" install DESTDIR="$root" PREFIX="$PREFIX" \
	BINDIR="$BINDIR" LIBDIR="$LIBDIR" INCDIR="$INCDIR" \
	SYSCONFDIR="$SYSCONFDIR" UNITDIR="$UNITDIR" USERUNITDIR="$USERUNITDIR" 2>/dev/null |
	grep -c '^ldconfig$')
check "make install runs ldconfig without DESTDIR ($real), not with it ($staged)" \
	[ "$real" = 1 ] && [ "$staged" = 0 ]

# Another layout, in a build tree of its own (nothing here touches $B).
runpath() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p'; }
b2=$root/build-lib64
if $MAKE -s B="$b2" install DESTDIR="$root/d2" PREFIX=/opt/shmbus \
	LIBDIR=/opt/shmbus/lib64 >"$root/install2.log" 2>&1; then
	rp=$(runpath "$root/d2/opt/shmbus/bin/shmbusd")
	check "LIBDIR=/opt/shmbus/lib64: the daemon's RUNPATH names it ($rp)" \
		[ "$rp" = '$ORIGIN/../lib:/opt/shmbus/lib64' ]
	check "LIBDIR=/opt/shmbus/lib64: the library is there" \
		[ -e "$root/d2/opt/shmbus/lib64/libshmbus.so.0" ]
	check "LIBDIR=/opt/shmbus/lib64: the .pc file says so" \
		grep -q '^libdir=/opt/shmbus/lib64$' \
		"$root/d2/opt/shmbus/lib64/pkgconfig/libshmbus.pc"
	$MAKE -s B="$b2" install DESTDIR="$root/d3" PREFIX=/opt/shmbus \
		LIBDIR=/opt/shmbus/lib64 RUNPATH= >>"$root/install2.log" 2>&1
	rp=$(runpath "$root/d3/opt/shmbus/bin/shmbus")
	check "RUNPATH= relinks the programs with none (${rp:-none})" [ -z "$rp" ]
	$MAKE -s B="$b2" uninstall DESTDIR="$root/d2" PREFIX=/opt/shmbus \
		LIBDIR=/opt/shmbus/lib64 >>"$root/install2.log" 2>&1
	left=$(find "$root/d2" \( -type f -o -type l \) | head -5)
	check "LIBDIR=/opt/shmbus/lib64: make uninstall leaves no file" \
		[ -z "$left" ]
else
	tail -20 "$root/install2.log"
	bad "make install PREFIX=/opt/shmbus LIBDIR=/opt/shmbus/lib64"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
