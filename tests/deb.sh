#!/bin/sh
# deb.sh - the Debian packages, built and used as a user would:
#  - make deb builds libshmbus0, libshmbus-dev and shmbus with
#    dpkg-buildpackage (debhelper), the symbols file from the version
#    script checked at the strictest level;
#  - the binaries carry the hardening flags: PIE, full RELRO (BIND_NOW),
#    stack protector, fortified functions;
#  - lintian finds no error and no warning but the maintainer address's
#    (what it says at lower levels is printed);
#  - in a fresh minimal Debian root (debootstrap, its tarball cached in
#    $SHMBUS_DEB_CACHE, default /var/cache/shmbus-test: tests/debroot.sh),
#    apt installs the three packages with their dependencies;
#    shmbusd.socket is enabled;
#    shmbus autostarts the daemon and moves a message through a queue;
#    the C example builds with pkg-config against the installed package
#    and runs; every manual page is there; the packages remove cleanly.
# Needs root (chroot, mounts) and Debian's mirror. Environment: B, MAKE.
set -u
B=${B:-build}
MAKE=${MAKE:-make}
. tests/debroot.sh	# debroot_unpack, in_root, debroot_kill
SUITE=$DEBROOT_SUITE
passed=0
failed=0
root=""

ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
cleanup() {
	[ -n "$root" ] && [ -d "$root" ] || return 0
	# the daemon the smoke test started (its root is the chroot), then
	# the tree
	debroot_kill "$root/r"
	rm -rf "$root"
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
	bad "needs root (chroot)"
	finish
fi

# ---- build ---------------------------------------------------------------
t0=$(date +%s)
echo "building the packages (make deb)"
if ! $MAKE -s B="$B" deb > "$B/deb.log" 2>&1; then
	tail -30 "$B/deb.log"
	bad "make deb"
	finish
fi
debs=$(ls "$B"/deb/*.deb)
ok "make deb ($(( $(date +%s) - t0 )) s): $(echo $debs | xargs -n1 basename | tr '\n' ' ')"
for p in libshmbus0 libshmbus-dev shmbus; do
	check "package $p built" sh -c "ls '$B'/deb/${p}_*.deb >/dev/null 2>&1"
done

# ---- hardening -------------------------------------------------------------
x=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-deb-x-XXXXXX")
for d in $debs; do dpkg-deb -x "$d" "$x"; done
soft=""
for f in "$x"/usr/bin/shmbus "$x"/usr/bin/shmbusd "$x"/usr/bin/shmbus-bridge \
	 "$x"/usr/lib/*/libshmbus.so.0.*; do
	n=${f##*/}
	readelf -h "$f" | grep -qE 'Type: +DYN' || soft="$soft $n:pie"
	readelf -lW "$f" | grep -q GNU_RELRO || soft="$soft $n:relro"
	readelf -dW "$f" | grep -qE 'BIND_NOW|FLAGS.*NOW' || soft="$soft $n:bindnow"
	readelf -sW --dyn-syms "$f" | grep -q '__stack_chk_fail' ||
		soft="$soft $n:stack-protector"
	readelf -sW --dyn-syms "$f" | grep -q '__[a-z]*_chk@' ||
		soft="$soft $n:fortify"
	readelf -dW "$f" | grep -qE 'RPATH|RUNPATH' && soft="$soft $n:runpath"
done
check "hardened: PIE, RELRO, BIND_NOW, stack protector, fortify, no RUNPATH${soft:+ (missing:$soft)}" \
	[ -z "$soft" ]
rm -rf "$x"

# ---- lintian -----------------------------------------------------------------
# The maintainer address names no mail host: these packages are built
# from the tree for local installation, not uploaded anywhere
# (docs/decisions.md); every other error and warning fails.
lintian --fail-on error,warning --display-info \
	--suppress-tags bogus-mail-host,bogus-mail-host-in-debian-changelog \
	$debs > "$B/deb/lintian.log" 2>&1
rc=$?
grep -v 'running with root privileges' "$B/deb/lintian.log" | sed 's/^/  lintian: /'
check "lintian: no error, no warning" [ $rc -eq 0 ]

# ---- a fresh Debian root -----------------------------------------------------
root=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-deb-root-XXXXXX")
t0=$(date +%s)
if ! debroot_unpack "$root/r" "$B/deb/debootstrap.log"; then
	bad "debootstrap"
	finish
fi
R=$root/r
ok "a fresh $SUITE root ($(( $(date +%s) - t0 )) s, $(du -sm "$R" | cut -f1) MB)"
cp /etc/resolv.conf "$R/etc/resolv.conf"
mkdir -p "$R/debs"
cp $debs "$R/debs/"
cp examples/hello.c "$R/hello.c"

t0=$(date +%s)
echo "apt: installing the packages and a C compiler in the root"
if ! in_root "$R" 'apt-get -q update && apt-get -q install -y --no-install-recommends \
	/debs/libshmbus0_*.deb /debs/libshmbus-dev_*.deb /debs/shmbus_*.deb \
	gcc libc6-dev pkg-config' > "$B/deb/apt.log" 2>&1; then
	tail -30 "$B/deb/apt.log"
	bad "apt-get install the packages"
	finish
fi
ok "apt-get install libshmbus0 libshmbus-dev shmbus gcc pkg-config ($(( $(date +%s) - t0 )) s)"
check "shmbusd.socket enabled" \
	test -L "$R/etc/systemd/system/sockets.target.wants/shmbusd.socket"
check "shmbus-bridge@.service and the units installed" \
	test -f "$R/lib/systemd/system/shmbus-bridge@.service" -a \
	     -f "$R/lib/systemd/system/shmbusd.service" -a \
	     -f "$R/usr/lib/systemd/user/shmbusd.socket"
missing=""
for m in man1/shmbus.1 man1/shmbus-bridge.1 man3/libshmbus.3 \
	 man5/shmbusd.conf.5 man8/shmbusd.8; do
	[ -f "$R/usr/share/man/$m.gz" ] || missing="$missing $m"
done
check "manual pages${missing:+ (missing:$missing)}" [ -z "$missing" ]

# the smoke test: as root in the root, the daemon autostarted from
# /usr/bin/shmbusd (there is no systemd in a chroot)
out=$(in_root "$R" '
	set -e
	shmbus --version
	shmbus queue declare smoke
	echo "hello from a package" | shmbus pub smoke
	shmbus sub smoke -n 1 --timeout 10
	cat /run/shmbus/shmbusd.sock.lock
	readlink -f /proc/$(cat /run/shmbus/shmbusd.sock.lock)/exe
	cd /tmp && cc /hello.c $(pkg-config --cflags --libs libshmbus) -o hello
	./hello
	ldd ./hello | grep libshmbus
	shmbus stat
' 2>&1)
rc=$?
echo "$out" | sed 's/^/  | /'
check "pub/sub through the autostarted /usr/bin/shmbusd" \
	sh -c "[ $rc -eq 0 ] && echo '$out' | grep -qx 'hello from a package' &&
	       echo '$out' | grep -qx /usr/bin/shmbusd"
check "the example, built with pkg-config, runs against the package's library" \
	sh -c "echo '$out' | grep -qE 'libshmbus.so.0 => (/usr)?/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/'"

mkdir -p "$R/var/lib/shmbus/0"	# as root's daemon leaves it
if in_root "$R" 'apt-get -q remove -y --purge shmbus libshmbus-dev libshmbus0' \
	> "$B/deb/remove.log" 2>&1 &&
   ! ls "$R"/usr/bin/shmbus* "$R"/usr/lib/*/libshmbus* >/dev/null 2>&1 &&
   [ ! -e "$R/var/lib/shmbus" ]; then
	ok "apt-get purge removes them, and /var/lib/shmbus"
else
	tail -10 "$B/deb/remove.log"
	bad "apt-get purge"
fi
finish
