#!/bin/bash
# Surviving faults: the target dies under load and comes back; the session recovers by itself
# (no daemon involved) and the I/O completes with its data intact. A target that stays away
# past replacement_timeout fails the I/O instead of hanging it, and stop still cleans up.
# vm-kernel: debug
# vm-args: --timeout 600
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2001-04.com.example:tgt-recovery
tgt_target $IQN 3260 64
load_module
channel_create 0 $IQN 127.0.0.1:3260 replacement_timeout=30 nopout_interval=1 nopout_timeout=3
start_channel 0
d=$(channel_disks 0)

fio --name=survive --filename=/dev/$d --rw=randwrite --bs=64k --iodepth=16 --ioengine=libaio \
    --direct=1 --size=48m --loops=8 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output=/tmp/fio-survive.txt > /dev/null 2>&1 &
fio_pid=$!
# Kill the target once fio is well under way (a few hundred commands in), long before its end.
wait_for '[ "$(channel_stat 0 commands)" -gt 300 ]' 30 || fail "fio did not start"
kill -0 $fio_pid 2>/dev/null || fail "fio ended before the target was killed: the test proves nothing"
pkill -9 -x tgtd
ok "tgtd killed with I/O in flight"
wait_for 'grep -qx recovering $ISCSI_ROOT/0/state' 10 || fail "state '$(cat $ISCSI_ROOT/0/state)' after the target died"
ok "state: recovering"
sleep 3
rm -f /var/run/tgtd/socket.*
tgt_target $IQN 3260 64
ok "tgtd restarted"
wait_for 'grep -qx running $ISCSI_ROOT/0/state' 60 || fail "state '$(cat $ISCSI_ROOT/0/state)' a minute after the target came back"
wait $fio_pid || { cat /tmp/fio-survive.txt >&2; fail "fio failed across the recovery"; }
grep -q "err= 0" /tmp/fio-survive.txt || fail "fio reported errors"
[ "$(cat $ISCSI_ROOT/0/state)" = running ] || fail "state '$(cat $ISCSI_ROOT/0/state)' after recovery"
rec=$(channel_stat 0 recoveries)
[ "$rec" -ge 1 ] || fail "no recovery counted"
ok "session recovered ($rec recoveries); fio's 8 x 48 MiB verified with no error"

# Gone for good: I/O fails after replacement_timeout instead of hanging.
stop_channel 0
echo 4 > $ISCSI_ROOT/0/replacement_timeout
start_channel 0
d=$(channel_disks 0)
pkill -9 -x tgtd
start=$SECONDS
if dd if=/dev/$d of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
    fail "a read succeeded with the target gone"
fi
took=$((SECONDS - start))
[ $took -le 30 ] || fail "the read took $took s to fail"
wait_for 'grep -q "^failed: session lost" $ISCSI_ROOT/0/state' 10 || fail "state '$(cat $ISCSI_ROOT/0/state)'"
ok "target gone for good: I/O fails after $took s, state '$(cat $ISCSI_ROOT/0/state)'"
stop_channel 0
rmdir $ISCSI_ROOT/0
unload_module
ok "stop and unload after a failed session"
