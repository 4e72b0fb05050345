#!/bin/busybox sh
# init.sh - /init of the test VM (tests/kmod/run-vm.sh). Prints one
# "SHMBUS-VM-RESULT name status" line per step and SHMBUS-VM-DONE last;
# the host checks them and the kernel log.
/bin/busybox --install -s /bin
export PATH=/bin:/t
mkdir -p /proc /sys /dev
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
	SHMBUS_KMOD=$k shmbusd --socket /tmp/fan/sock --log /tmp/fan/d.log \
		--verbose &
	while [ ! -S /tmp/fan/sock ]; do sleep 0.05; done
	SHMBUS_KMOD=$k SHMBUS_SOCKET=/tmp/fan/sock kmod_fanout
	r=$?
	[ $r = 0 ] || tail -20 /tmp/fan/d.log
	pidof shmbusd >/dev/null || echo "daemon gone"
	result kmod_fanout-$mode $r
	# the daemon learnt of the kill -9 from the module, or from EOF
	if grep -q "kernel module: pid [0-9]* died" /tmp/fan/d.log; then
		[ $mode = kmod ]; result death-notice-$mode $?
	else
		[ $mode = eventfd ]; result death-notice-$mode $?
	fi
	killall shmbusd 2>/dev/null
	SHMBUS_KMOD=$k test_wake >/tmp/tw.log 2>&1
	r=$?; grep -E "FAIL|ERROR|error|Error" /tmp/tw.log; tail -1 /tmp/tw.log
	result test_wake-$mode $r
done
for mode in kmod eventfd; do
	[ $mode = kmod ] && k=required || k=off
	SHMBUS_KMOD=$k test_topics >/tmp/tt.log 2>&1
	r=$?; grep -E "FAIL|ERROR|error|Error" /tmp/tt.log; tail -1 /tmp/tt.log
	result test_topics-$mode $r
done
# no daemon may hold /dev/shmbus at the rmmod below
killall shmbusd 2>/dev/null
while pidof shmbusd >/dev/null; do sleep 0.1; done

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
