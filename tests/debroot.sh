# debroot.sh - sourced by the tests that need a Debian root made with
# debootstrap (tests/deb.sh, tests/systemd/run-vm.sh): the minimal
# bookworm root, its tarball cached, and running a command inside one.
# Needs root (chroot, mounts) and, to make a tarball, Debian's mirror.
#
# Environment: SHMBUS_DEB_CACHE (where tarballs are cached, default
# /var/cache/shmbus-test).

DEBROOT_CACHE=${SHMBUS_DEB_CACHE:-/var/cache/shmbus-test}
DEBROOT_SUITE=bookworm

# debroot_minbase_tarball LOG: the cached tarball of debootstrap's minbase
# variant of $DEBROOT_SUITE, made once (a minute or two, downloading):
# prints its path. Fails, with the log's tail, if it cannot be made.
debroot_minbase_tarball() {
	_tb=$DEBROOT_CACHE/$DEBROOT_SUITE-minbase.tar
	mkdir -p "$DEBROOT_CACHE"
	if [ ! -s "$_tb" ]; then
		echo "debootstrap $DEBROOT_SUITE (minbase), once: cached in $_tb" >&2
		_tmp=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-debootstrap-XXXXXX")
		if ! debootstrap --variant=minbase --make-tarball="$_tb.tmp.$$" \
			"$DEBROOT_SUITE" "$_tmp/tb" > "$1" 2>&1; then
			tail -20 "$1" >&2
			rm -rf "$_tmp" "$_tb.tmp.$$"
			return 1
		fi
		mv "$_tb.tmp.$$" "$_tb"
		rm -rf "$_tmp"
	fi
	echo "$_tb"
}

# debroot_unpack DIR LOG: a fresh minbase root in DIR (which must not
# exist yet), installed by debootstrap from the cached tarball.
debroot_unpack() {
	_tb=$(debroot_minbase_tarball "$2") || return 1
	echo "debootstrap $DEBROOT_SUITE (minbase) from $_tb" >&2
	if ! debootstrap --variant=minbase --unpack-tarball="$_tb" \
		"$DEBROOT_SUITE" "$1" > "$2" 2>&1; then
		tail -20 "$2" >&2
		return 1
	fi
}

# in_root DIR COMMAND: COMMAND run by sh in the root DIR, with its own
# /proc, /dev, /run and /tmp, in a mount namespace of its own so that
# nothing stays mounted, and a clean environment.
in_root() {
	unshare -m sh -c '
		mount -t proc proc "$0/proc" &&
		mount --rbind /dev "$0/dev" &&
		mount -t tmpfs tmpfs "$0/run" &&
		mount -t tmpfs tmpfs "$0/tmp" &&
		exec chroot "$0" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive sh -c "$1"
	' "$1" "$2"
}

# debroot_kill DIR: every process whose root is DIR (a daemon a command in
# it left running), killed.
debroot_kill() {
	for _p in /proc/[0-9]*; do
		[ "$(readlink "$_p/root" 2>/dev/null)" = "$1" ] &&
			kill -9 "${_p#/proc/}" 2>/dev/null
	done
	return 0
}
