#!/bin/sh
# run-vm.sh - the power-cut test of persistent queues (test_powercut in
# tests/run.sh; docs/kernel.md, "The power-cut VM"). Boots Debian's kernel
# in qemu (TCG) again and again on one ext4 disk image:
#
#   boot 1         shmbusd --state-dir /mnt/state, two producers publish to
#                  a persistent queue (SHMBUS_SYNC_ALWAYS) and print every
#                  confirm; at a random count of confirmed messages the
#                  host kills qemu with SIGKILL: the guest's page cache,
#                  and whatever the daemon had not synced, is gone
#   boot 2..6      the daemon recovers the bus from the journal; every
#                  message is consumed and verified, then the next queue
#                  is published to and cut in the same way; five cuts of
#                  a queue with SHMBUS_SYNC_ALWAYS, then one with
#                  SHMBUS_SYNC_BATCH
#   last boot      the last check, then a clean poweroff and e2fsck
#
# Every confirmed message must come back (duplicates are allowed and
# counted), with its payload intact. Per cut it prints sent, confirmed,
# received, lost, duplicated and corrupt; then the totals.
#
# The disk is virtio-blk with cache=writeback: qemu writes into the host's
# page cache, which a SIGKILL of qemu does not lose, and a guest flush
# (the fdatasync the daemon waits for before it confirms) is an fdatasync
# of the image file, so that a confirmed message is on the host's disk
# too. What a power cut loses, the guest's dirty page cache, is lost
# here; a write qemu had not completed may be torn.
#
# Environment: B (build dir), PC_CUTS (the cuts, QUEUE:SYNC each, SYNC
# always, batch or never; "x1:never x2:never" must fail: confirms made
# before any sync are lost, which shows the test sees a loss),
# PC_BOOT_TIMEOUT (seconds a boot may take, default 90).
set -eu

B=${B:-build}
CUTS=${PC_CUTS:-"pc1:always pc2:always pc3:always pc4:always pc5:always pc6:batch"}
BOOT_TIMEOUT=${PC_BOOT_TIMEOUT:-90}
OUT=$B/powercut
ROOT=$OUT/initramfs
IMG=$OUT/disk.img
MAX_BATCH=16	# powercut.c: messages a producer has in flight unprinted
t0=$(date +%s)
qpid=
# a killed test leaves no VM behind
trap '[ -z "$qpid" ] || kill -9 "$qpid" 2>/dev/null' EXIT
trap 'exit 1' INT TERM

KVER=$(sh tools/scripts/kver.sh)

# ext4 and virtio-blk are modules in Debian's kernel (=m, like everything
# optional): these, in the order they load (each after what it needs)
MODS="crypto/crc32c_generic.ko lib/crc16.ko fs/mbcache.ko fs/jbd2/jbd2.ko
fs/ext4/ext4.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko
drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko"

# 1. the daemon and the static test program
${MAKE:-make} -s B="$B" powercut-progs

# 2. the kernel and those modules, fetched once (shared with test_kmod)
KERNEL=$(sh tools/scripts/vm-kernel.sh "$B/kmod/vm" "$KVER" $MODS)

# 3. the initramfs: busybox, the modules, shmbusd and what it links
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/t" "$ROOT/m" "$ROOT/lib64" "$ROOT/etc"
cp /bin/busybox "$ROOT/bin/busybox"
for m in $MODS; do
	cp "$B/kmod/vm/modules-$KVER/$(basename "$m")" "$ROOT/m/"
	basename "$m" .ko >> "$ROOT/m/order"
done
for p in "$B/powercut/powercut" "$B/bin/shmbusd"; do
	cp "$p" "$ROOT/t/"
	ldd "$p" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' |
	while read -r lib; do
		mkdir -p "$ROOT$(dirname "$lib")"
		cp -L "$lib" "$ROOT$lib"
	done
done
cp "$B"/lib/libshmbus.so.0 "$ROOT/t/"	# init.sh: LD_LIBRARY_PATH=/t
echo "root:x:0:0::/:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
cp tests/powercut/init.sh "$ROOT/init"
chmod 0755 "$ROOT/init"
( cd "$ROOT" && find . | cpio -o -H newc --quiet ) | gzip -1 > "$OUT/initramfs.gz"

# 4. a fresh disk; its inode tables and journal initialised here, not by
# the guest's lazy-init thread while the test runs
rm -f "$IMG"
truncate -s 64M "$IMG"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$IMG"

# last number of "WORD p n" per producer, summed over the producers
last_sum() {
	tr -d '\r' < "$2" | awk -v w="$1" '$1 == w { n[$2] = $3 }
		END { s = 0; for (p in n) s += n[p]; print s }'
}

# boot N ARGS CUT: boot with ARGS on the kernel command line, into
# $OUT/boot-N.log. CUT > 0: SIGKILL qemu once CUT messages are confirmed.
# Returns 1 on a hang or a failed step inside.
boot() {
	log=$OUT/boot-$1.log
	: > "$log"	# before qemu starts: the loop below reads it
	qemu-system-x86_64 -accel tcg -smp 2 -m 512M -nographic -no-reboot \
		-kernel "$KERNEL" -initrd "$OUT/initramfs.gz" \
		-drive "file=$IMG,format=raw,if=virtio,cache=writeback" \
		-append "console=ttyS0 quiet loglevel=4 panic=-1 cryptomgr.notests no_timer_check $2" \
		</dev/null >>"$log" 2>&1 &
	qpid=$!
	start=$(date +%s)
	cut=0
	while kill -0 "$qpid" 2>/dev/null; do
		if grep -q 'SHMBUS-PC-FAIL' "$log"; then
			kill -9 "$qpid"
			break
		fi
		if [ "$3" -gt 0 ]; then
			seen=$(last_sum CONFIRMED "$log")
			if [ "$seen" -ge "$3" ]; then
				kill -9 "$qpid"	# the power cut
				cut=$seen
				break
			fi
		fi
		if [ $(( $(date +%s) - start )) -ge "$BOOT_TIMEOUT" ]; then
			kill -9 "$qpid"
			echo "boot $1: hang (${BOOT_TIMEOUT}s)"
			break
		fi
		sleep 0.05
	done
	wait "$qpid" 2>/dev/null || true
	qpid=
	tr -d '\r' < "$log" > "$log.txt"
	# a line the cut ended halfway says nothing for sure: drop it
	[ -z "$(tail -c1 "$log.txt")" ] || sed -i '$d' "$log.txt"
	boot_secs=$(( $(date +%s) - start ))
	grep 'SHMBUS-PC-FAIL' "$log.txt" && return 1
	if [ "$3" -gt 0 ]; then
		[ $cut -gt 0 ] || return 1
	else
		grep -q '^SHMBUS-PC-DONE' "$log.txt" || return 1
	fi
	return 0
}

# verify PUBLOG CHECKLOG NAME: the check of CHECKLOG against the confirms
# of PUBLOG; prints one line of figures and adds them to the totals.
# Fails on a lost confirmed message, a corrupt one, or one never sent.
verify() {
	line=$(awk -v mb=$MAX_BATCH -v pub="$1" -v chk="$2" '
		FILENAME == pub && $1 == "SENT" { sent[$2] = $3 }
		FILENAME == pub && $1 == "CONFIRMED" { conf[$2] = $3 }
		FILENAME == chk && $1 == "GOT" { got[$2, ++ng[$2]] = $3 " " $4 }
		FILENAME == chk && $1 == "DUP" { dup += $4 }
		FILENAME == chk && $1 == "CORRUPT" { bad++ }
		FILENAME == chk && $1 == "PC-NOQUEUE" { noq = 1 }
		FILENAME == chk && $1 == "PC-JOURNAL" { j = $3 " " $4 }
		END {
			for (p in sent) {
				S += sent[p]; C += conf[p]
				for (i = 1; i <= ng[p]; i++) {
					split(got[p, i], r, " ")
					D += r[2] - r[1] + 1
					lo = r[1]; hi = r[2] > conf[p] ? conf[p] : r[2]
					if (hi >= lo) have += hi - lo + 1
					if (r[2] > sent[p] + mb) ghost++
				}
			}
			lost = C - have
			printf "sent %d confirmed %d received %d lost %d duplicated %d corrupt %d unconfirmed-kept %d never-sent %d noqueue %d %s\n",
			       S, C, D + dup, lost, dup, bad, D - have, ghost, noq, j
		}' "$1" "$2")
	echo "$3: $line"
	set -- $line
	tot_sent=$((tot_sent + $2)); tot_conf=$((tot_conf + $4))
	tot_recv=$((tot_recv + $6)); tot_lost=$((tot_lost + $8))
	tot_dup=$((tot_dup + ${10})); tot_bad=$((tot_bad + ${12}))
	[ "$8" = 0 ] && [ "${12}" = 0 ] && [ "${16}" = 0 ] && [ "$4" -gt 0 ]
}

tot_sent=0 tot_conf=0 tot_recv=0 tot_lost=0 tot_dup=0 tot_bad=0
bad=""
n=0
prev=""
for c in $CUTS ""; do
	n=$((n + 1))
	args=""
	[ -n "$prev" ] && args="pc.check=${prev%%:*}"
	thr=0
	if [ -n "$c" ]; then
		args="$args pc.pub=$c"
		# a random count of confirmed messages between 200 and 1,800
		# of the producers' 6,000: the cut comes mid-stream
		thr=$(( $(od -An -N2 -tu2 /dev/urandom) % 1600 + 200 ))
	fi
	if ! boot $n "$args" $thr; then
		bad="$bad boot-$n"
		echo "boot $n ($args): failed after ${boot_secs}s (console: $OUT/boot-$n.log.txt)"
		grep -E '^(SHMBUS-PC|PC-ERROR|DLOG)' "$OUT/boot-$n.log.txt" | tail -30 || true
		break
	fi
	# the daemon's start, its recovery, and whatever it logged as an
	# error (shown, not judged: the figures of the cut are the verdict)
	grep '^SHMBUS-PC-DAEMON' "$OUT/boot-$n.log.txt" | sed "s/^/boot $n (${boot_secs}s): /"
	sed -n 's/^DLOG .* info: bus .* recovered from [^:]*: /  recovered: /p;
		s/^DLOG .* error: /  daemon error: /p' "$OUT/boot-$n.log.txt"
	if [ -n "$prev" ]; then
		# the last boot's log holds the confirms, this one the check
		if ! verify "$OUT/boot-$((n - 1)).log.txt" "$OUT/boot-$n.log.txt" \
			"cut $((n - 1)) (${prev#*:}; killed at $prev_cut confirmed)"; then
			bad="$bad cut-$((n - 1))"
			grep '^DLOG' "$OUT/boot-$n.log.txt" || true
		fi
	fi
	prev=$c
	prev_cut=$cut
done

if [ -z "$bad" ] && ! e2fsck -fn "$IMG" >"$OUT/e2fsck.log" 2>&1; then
	bad="$bad e2fsck"
	tail -20 "$OUT/e2fsck.log"
fi
echo "total: sent $tot_sent confirmed $tot_conf received $tot_recv lost $tot_lost duplicated $tot_dup corrupt $tot_bad, $(( $(date +%s) - t0 )) s"
if [ -n "$bad" ]; then
	echo "test-powercut: FAILED:$bad"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "1 passed, 0 failed"
