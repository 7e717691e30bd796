#!/bin/bash
# Surviving faults: the target dies under load and comes back; the session recovers by itself
# (no daemon involved) and the I/O completes with its data intact. A target that stays away
# past replacement_timeout fails the I/O instead of hanging it, and stop still cleans up. Run
# twice: against tgt with one connection, and against istgt with four (any lost connection
# loses the session at ErrorRecoveryLevel 0; the recovered session has all four again).
# vm-kernel: debug
# vm-args: --timeout 900
# vm-seconds: 110
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
TGT_IQN=iqn.2001-04.com.example:tgt-recovery

# target_up KIND: starts (or restarts, on the same LUN image) tgt on port 3260 or istgt on 3264.
target_up() {
    case $1 in
        tgt) rm -f /var/run/tgtd/socket.*; tgt_target $TGT_IQN 3260 64 ;;
        istgt) istgt_target recovery 3264 None 64 ;;
    esac
}
target_kill() {
    local proc=$1
    [ "$1" = tgt ] && proc=tgtd
    pkill -9 -x $proc
    wait_for "! pgrep -x $proc > /dev/null" 10 || fail "$proc still runs after SIGKILL"
}

# survive KIND IQN PORTALS CONNECTIONS: the scenario against one target.
survive() {
    local kind=$1 iqn=$2 portals=$3 want=$4 d fio_pid rec start took
    target_up $kind
    channel_create 0 $iqn "$portals" replacement_timeout=30 nopout_interval=1 nopout_timeout=3
    start_channel 0
    [ "$(channel_stat 0 connections)" = $want ] || fail "$kind: $(channel_stat 0 connections) connections, expected $want"
    d=$(channel_disks 0)

    # Two passes over 48 MiB, each written then verified: the one the kill interrupts, written
    # on both sides of the recovery, and a whole one after it.
    fio --name=survive --filename=/dev/$d --rw=randwrite --bs=64k --iodepth=16 --ioengine=libaio \
        --direct=1 --size=48m --loops=2 --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output=/tmp/fio-survive.txt > /dev/null 2>&1 &
    fio_pid=$!
    # Kill the target once fio is well under way (a few hundred commands in), long before its end.
    wait_for '[ "$(channel_stat 0 commands)" -gt 300 ]' 30 || fail "fio did not start"
    kill -0 $fio_pid 2>/dev/null || fail "fio ended before the target was killed: the test proves nothing"
    target_kill $kind
    ok "$kind: killed with I/O in flight on $want connection(s)"
    wait_for '[ "$(get $ISCSI_ROOT/0/state)" = recovering ]' 10 || fail "state '$(cat $ISCSI_ROOT/0/state)' after the target died"
    ok "state: recovering"
    nap 3
    target_up $kind
    ok "$kind restarted"
    wait_for '[ "$(get $ISCSI_ROOT/0/state)" = running ]' 60 || fail "state '$(cat $ISCSI_ROOT/0/state)' a minute after the target came back"
    wait $fio_pid || { cat /tmp/fio-survive.txt >&2; fail "fio failed across the recovery"; }
    grep -q "err= 0" /tmp/fio-survive.txt || fail "fio reported errors"
    [ "$(cat $ISCSI_ROOT/0/state)" = running ] || fail "state '$(cat $ISCSI_ROOT/0/state)' after recovery"
    # One that the recovery's login left out is added by the running session (its grow work).
    wait_for "[ \"\$(channel_stat 0 connections)\" = $want ]" 30 \
        || fail "$(channel_stat 0 connections) connections 30 s after recovery, expected $want"
    rec=$(channel_stat 0 recoveries)
    [ "$rec" -ge 1 ] || fail "no recovery counted"
    ok "$kind: session recovered with $want connection(s) ($rec recoveries); fio's 2 x 48 MiB verified with no error"

    # Gone for good: I/O fails after replacement_timeout instead of hanging.
    stop_channel 0
    echo 4 > $ISCSI_ROOT/0/replacement_timeout
    start_channel 0
    d=$(channel_disks 0)
    target_kill $kind
    start=$SECONDS
    if dd if=/dev/$d of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
        fail "a read succeeded with the target gone"
    fi
    took=$((SECONDS - start))
    [ $took -le 30 ] || fail "the read took $took s to fail"
    wait_for 'grep -q "^failed: session lost" $ISCSI_ROOT/0/state' 10 || fail "state '$(cat $ISCSI_ROOT/0/state)'"
    ok "$kind: target gone for good: I/O fails after $took s, state '$(cat $ISCSI_ROOT/0/state)'"
    stop_channel 0
    rmdir $ISCSI_ROOT/0
}

load_module
survive tgt $TGT_IQN 127.0.0.1:3260 1
survive istgt iqn.2007-09.jp.ne.peach.istgt:recovery "127.0.0.1:3264*4" 4
unload_module
ok "stop and unload after a failed session"
