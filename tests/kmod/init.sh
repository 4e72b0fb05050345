#!/bin/busybox sh
# init.sh - /init of the test VM (tests/kmod/run-vm.sh). Prints one
# "SHMBUS-VM-RESULT name status" line per step and SHMBUS-VM-DONE last;
# the host checks them and the kernel log.
/bin/busybox --install -s /bin
export PATH=/bin:/t
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/shm /tmp /run
mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
ulimit -n 4096
echo "SHMBUS-VM-BOOTED $(uname -r) $(nproc) cpus"
result() { echo "SHMBUS-VM-RESULT $1 $2"; }

insmod /shmbus.ko || echo "SHMBUS-VM-FAIL insmod"
[ -c /dev/shmbus ] || echo "SHMBUS-VM-FAIL no-/dev/shmbus"

cd /t
kmod_test; result kmod_test $?

export SHMBUS_DAEMON=/t/shmbusd CMOCKA_MESSAGE_OUTPUT=stdout
export SHMBUS_TEST_TMP=/tmp LD_LIBRARY_PATH=/t
for mode in kmod eventfd; do
	[ $mode = kmod ] && k=required || k=off
	rm -rf /tmp/fan; mkdir -p /tmp/fan
	SHMBUS_KMOD=$k SHMBUS_SOCKET=/tmp/fan/sock kmod_fanout
	result kmod_fanout-$mode $?
	SHMBUS_KMOD=$k SHMBUS_SOCKET=/tmp/fan/sock /t/shmbus 2>/dev/null
	kill $(cat /tmp/fan/sock.pid 2>/dev/null) 2>/dev/null
	SHMBUS_KMOD=$k test_wake >/tmp/tw.log 2>&1
	r=$?; tail -3 /tmp/tw.log; result test_wake-$mode $r
done
SHMBUS_KMOD=required test_topics >/tmp/tt.log 2>&1
r=$?; tail -3 /tmp/tt.log; result test_topics-kmod $r
pkill shmbusd 2>/dev/null

kmod_bench

# rmmod while a process holds registrations: refused, nothing freed
kmod_test hold > /tmp/hold.log &
holder=$!
while ! grep -q holding /tmp/hold.log 2>/dev/null; do sleep 0.1; done
if rmmod shmbus 2>/dev/null; then result rmmod-busy 1; else result rmmod-busy 0; fi
kill -9 $holder; wait $holder 2>/dev/null
sleep 0.2
rmmod shmbus; r=$?; result rmmod $r
[ $r = 0 ] || echo "SHMBUS-VM-FAIL rmmod"
[ -e /dev/shmbus ] && echo "SHMBUS-VM-FAIL /dev/shmbus-after-rmmod"

dmesg | grep -E 'shmbus|WARNING|BUG|Oops' | tail -20
echo SHMBUS-VM-DONE
poweroff -f
