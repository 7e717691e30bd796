#!/bin/bash
# A hostile target: every byte from a target is untrusted. tests/e2e/hostile-target.py (a scripted
# target with a 16 MiB RAM LUN) misbehaves once per mode, on the first command that touches
# 4..5 MiB of the disk (after the LUN scan). For each mode the kernel must stay alive (the VM
# harness fails the run on any oops/WARN/BUG), drop the connection where the PDU is a protocol
# violation (ErrorRecoveryLevel 0) and say so in the kernel log, ignore what is harmless, and
# either recover the session with the data intact (the target then behaves: --after good) or
# fail it cleanly within replacement_timeout (the target then refuses logins: --after refuse).
# `stop` and rmdir must work after every mode, and rmmod at the end.
#   Without MODEs this script runs the faults with a target that then behaves (the first pass
#   below); tests/e2e/hostile-target-bounds.sh runs the rest (HOSTILE_PART=bounds: the faults
#   with a target that then refuses, stop during a fault, a slow logout, added connections that
#   drop or go silent), in a VM of its own, so that `make check` can run the halves side by side.
#   HOSTILE_PART=all runs both.
#   tests/vm/run tests/e2e/hostile-target.sh [MODE...] runs only those modes, in every pass. The
#   target's log and the kernel log of each mode are left in $VM_ARTIFACTS/hostile/.
# vm-kernel: debug
# vm-args: --timeout 1800
# vm-seconds: 260
# vm-cpu: light
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2026-11.org.core-iscsi:hostile
TARGET=$REPO/tests/e2e/hostile-target.py
ch=$ISCSI_ROOT/0
port=3300
t0=$SECONDS
part=${HOSTILE_PART:-faults}
case $part in faults|bounds|all) ;; *) fail "HOSTILE_PART must be faults, bounds or all, not '$part'" ;; esac
[ $# = 0 ] || part=all
load_module
# Made once: each mode's write lands it in the trigger window, and reads it back.
head -c $((1 << 20)) /dev/urandom > /tmp/pattern
# Each mode's kernel log is saved as it ends; the targets' logs (/tmp/hostile-*.log) once, at
# the end, whatever the end.
mkdir -p "$VM_ARTIFACTS/hostile"
trap 'cp /tmp/hostile-*.log "$VM_ARTIFACTS/hostile/" 2>/dev/null || true' EXIT

# mode : what the kernel log must say ("" for nothing) : harmless (the connection must survive)
expect() {
    case $1 in
        good)             echo "|yes" ;;
        oversize)         echo "connection lost: protocol error|no" ;;
        past-end)         echo "Data-In offset out of order or out of range|no" ;;
        bad-itt)          echo "|yes" ;;
        data-for-write)   echo "Data-In for a task that reads nothing|no" ;;
        # The first response completes the command; the second names an ITT no longer in
        # flight, which is ignored like any late response (ITTs carry a generation).
        dup-response)     echo "|yes" ;;
        bad-datasn)       echo "Data-In DataSN out of order|no" ;;
        r2t-past-end)     echo "bad R2T: OutOfRange|no" ;;
        r2t-burst)        echo "bad R2T: BurstTooLong|no" ;;
        initiator-opcode) echo "unexpected PDU (opcode|no" ;;
        garbage)          echo "connection lost: protocol error|no" ;;
        huge-sense)       echo "sense length past the data segment|no" ;;
        # Each ping is answered, or (the answers waiting at their fixed bound) the connection is
        # dropped: either is right, unbounded queueing is not (if dropped: checked below).
        nop-flood)        echo "|maybe" ;;
        async-logout)     echo "target requests logout (event 1)|no" ;;
        close-midway)     echo "connection lost|no" ;;
        # DefaultTime2Wait=3600 negotiated: the session still gives up at replacement_timeout
        # (run only in the refuse pass, where that is timed).
        time2wait)        echo "connection lost|no" ;;
        ping-data)        echo "NOP-In ping data of|no" ;;
        # Digests on every PDU both ways, and a ping's data echoed with its data digest.
        ping-digest)      echo "|yes" ;;
        # A rejected command's CmdSN is a gap the target holds every later command behind
        # (RFC 7143 6.3): the connection goes at once, and the new session has no gap. The
        # command fails (DID_ERROR: the target would reject it again) and the midlayer's
        # retry goes in the new session; after a digest error the recovery sends it again.
        reject)           echo "target rejected command|no" ;;
        reject-digest)    echo "target rejected command|no" ;;
        # Rejected in every session: the write fails after the midlayer's retries, each a
        # recovery; the session stays up and reads work.
        reject-always)    echo "target rejected command|eio" ;;
        # A Data-Out rejected for its digest: the rest of the data goes, the target ends the
        # task with CHECK CONDITION and the midlayer retries the write: no connection drop.
        reject-data-out)  echo "target rejected a PDU (reason 0x2)|yes" ;;
        # For another reason the target keeps the task, short of data: at ErrorRecoveryLevel 0
        # the connection goes, and the recovery sends the write again.
        reject-data-out-field) echo "target rejected a Data-Out of task|no" ;;
        # The command times out (device timeout 3 s), ABORT TASK is answered, the retry works.
        silent)           echo "|yes" ;;
        # Nothing answers the error handler: after the unanswered target reset the session is
        # dropped and logged in again (the target ends the old tasks), and the retry works.
        silent-tmf)       echo "connection lost: target reset not answered or refused|no" ;;
        # A command answered while (or after) it is aborted: no use after free, no double
        # completion; the retry reads the data.
        late-data)        echo "|yes" ;;
        after-abort)      echo "|yes" ;;
        login-oversize)   echo "connection lost|login" ;;
        login-continue)   echo "|login" ;;
        logout-slow|added-drop|added-mute) echo "|yes" ;;  # their own functions below
        *) fail "unknown mode $1" ;;
    esac
}


# target_start MODE AFTER LOG: the scripted target on the next port, in the caller's `tpid`,
# listening; the kernel log cleared.
target_start() {
    port=$((port + 1))
    python3 "$TARGET" $port "$1" --after "$2" --log "$3" &
    tpid=$!
    wait_for "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null" 20 || fail "$1: the target did not start"
    dmesg -C
}


# run_mode MODE AFTER
run_mode() {
    local mode=$1 after=$2 log tpid e want harmless st rec errs wrc=0 rrc=0 start_ok=1
    log=/tmp/hostile-$mode-$after.log
    e=$(expect "$mode"); want=${e%|*}; harmless=${e#*|}
    target_start "$mode" "$after" "$log"
    # Login modes get a long login_timeout: their refusal must come from our own checks, well
    # before it.
    local lt=3
    [ "$harmless" != login ] || lt=20
    # tmf_timeout=2: silent-tmf's three unanswered requests take 6 s, not 30.
    local extra=()
    [ "$mode" != ping-digest ] || extra=("params=HeaderDigest=CRC32C;DataDigest=CRC32C")
    channel_create 0 $IQN 127.0.0.1:$port replacement_timeout=3 login_timeout=$lt tmf_timeout=2 \
        "${extra[@]}"
    local t_start=$SECONDS
    within 120 ctl start $ch/control || start_ok=0
    t_start=$((SECONDS - t_start))
    if [ "$harmless" = login ]; then
        st=$(get $ch/state)
        [ $start_ok = 0 ] || fail "$mode: start succeeded against a hostile login"
        # Refused on our own bound, at once: a protocol error, not the login timeout nor the
        # target giving up (login-continue: the 32-round limit; login-oversize: the header's
        # length is refused before a byte of its 16 MiB is read).
        local why="dmesg: $(dmesg | grep core-iscsi | tail -5); target: $(tail -5 "$log")"
        [ "$st" = "failed: protocol error" ] || fail "$mode: state '$st', expected 'failed: protocol error' ($why)"
        [ $t_start -lt 10 ] || fail "$mode: start took $t_start s to fail (login_timeout is $lt s) ($why)"
        [ "$mode" != login-continue ] || ! grep -q "login misbehaviour done" "$log" \
            || fail "$mode: the target gave up before we did ($why)"
        [ -z "$(get $ch/host)" ] || fail "$mode: a SCSI host was left"
        grep -q "^[0-9.]* TRIGGER $mode" "$log" || fail "$mode: the target never misbehaved"
        within 60 ctl stop $ch/control 2>/dev/null || true
        rmdir $ch || fail "$mode: rmdir failed"
        kill $tpid; wait $tpid 2>/dev/null || true
        dmesg > "$VM_ARTIFACTS/hostile/dmesg-$mode-$after.txt"
        ok "$mode: login refused in $t_start s, state '$st', no host left; rmdir works"
        return
    fi
    [ $start_ok = 1 ] || fail "$mode/$after: start failed: $(get $ch/state) (the scan never reaches the trigger window)"
    local d
    d=$(channel_disks 0)
    [ -n "$d" ] || fail "$mode/$after: no disk after start"
    case $mode in silent*|late-data|after-abort) echo 3 > /sys/block/$d/device/timeout ;; esac
    # The write lands in the trigger window (4 MiB), as one 1 MiB WRITE of /tmp/pattern (made
    # once, below); the read comes back as 64 KiB READs. Both must end (the timeouts are far
    # above replacement_timeout). The read's file is emptied first: a read that fails must not
    # find the last mode's bytes.
    : > /tmp/back
    local t_write=$SECONDS
    within 90 dd if=/tmp/pattern of=/dev/$d bs=1M seek=4 count=1 oflag=direct status=none 2>/tmp/dd.err || wrc=$?
    t_write=$((SECONDS - t_write))
    within 90 dd if=/dev/$d of=/tmp/back bs=64k skip=64 count=16 iflag=direct status=none 2>>/tmp/dd.err || rrc=$?
    [ $wrc != 124 ] && [ $rrc != 124 ] || fail "$mode/$after: I/O hung (dd timed out: write $wrc read $rrc)"
    # Let a recovery in progress end, one way or the other.
    wait_for '[ "$(get $ch/state)" != recovering ]' 20 || true
    st=$(get $ch/state)
    rec=$(channel_stat 0 recoveries); errs=$(channel_stat 0 errors)
    # The kernel log's lines of channel 0, sorted out by the shell (one process, not two).
    local klog="" line
    while IFS= read -r line; do
        [[ $line != *"core-iscsi: channel 0: "* ]] || klog+=$line$'\n'
    done < <(dmesg)
    klog=${klog%$'\n'}
    if [ -n "$want" ]; then
        grep -qF -- "$want" <<< "$klog" \
            || { echo "$klog" >&2; cat "$log" >&2; fail "$mode/$after: no kernel log line '$want'"; }
    fi
    grep -q "^[0-9.]* TRIGGER $mode" "$log" || [ "$mode" = good ] \
        || { cat "$log" >&2; fail "$mode/$after: the target never misbehaved (trigger not reached)"; }
    if [ "$mode" = reject-data-out ]; then
        # The command stayed: the rest of its data came, and the target could end the task
        # (failing the command at the Reject, as before, stopped the data and left the task
        # on the target; the midlayer's retry alone would pass the checks below).
        grep -q "ended with CHECK CONDITION (CRC error detected)" "$log" \
            || { cat "$log" >&2; fail "reject-data-out: the rejected write's task never ended at the target (the rest of its data never came)"; }
    fi
    case $mode in reject|reject-digest|reject-always)
        # Recovered at once, not after the SCSI timeout (30 s) of a command left behind the
        # gap and the error handler's escalation.
        local bound=15
        [ $mode != reject-always ] || bound=60
        [ $t_write -le $bound ] || { echo "$klog" >&2; tail -20 "$log" >&2; fail "$mode: the write took $t_write s (bound $bound s): the session waited behind the CmdSN gap, or sent a command the target rejects again and again"; }
        ;;
    esac
    if [ "$mode" = ping-digest ]; then
        grep -qx "DataDigest=CRC32C" $ch/negotiated && grep -qx "HeaderDigest=CRC32C" $ch/negotiated \
            || fail "ping-digest: digests not negotiated: $(cat $ch/negotiated)"
        grep -q "ping-digest: echo of 100 bytes verified" "$log" \
            || { cat "$log" >&2; fail "ping-digest: the ping's echo never came back intact"; }
        ! grep -q "digest error" "$log" || { cat "$log" >&2; fail "ping-digest: the target saw a digest error"; }
    fi
    if [ "$mode" = async-logout ]; then
        # 200 requests back to back: one is acted on, and logged, once.
        local n_req
        n_req=$(grep -c "target requests logout" <<< "$klog" || true)
        [ "$n_req" = 1 ] || fail "async-logout: $n_req kernel log lines for one burst of logout requests"
    fi
    local what
    case $harmless in
    yes)
        [ "$st" = running ] && [ "$rec" = 0 ] && [ $wrc = 0 ] && [ $rrc = 0 ] \
            || { echo "$klog" >&2; fail "$mode/$after: harmless, yet state '$st', recoveries $rec, dd write $wrc read $rrc"; }
        ! grep -q "connection lost" <<< "$klog" || fail "$mode/$after: the connection was dropped"
        cmp -s /tmp/pattern /tmp/back || fail "$mode/$after: data read back differs"
        what="ignored: the connection stays up, no recovery, data intact"
        case $mode in silent|late-data|after-abort)
            [ "$(channel_stat 0 aborts)" -ge 1 ] || fail "$mode: no abort counted"
            what="$what; aborts $(channel_stat 0 aborts)" ;;
        esac
        if [ "$mode" = good ]; then
            # The fake target itself is right: the 1 MiB write went as immediate data + R2Ts.
            local r2ts; r2ts=$(channel_stat 0 conn0.r2ts)
            [ "$r2ts" -ge 4 ] || fail "good: only $r2ts R2Ts for a 1 MiB write"
            what="the fake target is correct: scan, 1 MiB write ($r2ts R2Ts), reads, data intact"
        fi
        ;;
    eio)
        # Each try of the write (the first and the midlayer's 5 retries) cost a recovery.
        [ "$st" = running ] && [ $wrc != 0 ] && [ $rrc = 0 ] && [ "$rec" -ge 1 ] && [ "$rec" -le 6 ] \
            || { echo "$klog" >&2; fail "$mode/$after: state '$st', recoveries $rec, dd write $wrc read $rrc (expected: the write failed, the read worked, 1-6 recoveries)"; }
        grep -q "Input/output error" /tmp/dd.err || fail "$mode/$after: the write did not fail with an I/O error: $(cat /tmp/dd.err)"
        what="the write failed after $rec recoveries in $t_write s, the session stays up, reads work"
        ;;
    maybe|no)
        if [ "$mode" = nop-flood ] && grep -q "connection lost" <<< "$klog"; then
            # Dropped: only because the answers waiting reached the engine's fixed number of
            # ping buffers (proto ffp_conn PING_BUFS), never by growing.
            grep -q "too many NOP-In pings waiting for an answer" <<< "$klog" \
                || { dmesg | tail -20 >&2; fail "nop-flood: dropped, but not at the engine's bound on waiting ping answers"; }
        fi
        if [ "$harmless" = maybe ] && [ "$rec" = 0 ]; then
            [ "$st" = running ] && [ $wrc = 0 ] && [ $rrc = 0 ] && cmp -s /tmp/pattern /tmp/back \
                || fail "$mode/$after: no recovery, yet state '$st', dd write $wrc read $rrc"
            what="survived without a recovery, data intact"
        elif [ "$after" = good ]; then
            [ "$rec" -ge 1 ] || { echo "$klog" >&2; fail "$mode/$after: no recovery counted (state '$st')"; }
            grep -q "connection lost\|target requests logout" <<< "$klog" \
                || { echo "$klog" >&2; fail "$mode/$after: no 'connection lost' in the kernel log"; }
            [ "$st" = running ] || fail "$mode/$after: state '$st' after recovering against a good target"
            [ $wrc = 0 ] && [ $rrc = 0 ] || fail "$mode/$after: I/O failed across the recovery (write $wrc read $rrc): $(cat /tmp/dd.err)"
            cmp -s /tmp/pattern /tmp/back || fail "$mode/$after: data read back differs after the recovery"
            what="connection dropped, session recovered ($rec), data intact"
        else
            case $st in "failed: "*) ;; *) fail "$mode/$after: state '$st', expected 'failed: ...'" ;; esac
            [ $wrc != 0 ] || [ $rrc != 0 ] || fail "$mode/$after: all I/O succeeded with the target gone"
            # The session gives up replacement_timeout (3 s) after the connection was lost,
            # whatever the target does meanwhile (it refuses every login here).
            local lost="" gone="" took l
            while IFS= read -r l; do
                case $l in
                    *"channel 0: connection lost"*|*"channel 0: target requests logout"*)
                        lost=${lost:-$(klog_ms "$l")} ;;
                    *"channel 0: session lost, giving up"*) gone=${gone:-$(klog_ms "$l")} ;;
                esac
            done <<< "$klog"
            [ -n "$lost" ] && [ -n "$gone" ] || fail "$mode/$after: no loss or give-up line in the kernel log"
            took=$((gone - lost))
            [ $took -ge 2500 ] && [ $took -le 5000 ] \
                || fail "$mode/$after: gave up $took ms after the loss (replacement_timeout 3 s)"
            took=$((took / 1000)).$((took % 1000 / 100))
            what="connection dropped, session '$st' $took s after the loss (replacement_timeout 3 s), I/O failed (write $wrc read $rrc)"
        fi
        ;;
    esac
    within 60 ctl stop $ch/control || fail "$mode/$after: stop failed or hung (state '$(get $ch/state)')"
    st=$(get $ch/state)
    [ "$st" = stopped ] || fail "$mode/$after: state after stop: $st"
    rmdir $ch || fail "$mode/$after: rmdir failed"
    kill $tpid 2>/dev/null || true
    wait $tpid 2>/dev/null || true
    [ "$mode" != nop-flood ] || what="$what; $(grep -o 'nop-flood: [0-9]* of [0-9]* pings answered' "$log" | tail -1 || true)"
    dmesg > "$VM_ARTIFACTS/hostile/dmesg-$mode-$after.txt"
    ok "$mode ($after): $what; errors $errs; log: ${want:-nothing}; stop and rmdir work"
}

modes=${*:-"good oversize past-end bad-itt data-for-write dup-response bad-datasn
    r2t-past-end r2t-burst initiator-opcode garbage huge-sense nop-flood async-logout close-midway
    ping-data ping-digest reject reject-digest reject-always reject-data-out reject-data-out-field silent silent-tmf late-data after-abort login-oversize login-continue
    stop-recovering stop-eh stop-reset logout-slow added-drop added-mute"}
[ $part = bounds ] || for mode in $modes; do
    case $mode in stop-*|time2wait|logout-slow|added-*) ;; *) run_mode "$mode" good ;; esac
done
[ $part != faults ] || { unload_module; ok "rmmod core_iscsi after every mode ($((SECONDS - t0)) s)"; exit 0; }
# The same faults with a target that then stays away: the session fails, I/O fails, no hang.
# What follows the drop (recovery against a refusing target) does not depend on which protocol
# violation caused it, so a full run covers one mode per way a connection is dropped (a
# violation found in the receive path, an async logout request, the target closing, the error
# handler's reset, the send ring overflowing); modes named on the command line all get it.
refuse_modes=${*:-"oversize async-logout close-midway silent-tmf nop-flood time2wait"}
for mode in $refuse_modes; do
    case $mode in stop-*) continue ;; esac
    case $(expect "$mode") in *"|no"|*"|maybe") run_mode "$mode" refuse ;; esac
done

# stop_during MODE AFTER WHAT [TMF_TIMEOUT]: stop while the session is busy with a fault (a
# recovery whose logins hang; the SCSI error handler waiting for task management answers, or at
# its target reset, which then drops the connection): stop must return within 60 s (within 30 s
# when the error handler waits for an answer: the 10 s grace of the disks' last commands cuts a
# longer tmf_timeout short), and the I/O must end.
stop_during() {
    local mode=$1 after=$2 what=$3 tmf=${4:-2} log tpid d ddpid t
    log=/tmp/hostile-$mode-$after-stop.log
    target_start "$mode" "$after" "$log"
    channel_create 0 $IQN 127.0.0.1:$port replacement_timeout=30 login_timeout=10 tmf_timeout=$tmf
    start_channel 0
    d=$(channel_disks 0)
    echo 3 > /sys/block/$d/device/timeout
    timeout 120 dd if=/dev/$d of=/dev/null bs=64k skip=64 count=1 iflag=direct status=none 2>/dev/null &
    ddpid=$!
    case $what in
        recovering) wait_for '[ "$(get $ch/state)" = recovering ]' 20 || fail "$mode: state '$(get $ch/state)', expected recovering"
                    nap 1 ;;  # a login attempt is now hanging on the mute target
        eh)         wait_for "grep -q 'task management' $log" 20 || fail "$mode: no task management request"
                    ;;
        # The error handler at its last step: the target reset, which then drops the connection.
        reset)      wait_for "grep -q 'task management function 6' $log" 60 || fail "$mode: no target reset"
                    ;;
    esac
    t=$SECONDS
    within 60 ctl stop $ch/control         || fail "$mode/$after: stop during $what failed or hung (state '$(get $ch/state)')"
    [ "$(get $ch/state)" = stopped ] || fail "$mode: state after stop: $(get $ch/state)"
    t=$((SECONDS - t))
    [ "$what" != eh ] || [ $t -lt 30 ] \
        || fail "$mode/$after: stop during eh took $t s (tmf_timeout $tmf s; bound 30 s)"
    local rc=0; wait $ddpid || rc=$?
    [ $rc != 124 ] || fail "$mode/$after: I/O hung after stop"
    rmdir $ch || fail "$mode: rmdir failed"
    kill $tpid; wait $tpid 2>/dev/null || true
    dmesg > "$VM_ARTIFACTS/hostile/dmesg-$mode-$after-stop.txt"
    ok "$mode ($after): stop during $what returned in $t s (tmf_timeout $tmf s), the I/O ended (dd $rc)"
}
for mode in $modes; do
    case $mode in
        stop-recovering) stop_during oversize mute recovering ;;
        stop-eh)         stop_during silent-tmf good eh 60 ;;
        stop-reset)      stop_during silent-tmf good reset ;;
    esac
done
# start_written WHAT: starts channel 0 and writes 1 MiB of /tmp/pattern 2 MiB into its disk,
# whose name it leaves in the caller's `d`.
start_written() {
    start_channel 0
    d=$(channel_disks 0)
    [ -n "$d" ] || fail "$1: no disk after start"
    dd if=/tmp/pattern of=/dev/$d bs=1M seek=2 count=1 oflag=direct status=none \
        || fail "$1: the write failed"
}

# logout_slow: the session's logout (pause's, then stop's) answered 5 s late (LOGOUT_SLOW in the
# target) while the idle connection is pinged every second (nopout_interval 1). Each logout
# waits for its answer, within its 10 s bound (LOGOUT_TIMEOUT_MS), and nothing follows the
# Logout Request on its connection (RFC 7143 11.14), no keepalive ping included: the ticker
# runs during a pause's logout (the link is still up), so a ping would be due four times over.
# The paused channel resumes with its data.
logout_slow() {
    local log tpid d t took n took_pause took_stop
    log=/tmp/hostile-logout-slow.log
    target_start logout-slow good "$log"
    channel_create 0 $IQN 127.0.0.1:$port nopout_interval=1 nopout_timeout=30
    start_written logout-slow
    # The keepalive runs: the idle connection is pinged every second.
    n=$(channel_stat 0 conn0.nop_pings)
    wait_for "[ \$(channel_stat 0 conn0.nop_pings) -ge $((n + 2)) ]" 10 \
        || fail "logout-slow: fewer than two pings in 10 s with nopout_interval 1"
    local what want i=0
    for what in pause stop; do
        i=$((i + 1))
        case $what in pause) want=paused ;; stop) want=stopped ;; esac
        t=${EPOCHREALTIME/./}
        within 60 ctl $what $ch/control \
            || fail "logout-slow: $what failed or hung (state '$(get $ch/state)')"
        took=$(( (${EPOCHREALTIME/./} - t) / 1000 ))
        [ "$(get $ch/state)" = $want ] || fail "logout-slow: state '$(get $ch/state)' after $what"
        [ "$(grep -c "logout reason 0 answered after" "$log")" = $i ] \
            || { cat "$log" >&2; fail "logout-slow: $what: not one more session logout answered"; }
        [ $took -ge 4500 ] && [ $took -le 10500 ] \
            || fail "logout-slow: $what took $took ms; the logout's answer came after 5 s (bound 10 s)"
        # The target reads the connection until we close it (3 s at most), logging each PDU.
        wait_for "[ \$(grep -c 'closed (logged out)' $log) -ge $i ]" 5 \
            || fail "logout-slow: the target's connection did not end after $what's logout"
        ! grep "after the logout" "$log" \
            || fail "logout-slow: a PDU followed the session's Logout Request at $what"
        ! grep "still open 3 s after the logout" "$log" \
            || fail "logout-slow: the connection was left open after $what's logout"
        ! dmesg | grep -q "no logout response\|logout rejected" \
            || fail "logout-slow: $what gave up on the logout's answer: $(dmesg | grep core-iscsi | tail -3)"
        eval "took_$what=$took"
        if [ $what = pause ]; then
            # Resume: the held channel logs in again; the data is there.
            start_channel 0
            d=$(channel_disks 0)
            dd if=/dev/$d of=/tmp/back bs=1M skip=2 count=1 iflag=direct status=none \
                || fail "logout-slow: the read after resume failed"
            cmp -s /tmp/pattern /tmp/back || fail "logout-slow: data read back after resume differs"
        fi
    done
    rmdir $ch || fail "logout-slow: rmdir failed"
    kill $tpid 2>/dev/null || true
    wait $tpid 2>/dev/null || true
    ok "logout-slow: pause waited $took_pause ms and stop $took_stop ms for the session logout's answer (5 s late; bound 10 s), with pings due every second and none after the Logout Request; resume read the data back; rmdir works"
}
# stop_running MODE: the channel still running, then stopped and removed; the caller's target
# (`tpid`) ended and its `log` kept.
stop_running() {
    [ "$(get $ch/state)" = running ] || fail "$1: state '$(get $ch/state)'"
    within 60 ctl stop $ch/control || fail "$1: stop failed or hung"
    rmdir $ch || fail "$1: rmdir failed"
    kill $tpid 2>/dev/null || true
    wait $tpid 2>/dev/null || true
}

# added_drop: a session of two connections through one portal, whose target closes the added
# connection 1 s after each login, for 40 s while a reader verifies data every second. At
# ErrorRecoveryLevel 0 each such loss is a recovery of the whole session; from the second in a
# row within 10 s of their login the portal's added connections are held back
# (kernel/session/hold.rs: 10 s, 20 s, 40 s...), so the 40 s see 3-4 recoveries (drops at
# about 1, 3, 15 and 37 s; the code before the holds: 21 in 60 s), the held connection shows in
# `connections` as `state missing held S`, and every read returns the data written.
added_drop() {
    local log tpid d t_end rec reads=0 held_line=""
    log=/tmp/hostile-added-drop.log
    target_start added-drop good "$log"
    channel_create 0 $IQN "127.0.0.1:$port*2" replacement_timeout=10
    start_written added-drop
    t_end=$((SECONDS + 40))
    while [ $SECONDS -lt $t_end ]; do
        within 30 dd if=/dev/$d of=/tmp/back bs=1M skip=2 count=1 iflag=direct status=none \
            || fail "added-drop: a read failed or hung (state '$(get $ch/state)')"
        cmp -s /tmp/pattern /tmp/back || fail "added-drop: data read back differs"
        reads=$((reads + 1))
        [ -n "$held_line" ] || held_line=$(grep " state missing held [0-9]*$" $ch/connections || true)
        nap 1
    done
    rec=$(channel_stat 0 recoveries)
    local klog drops
    klog=$(dmesg | grep "core-iscsi: channel 0: " || true)
    drops=$(grep -c "added connection dropped" "$log" || true)
    [ "$rec" -ge 3 ] && [ "$rec" -le 4 ] \
        || { echo "$klog" >&2; fail "added-drop: $rec recoveries in 40 s ($drops drops); expected 3-4 with the holds"; }
    grep -q "was lost, last heard from [0-9]* ms after its login: no connection is added through that portal for 10 s" <<< "$klog" \
        || { echo "$klog" >&2; fail "added-drop: no 10 s hold in the kernel log"; }
    grep -q "was lost, last heard from [0-9]* ms after its login: no connection is added through that portal for 20 s" <<< "$klog" \
        || { echo "$klog" >&2; fail "added-drop: no 20 s hold after the third drop"; }
    [ -n "$held_line" ] || fail "added-drop: no 'state missing held S' line in connections"
    stop_running added-drop
    ok "added-drop: the added connection dropped 1 s after each login ($drops times): $rec recoveries in 40 s (holds of 10 s, then 20 s), '$held_line' while held, $reads reads verified; stop and rmdir work"
}
# added_mute: as added_drop, but the target's added connection goes silent 1 s after its login
# instead of closing. Found dead only by its ping timeout (nopout_interval 5 + nopout_timeout
# 10, the defaults), each is lost over 10 s after its login, yet counts as short-lived: the
# holds measure to the last bytes heard from it, and the second such loss in a row holds the
# portal (the code that measured to the loss never held it).
added_mute() {
    local log tpid d t_begin took hold_line heard lived n=0 conn muted closed
    log=/tmp/hostile-added-mute.log
    target_start added-mute good "$log"
    channel_create 0 $IQN "127.0.0.1:$port*2" replacement_timeout=10
    start_written added-mute
    t_begin=$SECONDS
    local hold_re="was lost, last heard from [0-9]* ms after its login: no connection is added through that portal for 10 s"
    until hold_line=$(dmesg | grep -m1 "$hold_re"); do
        [ $((SECONDS - t_begin)) -lt 75 ]             || { dmesg | grep core-iscsi >&2; cat "$log" >&2; fail "added-mute: no 10 s hold within 75 s"; }
        within 30 dd if=/dev/$d of=/tmp/back bs=1M skip=2 count=1 iflag=direct status=none             || fail "added-mute: a read failed or hung (state '$(get $ch/state)')"
        cmp -s /tmp/pattern /tmp/back || fail "added-mute: data read back differs"
        nap 1
    done
    took=$((SECONDS - t_begin))
    heard=$(sed 's/.*last heard from \([0-9]*\) ms.*/\1/' <<< "$hold_line")
    [ "$heard" -lt 5000 ] || fail "added-mute: last heard from $heard ms after the login, expected about 1000"
    # By the target's clock: each muted connection was closed by the initiator at its ping
    # timeout, 15 s after it was last heard from: over 12 s after it went silent, so over 10 s
    # after its login, where a hold measured to the loss would not count it. The target logs
    # the second close once its thread has read the end of the stream, maybe after the hold.
    muted_closed() {
        local c k=0
        for c in $(sed -n 's/^[0-9.]* conn \([0-9]*\): added connection muted$/\1/p' "$log"); do
            ! grep -q "^[0-9.]* conn $c: closed " "$log" || k=$((k + 1))
        done
        [ $k -ge 2 ]
    }
    wait_for muted_closed 10 || { cat "$log" >&2; fail "added-mute: the target saw fewer than 2 muted connections closed"; }
    for conn in $(sed -n 's/^[0-9.]* conn \([0-9]*\): added connection muted$/\1/p' "$log"); do
        muted=$(sed -n "s/^\([0-9.]*\) conn $conn: added connection muted\$/\1/p" "$log")
        closed=$(sed -n "s/^\([0-9.]*\) conn $conn: closed .*/\1/p" "$log")
        [ -n "$closed" ] || continue  # the one still open at the hold, if any
        lived=$(awk -v a="$muted" -v b="$closed" 'BEGIN { printf "%.1f", b - a }')
        awk -v t="$lived" 'BEGIN { exit !(t >= 12) }' \
            || fail "added-mute: conn $conn closed $lived s after it went silent (the ping timeout is 15 s)"
        n=$((n + 1))
    done
    [ $n -ge 2 ] || { cat "$log" >&2; fail "added-mute: $n muted connections closed before the hold, expected 2"; }
    stop_running added-mute
    ok "added-mute: $n added connections went silent 1 s after login, each found dead by its ping timeout (over 12 s later); held for 10 s after $took s, last heard $heard ms after login; stop and rmdir work"
}
for mode in $modes; do
    case $mode in
        logout-slow) logout_slow ;;
        added-drop)  added_drop ;;
        added-mute)  added_mute ;;
    esac
done
unload_module
ok "rmmod core_iscsi after every mode ($((SECONDS - t0)) s)"
