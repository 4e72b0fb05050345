#!/bin/sh
# run-vm.sh - make test-systemd (test_systemd in tests/run.sh): shmbus's
# systemd units under a real systemd. This machine's PID 1 is not systemd
# and it has no KVM, so: a Debian bookworm root with systemd and the
# three shmbus packages (make deb) on an ext4 disk image, booted with
# Debian's kernel in qemu (TCG), systemd as init. shmbus-vm-test.service
# runs tests/systemd/check.sh inside once the system is up: socket
# activation, Type=notify, the fd store across a restart and a kill -9,
# a clean stop, systemd-analyze verify and security, and a user's units
# under a lingering user's manager. Its "SHMBUS-VM-RESULT name status"
# lines on the serial console are the verdict (docs/operations.md,
# "Running under systemd").
#
# The root, less the shmbus packages, is cached as a tarball in
# $SHMBUS_DEB_CACHE (default /var/cache/shmbus-test, with the minbase one
# tests/deb.sh uses): made once (minutes: debootstrap, apt), then each run
# unpacks it and installs the packages of this tree into it.
#
# Environment: B (build dir), MAKE, SD_TIMEOUT (seconds the VM may take,
# default 240), SHMBUS_DEB_CACHE.
set -eu

B=${B:-build}
MAKE=${MAKE:-make}
TIMEOUT=${SD_TIMEOUT:-240}
OUT=$B/systemd-vm
R=$OUT/root
IMG=$OUT/disk.img
. tests/debroot.sh	# debroot_unpack, in_root, debroot_kill
t0=$(date +%s)
qpid=
cleanup() {
	[ -z "$qpid" ] || kill -9 "$qpid" 2>/dev/null || true
	if [ -d "$R" ]; then
		debroot_kill "$(cd "$R" && pwd)"
		rm -rf "$R"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
step() { echo "  [$(( $(date +%s) - t0 ))s] $*"; }
fail() {
	echo "test-systemd: FAILED: $*"
	echo "0 passed, 1 failed"
	exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (chroot, mounts, mkfs of a root tree)"

# what the root has besides minbase: systemd as init, dbus and logind's
# PAM module (loginctl enable-linger, a user's manager), procps (pgrep,
# ps); and whatever the shmbus packages depend on
SD_PKGS="systemd systemd-sysv dbus libpam-systemd procps"
SD_TARBALL=$DEBROOT_CACHE/$DEBROOT_SUITE-systemd.tar
# ext4 and virtio-blk are modules in Debian's kernel: these, in the order
# they load (as tests/powercut/run-vm.sh)
MODS="crypto/crc32c_generic.ko lib/crc16.ko fs/mbcache.ko fs/jbd2/jbd2.ko
fs/ext4/ext4.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko
drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko"

# with_progress LABEL LOG COMMAND...: COMMAND's output into LOG, and
# LOG's last line every 15 s while it runs (the first root takes minutes)
with_progress() {
	_label=$1 _log=$2
	shift 2
	"$@" > "$_log" 2>&1 &
	_pid=$!
	_n=0
	while kill -0 $_pid 2>/dev/null; do
		sleep 1
		_n=$((_n + 1))
		[ $((_n % 15)) -ne 0 ] ||
			step "$_label: $(tail -1 "$_log" | tr -d '\r' | cut -c1-100)"
	done
	wait $_pid
}

mkdir -p "$OUT"
rm -rf "$R"

# 1. the packages: those tests/deb.sh (make deb) built, if no tracked or
# new file is newer than they are; else make deb
debs_fresh() {
	for p in libshmbus0 libshmbus-dev shmbus; do
		ls "$B"/deb/${p}_*.deb >/dev/null 2>&1 || return 1
	done
	git rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 1
	oldest=$(ls -t "$B"/deb/*.deb | tail -1)
	newer=$(git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ "$f" -nt "$0" ] && echo "$f"; done' \
		"$oldest" 2>/dev/null | head -1)
	[ -z "$newer" ]
}
if debs_fresh; then
	step "the packages of $B/deb (newer than the tree)"
else
	step "building the packages (make deb)"
	$MAKE -s B="$B" deb > "$OUT/deb.log" 2>&1 ||
		{ tail -30 "$OUT/deb.log"; fail "make deb"; }
fi
DEBS=$(for p in libshmbus0 libshmbus-dev shmbus; do ls "$B"/deb/${p}_*.deb; done)

# 2. the kernel and the root disk's modules, fetched once (shared with
# test_kmod and test_powercut)
KVER=$(sh tools/scripts/kver.sh)
KERNEL=$(sh tools/scripts/vm-kernel.sh "$B/kmod/vm" "$KVER" $MODS)

# 3. the systemd root, cached: minbase, $SD_PKGS and the packages'
# dependencies (installed with them, then the packages purged again)
if [ ! -s "$SD_TARBALL" ] || [ "$(cat "$SD_TARBALL.pkgs" 2>/dev/null)" != "$SD_PKGS" ]; then
	t1=$(date +%s)
	step "making the systemd root, once: cached in $SD_TARBALL"
	debroot_unpack "$R" "$OUT/debootstrap.log" || fail "debootstrap"
	step "minbase root: $(( $(date +%s) - t1 )) s"
	cp /etc/resolv.conf "$R/etc/resolv.conf"
	mkdir -p "$R/debs"
	cp $DEBS "$R/debs/"
	with_progress apt "$OUT/root-apt.log" in_root "$R" "
		apt-get -q update &&
		apt-get -q install -y --no-install-recommends $SD_PKGS /debs/*.deb &&
		apt-get -q purge -y shmbus libshmbus-dev libshmbus0 &&
		apt-get -q clean" || { tail -30 "$OUT/root-apt.log"; fail "apt in the root"; }
	rm -rf "$R/debs" "$R/etc/resolv.conf"
	tar -C "$R" --numeric-owner -cpf "$SD_TARBALL.tmp.$$" .
	mv "$SD_TARBALL.tmp.$$" "$SD_TARBALL"
	echo "$SD_PKGS" > "$SD_TARBALL.pkgs"
	step "systemd root cached: $(( $(date +%s) - t1 )) s, $(du -sm "$SD_TARBALL" | cut -f1) MB"
	rm -rf "$R"
fi
t1=$(date +%s)
mkdir -p "$R"
tar -C "$R" --numeric-owner -xpf "$SD_TARBALL"
step "root unpacked from $SD_TARBALL ($(( $(date +%s) - t1 )) s)"

# 4. this tree's packages in it (their dependencies are there: no
# download), a test user, and the test: shmbus-vm-test.service runs
# check.sh once the system is up; no getty on the console, whose lines
# are the test's
t1=$(date +%s)
mkdir -p "$R/debs"
cp $DEBS "$R/debs/"
in_root "$R" "apt-get -q install -y --no-install-recommends /debs/*.deb" \
	> "$OUT/apt.log" 2>&1 || { tail -30 "$OUT/apt.log"; fail "apt-get install the packages"; }
rm -rf "$R/debs"
in_root "$R" "useradd -m -s /bin/sh shmbustest" > "$OUT/useradd.log" 2>&1 ||
	{ cat "$OUT/useradd.log"; fail "useradd"; }
echo shmbus-vm > "$R/etc/hostname"
echo "/dev/vda / ext4 rw 0 0" > "$R/etc/fstab"
ln -sf /lib/systemd/system/multi-user.target "$R/etc/systemd/system/default.target"
ln -sf /dev/null "$R/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$R/etc/systemd/system/getty@tty1.service"
mkdir -p "$R/usr/local/lib/shmbus-vm" "$R/usr/local/sbin"
cp tests/systemd/check.sh "$R/usr/local/sbin/shmbus-vm-test"
chmod 0755 "$R/usr/local/sbin/shmbus-vm-test"
# the exposure docs/operations.md states: the test's upper bound
sed -n 's/.*`systemd-analyze security` rates it \*\*\([0-9.]*\).*/\1/p' \
	docs/operations.md | head -1 > "$R/usr/local/lib/shmbus-vm/exposure"
[ -s "$R/usr/local/lib/shmbus-vm/exposure" ] ||
	fail "docs/operations.md states no systemd-analyze security exposure"
cat > "$R/etc/systemd/system/shmbus-vm-test.service" <<'EOF'
[Unit]
Description=shmbus: the systemd units under test (tests/systemd/check.sh)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/shmbus-vm-test
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$R/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/shmbus-vm-test.service \
	"$R/etc/systemd/system/multi-user.target.wants/shmbus-vm-test.service"
step "packages $(cd "$B/deb" && ls libshmbus0_*.deb | sed 's/libshmbus0_//; s/_.*//') installed, the test set up ($(( $(date +%s) - t1 )) s)"

# 5. the disk: the root tree copied in by mkfs.ext4 -d, room to spare
t1=$(date +%s)
rm -f "$IMG"
mb=$(( $(du -sm "$R" | cut -f1) + 256 ))
truncate -s "${mb}M" "$IMG"
mkfs.ext4 -q -F -L shmbus-vm -d "$R" "$IMG" > "$OUT/mkfs.log" 2>&1 ||
	{ cat "$OUT/mkfs.log"; fail "mkfs.ext4 -d"; }
rm -rf "$R"
step "disk image: $mb MB ext4 ($(( $(date +%s) - t1 )) s)"

# 6. the initramfs: busybox and the modules; it mounts the disk and
# switches to systemd
IR=$OUT/initramfs
rm -rf "$IR"
mkdir -p "$IR/bin" "$IR/m"
cp /bin/busybox "$IR/bin/busybox"
for m in $MODS; do
	cp "$B/kmod/vm/modules-$KVER/$(basename "$m")" "$IR/m/"
	basename "$m" .ko >> "$IR/m/order"
done
cp tests/systemd/init.sh "$IR/init"
chmod 0755 "$IR/init"
( cd "$IR" && find . | cpio -o -H newc --quiet ) | gzip -1 > "$OUT/initramfs.gz"

# 7. boot; the serial console is the whole record
LOG=$OUT/console.log
: > "$LOG"
tb=$(date +%s)
qemu-system-x86_64 -accel tcg -smp 2 -m 1G -nographic -no-reboot -nic none \
	-kernel "$KERNEL" -initrd "$OUT/initramfs.gz" \
	-drive "file=$IMG,format=raw,if=virtio,cache=unsafe" \
	-append "console=ttyS0 root=/dev/vda quiet loglevel=4 panic=-1 systemd.show_status=false cryptomgr.notests no_timer_check" \
	</dev/null >>"$LOG" 2>&1 &
qpid=$!
step "booting $KVER under qemu TCG, systemd as init (up to ${TIMEOUT}s)"
shown=0
hung=
done_at=
while kill -0 "$qpid" 2>/dev/null; do
	sleep 1
	# check.sh's lines: its steps, and indented, what it shows of them
	tr -d '\r' < "$LOG" |
		grep -aE '^(SHMBUS-VM-(BOOTED|RESULT|INFO|FAIL|DONE)|  )' > "$OUT/steps" || true
	n=$(wc -l < "$OUT/steps")
	if [ "$n" -gt "$shown" ]; then
		tail -n +$((shown + 1)) "$OUT/steps" | while IFS= read -r line; do
			case $line in
			SHMBUS-VM-*) step "${line#SHMBUS-VM-}" ;;
			*) echo "       $line" ;;
			esac
		done
		shown=$n
	fi
	now=$(date +%s)
	if [ -z "$done_at" ] && grep -aq '^SHMBUS-VM-DONE' "$OUT/steps"; then
		done_at=$now
	fi
	# a poweroff that does not end the VM is not the test's to wait for
	if [ -n "$done_at" ] && [ $((now - done_at)) -ge 30 ]; then
		kill -9 "$qpid"
		break
	fi
	if [ $((now - tb)) -ge "$TIMEOUT" ]; then
		hung=1
		kill -9 "$qpid"
		break
	fi
done
wait "$qpid" 2>/dev/null || true
qpid=
tboot=$(( $(date +%s) - tb ))
tr -d '\r' < "$LOG" > "$LOG.txt"

# 8. verdict
bad=""
[ -n "$hung" ] && bad="$bad hang(timeout ${TIMEOUT}s)"
grep -aq '^SHMBUS-VM-BOOTED' "$LOG.txt" || bad="$bad no-boot"
grep -aq '^SHMBUS-VM-DONE' "$LOG.txt" || bad="$bad no-end-marker"
grep -aq '^SHMBUS-VM-FAIL' "$LOG.txt" &&
	bad="$bad $(grep -a '^SHMBUS-VM-FAIL' "$LOG.txt" | cut -d' ' -f2- | tr '\n' ' ')"
for want in socket-enabled socket-active socket-listening service-idle \
	    activation-pubsub activation-active activation-one-daemon \
	    activation-log notify-type notify-status notify-order \
	    restart-new-daemon restart-fdstore restart-status restart-same-bus \
	    restart-message kill9-restarted kill9-fdstore kill9-same-bus \
	    kill9-held-client stop stop-log verify security user-linger \
	    user-verify user-socket user-activation-pubsub user-activation \
	    user-activation-log user-restart-fdstore user-restart-message \
	    user-stop; do
	grep -aq "^SHMBUS-VM-RESULT $want 0\$" "$LOG.txt" || bad="$bad $want"
done
if grep -aq '^SHMBUS-VM-RESULT' "$LOG.txt"; then
	grep -a '^SHMBUS-VM-RESULT' "$LOG.txt" |
		awk '$3 == 0 { p++ } $3 != 0 { f++ } END { printf "test-systemd: %d checks in the VM passed, %d failed\n", p, f }'
fi
t2=$(date +%s)
if [ -n "$bad" ]; then
	echo "test-systemd: FAILED:$bad (console: $LOG.txt)"
	# the console's other lines: the kernel's, systemd's
	grep -av -e '^SHMBUS-VM' -e '^  ' "$LOG.txt" | tail -30
	echo "0 passed, 1 failed"
	exit 1
fi
rm -f "$IMG"	# hundreds of MB; kept when the test failed
echo "test-systemd: $((t2 - t0)) s (the VM: $tboot s)"
echo "1 passed, 0 failed"
