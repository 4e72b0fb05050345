#!/bin/busybox sh
# init.sh - /init of the power-cut VM (tests/powercut/run-vm.sh). The
# kernel command line says what this boot does: "pc.check=QUEUE" checks
# what the last boot left in QUEUE (powercut check), "pc.pub=QUEUE:SYNC"
# then publishes to a new queue until the host kills the VM. Without
# pc.pub the VM powers off cleanly after the check. Every line the host
# reads is on the serial console; SHMBUS-PC-FAIL marks a failed step.
/bin/busybox --install -s /bin
export PATH=/bin:/t
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run /mnt
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /dev/shm
mount -t tmpfs shm /dev/shm
fail() { echo "SHMBUS-PC-FAIL $*"; poweroff -f; }

check= pub=
for arg in $(cat /proc/cmdline); do
	case $arg in
	pc.check=*) check=${arg#pc.check=} ;;
	pc.pub=*) pub=${arg#pc.pub=} ;;
	esac
done

# ext4 and virtio-blk are modules in Debian's kernel: /m holds them and
# the modules they need, in load order (run-vm.sh)
for m in $(cat /m/order); do
	insmod /m/$m.ko || fail "insmod $m"
done
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "no /dev/vda"; sleep 0.1
done
mount -t ext4 /dev/vda /mnt || fail "mount"
echo "SHMBUS-PC-MOUNTED $(uname -r) $(nproc) cpus"

# the daemon recovers every bus under /mnt/state before it listens
export LD_LIBRARY_PATH=/t SHMBUS_SOCKET=/run/shmbusd.sock
t0=$(cut -d' ' -f1 /proc/uptime)
shmbusd --socket /run/shmbusd.sock --state-dir /mnt/state \
	--log /tmp/d.log &
i=0
while [ ! -S /run/shmbusd.sock ]; do
	i=$((i + 1)); [ $i -lt 600 ] || fail "daemon did not start"
	sleep 0.05
done
echo "SHMBUS-PC-DAEMON up after $(cut -d' ' -f1 /proc/uptime) s (started at $t0 s)"

if [ -n "$check" ]; then
	powercut check "$check"
	r=$?
	# the recovery, as the daemon told it: the evidence if ids are lost
	grep -iE 'recover|journal|replay|corrupt|torn|error|warn' /tmp/d.log |
		sed 's/^/DLOG /' | head -40
	[ $r = 0 ] || fail "check $check exit $r"
	echo "SHMBUS-PC-CHECKED $check"
fi
if [ -n "$pub" ]; then
	echo "SHMBUS-PC-PUBLISHING ${pub%%:*} ${pub#*:}"
	powercut pub "${pub%%:*}" "${pub#*:}"
	# the host cuts the power long before the producers run out
	sed 's/^/DLOG /' /tmp/d.log | tail -20
	fail "publisher ended before the cut"
fi
kill $(pidof shmbusd)
while pidof shmbusd >/dev/null; do sleep 0.1; done
umount /mnt || fail "umount"
echo SHMBUS-PC-DONE
poweroff -f
