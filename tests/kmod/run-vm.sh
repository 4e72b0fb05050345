#!/bin/sh
# run-vm.sh - make test-kmod: build shmbus.ko against Debian's
# linux-headers-amd64, boot Debian's kernel of the same ABI in qemu (TCG:
# this machine cannot load modules and has no KVM) with an initramfs of
# busybox, the module and the test programs, run the tests inside, and
# fail on an insmod/rmmod failure, a WARNING/BUG/Oops in the kernel log,
# a hang, a failed test or a missing result. docs/kernel.md.
#
# Environment: B (build dir), KVM_TIMEOUT (seconds, default 280).
set -eu

B=${B:-build}
TIMEOUT=${KVM_TIMEOUT:-280}
OUT=$B/kmod
VM=$OUT/vm
ROOT=$OUT/initramfs
t0=$(date +%s)

KVER=$(sh tools/scripts/kver.sh)
KDIR=/usr/src/linux-headers-$KVER
[ -d "$KDIR" ] || { echo "test-kmod: no $KDIR (make deps)" >&2; exit 1; }

# 1. the module (make kmod), and the programs that run inside
${MAKE:-make} -s B="$B" kmod kmod-progs

# 2. Debian's kernel image of the headers' ABI, fetched once
# (tools/scripts/vm-kernel.sh)
KERNEL=$(sh tools/scripts/vm-kernel.sh "$VM" "$KVER")

# 3. the initramfs: busybox, the module, the programs and the shared
# libraries the dynamically linked ones need (copied by ldd)
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/t" "$ROOT/lib64" "$ROOT/etc"
cp /bin/busybox "$ROOT/bin/busybox"
cp "$OUT/src/shmbus.ko" "$ROOT/"
for p in "$OUT/kmod_test" "$OUT/kmod_bench" "$OUT/kmod_fanout" \
	 "$B/bin/shmbusd" "$B/tests/test_wake" "$B/tests/test_topics"; do
	cp "$p" "$ROOT/t/"
	ldd "$p" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' |
	while read -r lib; do
		mkdir -p "$ROOT$(dirname "$lib")"
		cp -L "$lib" "$ROOT$lib"
	done
done
cp "$B"/lib/libshmbus.so.0 "$ROOT/t/"	# init.sh: LD_LIBRARY_PATH=/t
echo "root:x:0:0::/:/bin/sh" > "$ROOT/etc/passwd"
echo "nobody:x:65534:65534::/:/bin/sh" >> "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
echo "nogroup:x:65534:" >> "$ROOT/etc/group"
cp tests/kmod/init.sh "$ROOT/init"
chmod 0755 "$ROOT/init"
( cd "$ROOT" && find . | cpio -o -H newc --quiet ) | gzip -1 > "$OUT/initramfs.gz"

# 4. boot; the serial console is the whole record
LOG=$OUT/console.log
set +e
: > "$LOG"
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -smp 2 -m 1G \
	-nographic -no-reboot -kernel "$KERNEL" -initrd "$OUT/initramfs.gz" \
	-append "console=ttyS0 quiet loglevel=4 panic=-1 cryptomgr.notests no_timer_check" \
	</dev/null >"$LOG" 2>&1 &
qpid=$!
# progress while it runs (TCG takes minutes): each step as it ends
echo "test-kmod: booting $KVER under qemu TCG (up to ${TIMEOUT}s)"
shown=0
while kill -0 "$qpid" 2>/dev/null; do
	sleep 1
	tr -d '\r' < "$LOG" | grep -E '^SHMBUS-VM-(BOOTED|RESULT|FAIL)' > "$OUT/steps" || true
	n=$(wc -l < "$OUT/steps")
	if [ "$n" -gt "$shown" ]; then
		tail -n +$((shown + 1)) "$OUT/steps" | while read -r tag rest; do
			echo "  [$(( $(date +%s) - t0 ))s] ${tag#SHMBUS-VM-} $rest"
		done
		shown=$n
	fi
done
wait "$qpid"
rc=$?
set -e
tr -d '\r' < "$LOG" > "$LOG.txt"
grep -v '^\[' "$LOG.txt" | grep -E '^(ok|FAIL|SHMBUS-VM|[0-9]+ passed|backend|redelivered|wake-up|  ?[0-9]|  N|[ 0-9]+ +(eventfd|one)|.*ratio)' || true

# 5. verdict
bad=""
[ $rc -eq 124 ] && bad="$bad hang(timeout ${TIMEOUT}s)"
grep -q '^SHMBUS-VM-DONE' "$LOG.txt" || bad="$bad no-end-marker"
grep -q '^SHMBUS-VM-FAIL' "$LOG.txt" && bad="$bad $(grep '^SHMBUS-VM-FAIL' "$LOG.txt" | cut -d' ' -f2- | tr '\n' ' ')"
grep -qE 'WARNING:|BUG:|Oops|general protection|Kernel panic|UBSAN|KASAN' "$LOG.txt" &&
	bad="$bad kernel-splat"
for want in kmod_test kmod_fanout-kmod kmod_fanout-eventfd \
	    death-notice-kmod death-notice-eventfd test_wake-kmod \
	    test_wake-eventfd test_topics-kmod test_topics-eventfd \
	    rmmod-busy rmmod; do
	grep -q "^SHMBUS-VM-RESULT $want 0\$" "$LOG.txt" ||
		bad="$bad $want"
done
t1=$(date +%s)
if [ -n "$bad" ]; then
	echo "test-kmod: FAILED:$bad (console: $LOG.txt)"
	grep -E 'WARNING:|BUG:|Oops|Call Trace|RIP:' "$LOG.txt" | head -20 || true
	echo "0 passed, 1 failed"
	exit 1
fi
echo "test-kmod: kernel $KVER, $((t1 - t0)) s"
echo "1 passed, 0 failed"
