#!/bin/busybox sh
# init.sh - /init of the systemd VM's initramfs (tests/systemd/run-vm.sh):
# loads the modules of the root disk (ext4 and virtio-blk are modules in
# Debian's kernel), mounts root= read-write and hands the machine to
# systemd, the root's /sbin/init. A failure is printed as SHMBUS-VM-FAIL
# and powers off: the host reads the serial console.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "SHMBUS-VM-FAIL initramfs: $*"; poweroff -f; }

root=/dev/vda
for arg in $(cat /proc/cmdline); do
	case $arg in
	root=/dev/*) root=${arg#root=} ;;
	esac
done
for m in $(cat /m/order); do
	insmod /m/$m.ko || fail "insmod $m"
done
i=0
while [ ! -b "$root" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "no $root"; sleep 0.1
done
mount -t ext4 -o rw "$root" /newroot || fail "mount $root"
[ -e /newroot/sbin/init ] || [ -L /newroot/sbin/init ] ||
	fail "no /sbin/init in $root"
umount /proc /sys
mount -o move /dev /newroot/dev || fail "move /dev"
exec switch_root /newroot /sbin/init
