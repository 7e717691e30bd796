#!/bin/bash
# vm-args: --timeout 300
# vm-seconds: 16
# The SCSI host wrappers (kernel/sys/scsi.rs) against the in-memory selftest target, no network:
# registration (proc_name, host number), LUN scan through REPORT LUNS (LUN 0 and LUN 300 > 255;
# then without LUN 0), disk sizes, data written by dd read back (write through page_ranges and
# copy_out, read through copy_in), mkfs.ext4 + mount, block/unblock holding I/O, rescan adding a
# LUN, removal (disks gone), rmmod while registered, and no warning in the kernel log.
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"

root=/sys/kernel/config/core_iscsi
ctl=$root/scsi_selftest
dmesg -C
load_module

# The core_iscsi host numbers present now.
our_hosts() {
    local h
    for h in /sys/class/scsi_host/host*; do
        [ -e "$h" ] || continue
        [ "$(cat "$h/proc_name")" = core_iscsi ] && echo "${h##*host}"
    done
    return 0
}
# The block device of H:0:0:L; sd probes asynchronously, so it may take a moment to appear.
disk_of() {
    local i d
    for i in $(seq 1 100); do
        d=$(ls "/sys/bus/scsi/devices/$1/block/" 2>/dev/null | head -1)
        [ -n "$d" ] && [ -b "/dev/$d" ] && { echo "$d"; return 0; }
        nap 0.1
    done
    return 0
}

[ -z "$(our_hosts)" ] || fail "a core_iscsi host exists before the selftest starts"
echo scsi > $ctl
host=$(our_hosts)
[ -n "$host" ] && [ "$(echo "$host" | wc -l)" = 1 ] || fail "expected one core_iscsi host, got '$host'"
ok "selftest registered SCSI host $host, proc_name core_iscsi"

for lun in 0 300; do
    [ -d "/sys/bus/scsi/devices/$host:0:0:$lun" ] || fail "$host:0:0:$lun missing"
done
luns=$(ls /sys/bus/scsi/devices/ | grep -c "^$host:0:0:" || true)
[ "$luns" = 2 ] || fail "expected 2 LUNs on host $host, got $luns: $(ls /sys/bus/scsi/devices/)"
ok "scan found exactly $host:0:0:0 and $host:0:0:300 (REPORT LUNS, LUN > 255)"
model=$(cat /sys/bus/scsi/devices/$host:0:0:300/model)
[ "$model" = "SELFTEST LUN 300" ] || fail "LUN 300 model is '$model'"
[ "$(cat /sys/bus/scsi/devices/$host:0:0:0/vendor)" = CORE-ISC ] || fail "vendor of LUN 0"
ok "INQUIRY strings reach sysfs"

d0=$(disk_of $host:0:0:0); d300=$(disk_of $host:0:0:300)
[ -n "$d0" ] && [ -n "$d300" ] || fail "no disk for LUN 0 ('$d0') or LUN 300 ('$d300')"
[ "$(cat /sys/block/$d0/size)" = $((64 * 2048)) ] || fail "/dev/$d0 is $(cat /sys/block/$d0/size) sectors, expected 64 MiB"
[ "$(cat /sys/block/$d300/size)" = $((8 * 2048)) ] || fail "/dev/$d300 is $(cat /sys/block/$d300/size) sectors, expected 8 MiB"
ok "/dev/$d0 is 64 MiB, /dev/$d300 is 8 MiB (READ CAPACITY)"

# Data: a pattern with odd offsets and sizes, written with O_DIRECT (the block layer's pages go
# to the LLD as they are) and through the page cache, read back after dropping caches.
tmp=$(mktemp -d)
head -c $((3 * 1024 * 1024 + 4096)) /dev/urandom > $tmp/pattern
for d in $d0 $d300; do
    dd if=$tmp/pattern of=/dev/$d bs=64k seek=3 oflag=direct conv=fsync status=none
    dd if=$tmp/pattern of=/dev/$d bs=4k seek=900 conv=fsync status=none
    echo 3 > /proc/sys/vm/drop_caches
    cmp <(dd if=/dev/$d bs=64k skip=3 count=$((($(stat -c %s $tmp/pattern) + 65535) / 65536)) iflag=direct status=none | head -c $(stat -c %s $tmp/pattern)) $tmp/pattern \
        || fail "/dev/$d: data read back (O_DIRECT) differs"
    cmp <(dd if=/dev/$d bs=4k skip=900 status=none | head -c $(stat -c %s $tmp/pattern)) $tmp/pattern \
        || fail "/dev/$d: data read back (page cache) differs"
done
ok "3 MiB patterns written and read back on both LUNs (direct and buffered)"

# Past the end: the target answers CHECK CONDITION, the write fails cleanly.
if dd if=/dev/zero of=/dev/$d300 bs=512 seek=$((8 * 2048)) count=1 oflag=direct status=none 2>/dev/null; then
    fail "a write past the end of /dev/$d300 succeeded"
fi
ok "a write past the end fails"

mkfs.ext4 -q -F /dev/$d0
mkdir -p $tmp/mnt
mount /dev/$d0 $tmp/mnt
cp $tmp/pattern $tmp/mnt/file
sync
umount $tmp/mnt
echo 3 > /proc/sys/vm/drop_caches
mount -o ro /dev/$d0 $tmp/mnt
cmp $tmp/mnt/file $tmp/pattern || fail "file on ext4 differs after remount"
umount $tmp/mnt
ok "mkfs.ext4, mount, write, umount, remount and read back"

# block: I/O waits; unblock: it completes.
echo block > $ctl
dd if=/dev/$d300 of=/dev/null bs=4k count=1 skip=77 iflag=direct status=none &
reader=$!
nap 3
kill -0 $reader 2>/dev/null || fail "a read completed while the host was blocked"
echo unblock > $ctl
wait $reader || fail "the held read failed after unblock"
ok "block holds I/O, unblock releases it"

# rescan: the target grows LUN 301.
echo rescan > $ctl
[ -d "/sys/bus/scsi/devices/$host:0:0:301" ] || fail "rescan did not add $host:0:0:301"
ok "rescan adds the new LUN 301"
# The selftest logs for_each_device after each scan; by now sd has bound LUN 300's disk.
dmesg | grep -q "scsi-selftest: host $host lun 300 disk $d300 vendor 'CORE-ISC' model 'SELFTEST LUN 300' rev '0001'" \
    || fail "for_each_device did not report LUN 300 as $d300: $(dmesg | grep scsi-selftest)"
ok "for_each_device reports LUN, disk name and INQUIRY strings"

echo stop > $ctl
[ -z "$(our_hosts)" ] || fail "host still there after stop"
for d in $d0 $d300; do [ ! -e /sys/block/$d ] || fail "/dev/$d still there after stop"; done
[ -z "$(ls /sys/bus/scsi/devices/ | grep "^$host:" || true)" ] || fail "devices of host $host remain"
ok "stop removes the disks and the host"
if echo stop > $ctl 2>/dev/null; then fail "a second stop succeeded"; fi

# Without LUN 0: INQUIRY of LUN 0 answers peripheral qualifier 3 and REPORT LUNS finds the rest.
echo scsi-nolun0 > $ctl
host=$(our_hosts)
[ -d "/sys/bus/scsi/devices/$host:0:0:7" ] && [ -d "/sys/bus/scsi/devices/$host:0:0:300" ] \
    || fail "without LUN 0: $(ls /sys/bus/scsi/devices/)"
[ ! -e "/sys/bus/scsi/devices/$host:0:0:0" ] || fail "LUN 0 was added although absent"
ok "without LUN 0 the scan finds LUNs 7 and 300 through REPORT LUNS"
d7=$(disk_of $host:0:0:7)
dd if=$tmp/pattern of=/dev/$d7 bs=1M count=1 oflag=direct status=none
cmp <(dd if=/dev/$d7 bs=1M count=1 iflag=direct status=none) <(head -c 1M $tmp/pattern) || fail "LUN 7 data"
ok "LUN 7 reads back"

# rmmod while registered: module exit removes the host.
unload_module
[ -z "$(our_hosts)" ] || fail "host remains after rmmod"
[ ! -e /sys/block/$d7 ] || fail "/dev/$d7 remains after rmmod"
ok "rmmod with a registered host removes it"

if dmesg | grep -E 'WARNING|BUG|Oops|Call Trace|abort of tag'; then
    fail "kernel log shows a warning, a bug or an abort"
fi
ok "no warning in the kernel log"
dmesg | grep -E "core_iscsi|sd [0-9]|scsi [0-9]" | tail -40
