#!/bin/bash
# The control interface: invalid values refused with an errno and a kernel log line naming the
# attribute (nothing half-applied), settings locked while running, login failures named in
# `state` with nothing left behind, IPv6 portals, LUN numbering (LUN 0 absent, LUN > 255), the
# queue depth, keepalive pings both ways, and rmmod refused while a channel exists.
# vm-kernel: debug
# vm-args: --timeout 600
# vm-seconds: 74
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2003-01.org.linux-iscsi.vm:control
load_module
ch=$ISCSI_ROOT/0
mkdir $ch

# refused VALUE ATTR ERRNO-TEXT: the write fails with that error and logs the attribute name.
refused() {
    local err
    dmesg -C
    if err=$( { printf '%s\n' "$1" > "$ch/$2"; } 2>&1 ); then fail "$2 accepted '$1'"; fi
    case $err in *"$3"*) ;; *) fail "$2='$1' failed with '$err', expected '$3'" ;; esac
    dmesg | grep -q "channel 0: $2: " || fail "no kernel log line naming $2 for '$1'"
}
refused "not-an-iqn" target_name "Invalid argument"
refused "iqn.x y" initiator_name "Invalid argument"
refused "1.2.3.4:99999" portals "Invalid argument"
refused "[::1" portals "Invalid argument"
refused "1 2 3 4 5 6 7 8 9" portals "Invalid argument"
refused "MaxRecvDataSegmentLength=100" params "Invalid argument"
refused "ImmediateData=Yes;Bogus=1" params "Invalid argument"
refused "ErrorRecoveryLevel=1" params "Invalid argument"
refused "MaxConnections=2" params "Invalid argument"
refused "0" queue_depth "Invalid argument"
refused "2000" queue_depth "Invalid argument"
refused "ten" login_timeout "Invalid argument"
refused "0" tmf_timeout "Invalid argument"
refused "3601" tmf_timeout "Invalid argument"
refused "MD4" chap_algorithms "Invalid argument"
refused "resume" control "Invalid argument"
ok "invalid values refused with EINVAL and a log line naming the attribute"

echo "ImmediateData=No;InitialR2T=Yes" > $ch/params
refused "ImmediateData=Yes;MaxBurstLength=1" params "Invalid argument"
grep -q "ImmediateData=No;" $ch/params || fail "a refused params write changed the settings"
ok "a refused write leaves the previous value (nothing half-applied)"

refused "start" control "Invalid argument"   # no target name yet
ok "start without a target name is refused"

# Login failures: the reason in `state`, no SCSI host left.
hosts() { ls /sys/class/scsi_host | wc -l; }
fails_with() {
    local err before
    before=$(hosts)
    if err=$( { echo start > $ch/control; } 2>&1 ); then fail "start succeeded, expected '$1'"; fi
    [ "$(cat $ch/state)" = "failed: $1" ] || fail "state '$(cat $ch/state)', expected 'failed: $1'"
    [ "$(hosts)" = "$before" ] && [ -z "$(cat $ch/host)" ] || fail "a SCSI host was left after '$1'"
    case $err in *"$2"*) ;; *) fail "start failed with '$err', expected '$2'" ;; esac
    ok "start fails: state 'failed: $1', errno '$2', no host left"
}
echo $IQN > $ch/target_name
echo $INITIATOR_NAME > $ch/initiator_name
echo 127.0.0.1:3260 > $ch/portals
fails_with "connection refused" "Connection refused"
# A listener that accepts and never answers: the login times out.
python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 3999)); s.listen(4)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' &
silent=$!
wait_for "(exec 3<>/dev/tcp/127.0.0.1/3999) 2>/dev/null" 20 || fail "the silent listener did not start"
echo 127.0.0.1:3999 > $ch/portals
echo 2 > $ch/login_timeout
fails_with "timeout" "timed out"
kill $silent
# An unknown target name: tgt answers "not found" (status 0203h); LIO answers "service
# unavailable" (0301h) for the same thing, and the state says what the target said.
tgt_target iqn.2001-04.com.example:tgt-control 3263 8
echo 127.0.0.1:3263 > $ch/portals
echo iqn.2003-01.org.linux-iscsi.vm:nosuchtarget > $ch/target_name
fails_with "target not found" "No such file or directory"
lio_target $IQN 3260 8
echo 127.0.0.1:3260 > $ch/portals
fails_with "target unavailable" "Resource temporarily unavailable"

# IPv6, several portals (the first refuses), queue depth, settings locked while running.
echo $IQN > $ch/target_name
mkdir -p "$CFS/target/iscsi/$IQN/tpgt_1/np/[::1]:3260"
echo "[::1]:3999 [::1]:3260" > $ch/portals
echo 16 > $ch/queue_depth
start_channel 0
host=$(cat $ch/host)
[ "$(cat /sys/class/scsi_host/host$host/can_queue)" = 16 ] || fail "can_queue $(cat /sys/class/scsi_host/host$host/can_queue), expected 16"
ok "logged in over IPv6 through the second portal; can_queue is the configured queue depth"
refused "64" queue_depth "Device or resource busy"
ok "settings are locked while the channel runs (EBUSY)"

# Keepalive: we ping an idle connection; we answer the target's pings (LIO nopin_timeout).
stop_channel 0
echo 1 > $ch/nopout_interval
# LIO's NOP-In interval is an attribute of a node ACL: give our initiator one (3 s, its minimum).
acl=$CFS/target/iscsi/$IQN/tpgt_1/acls/$INITIATOR_NAME
mkdir -p $acl/lun_0
ln -s $CFS/target/iscsi/$IQN/tpgt_1/lun/lun_0 $acl/lun_0/mapped
echo 3 > $acl/attrib/nopin_timeout
start_channel 0
nap 8
pings=$(channel_stat 0 conn0.nop_pings)
[ "$pings" -ge 2 ] || fail "only $pings NOP-Out pings on an idle connection"
[ "$(cat $ch/state)" = running ] || fail "state $(cat $ch/state) after idling with pings"
grep -qx "recoveries 0" $ch/stats || fail "the connection was recovered while idle: $(cat $ch/stats)"
ok "idle connection: $pings NOP-Out pings answered, target NOP-Ins answered, no recovery"

# rmmod while a channel exists is refused: the disks are never pulled away.
if err=$(rmmod core_iscsi 2>&1); then fail "rmmod succeeded with a running channel"; fi
case $err in *"in use"*) ;; *) fail "rmmod failed with '$err'" ;; esac
[ "$(cat $ch/state)" = running ] || fail "state $(cat $ch/state) after a refused rmmod"
ok "rmmod refused while a channel exists ($err)"
stop_channel 0
rmdir $ch
unload_module

# LUN 0 absent, LUN 300 present.
IQN2=iqn.2003-01.org.linux-iscsi.vm:sparse
tpg=$CFS/target/iscsi/$IQN2/tpgt_1
mkdir -p $tpg
for lun in 5 300; do
    dev=$CFS/target/core/fileio_9$lun/sparse$lun
    mkdir -p $dev
    truncate -s 8M /dev/shm/sparse$lun.img
    echo "fd_dev_name=/dev/shm/sparse$lun.img,fd_dev_size=$((8 << 20))" > $dev/control
    echo 1 > $dev/enable
    mkdir -p $tpg/lun/lun_$lun
    ln -s $dev $tpg/lun/lun_$lun/port
done
mkdir -p $tpg/np/127.0.0.1:3262
echo 1 > $tpg/attrib/generate_node_acls
echo 0 > $tpg/attrib/demo_mode_write_protect
echo 0 > $tpg/attrib/authentication
echo 1 > $tpg/enable
load_module
channel_create 1 $IQN2 127.0.0.1:3262
start_channel 1
host=$(cat $ISCSI_ROOT/1/host)
luns=$(ls -d /sys/class/scsi_host/host$host/device/target*/$host:0:0:* | sed 's/.*://' | sort -n | tr '\n' ' ')
[ "$luns" = "5 300 " ] || fail "LUNs found: '$luns', expected 5 and 300"
d=($(channel_disks 1))
dd if=/dev/urandom of=/tmp/p bs=64k count=16 status=none
dd if=/tmp/p of=/dev/${d[1]} bs=64k oflag=direct status=none
dd if=/dev/${d[1]} of=/tmp/q bs=64k count=16 iflag=direct status=none
cmp /tmp/p /tmp/q || fail "LUN 300 data differs"
ok "LUN 0 absent: LUNs 5 and 300 found by REPORT LUNS; LUN 300 reads back what was written"
stop_channel 1
rmdir $ISCSI_ROOT/1
unload_module
