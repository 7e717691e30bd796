#!/bin/bash
# No target can wedge the module (issue 13): against tests/e2e/hostile-target.py misbehaving at
# every phase (silent or closing during the LUN scan, an async event asking for a rescan then
# silence, a command window that never opens or closes mid-I/O, a slow drain, a drip-fed login,
# an R2T during a LUN reset, a pause while a slow burst keeps the sender busy, a late task
# management answer, commands a LUN reset covers while queued behind a slow burst (fillers),
# one bad channel beside a good one, a
# killed writer of `start`), with login_timeout, replacement_timeout, nopout_interval and
# nopout_timeout at 5 s and tmf_timeout at 4 s (filler-reset: 10 s), every bound is asserted and its measured time printed: `start` returns
# within 60 s, or `stop` written while it still runs interrupts it (within 90 s; start then fails);
# each read of `state` returns within 10 s; `stop` and rmdir within 90 s; rmmod within 60 s; the
# mode-specific bounds are named in each mode's function. The debug kernel (KASAN, lockdep, hung
# tasks) catches a use after free, a splat or a blocked task: the VM harness fails the run.
#   tests/vm/run --debug tests/e2e/hostile-wedge.sh [MODE...] runs only those modes. The target's
#   log and the kernel log of each mode are left in $VM_ARTIFACTS/hostile-wedge/.
# vm-kernel: debug
# vm-args: --timeout 2400
# vm-seconds: 460
# vm-cpu: light
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2026-11.org.core-iscsi:hostile
TARGET=$REPO/tests/e2e/hostile-target.py
ART=$VM_ARTIFACTS/hostile-wedge
# tmf_timeout: the error handler waits 4 s for each task management answer (late-tmf times it;
# hostile-target.py answers its late ABORT TASK after 6 s, during the LUN reset's wait);
# filler-reset sets 10 s, its timing needs the default.
LOGIN_TIMEOUT=5 NOPOUT_INTERVAL=5 NOPOUT_TIMEOUT=5 TMF_TIMEOUT=4
SETTINGS=(login_timeout=$LOGIN_TIMEOUT replacement_timeout=5 nopout_interval=$NOPOUT_INTERVAL
          nopout_timeout=$NOPOUT_TIMEOUT tmf_timeout=$TMF_TIMEOUT)
# The bounds (seconds).
START_BOUND=60 STOP_BOUND=90 RMDIR_BOUND=90 STATE_BOUND=10 RMMOD_BOUND=60 KILL_BOUND=10
STOP_OTHER_BOUND=20   # stop of a healthy channel while another one is wedged
# A stalled send, or a command window kept closed with commands waiting, fails the connection
# after max(nopout_interval + nopout_timeout, 10) s.
STALL_BOUND=$(( NOPOUT_INTERVAL + NOPOUT_TIMEOUT > 10 ? NOPOUT_INTERVAL + NOPOUT_TIMEOUT : 10 ))
port=3400
t_all=$SECONDS
MODE=setup LOG=/dev/null LOGS=()
mkdir -p "$ART"

# ---- time and background commands --------------------------------------------------------

# The time in ms is $((${EPOCHREALTIME/./} / 1000)), spelt out where it is needed: a function
# would run in a subshell, and a fork costs up to 0.3 s of a CPU in the debug VM (lib.bash, nap).
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( ($1 % 1000) / 100 )); }  # ms -> "S.d"

declare -A BG_PID BG_T0
# bg NAME CMD...: CMD in the background (a shell function runs in its own process: that process
# is the writer, so it can be killed alone).
bg() {
    local name=$1; shift
    BG_T0[$name]=$((${EPOCHREALTIME/./} / 1000))
    "$@" &
    BG_PID[$name]=$!
}
running() { alive "${BG_PID[$1]}"; }
# bg_wait NAME LIMIT [FROM]: waits until NAME ended, at most LIMIT s after FROM (ms since the
# epoch, $((${EPOCHREALTIME/./} / 1000)); by default NAME's start); sets RC and MS (its run
# time, ms). Returns 1 if it still runs (left behind: it may be blocked for good).
bg_wait() {
    local name=$1 end_ms=$(( ${3:-${BG_T0[$1]}} + $2 * 1000 ))
    while running "$name"; do
        if [ $(( ${EPOCHREALTIME/./} / 1000 )) -gt $end_ms ]; then
            MS=$(( ${EPOCHREALTIME/./} / 1000 - BG_T0[$name] ))
            return 1
        fi
        nap 0.1
    done
    MS=$(( ${EPOCHREALTIME/./} / 1000 - BG_T0[$name] ))
    RC=0; wait "${BG_PID[$name]}" || RC=$?
    return 0
}
# late NAME: after a missed bound, how long NAME really takes (waiting up to 60 s more), for
# the failure message.
late() {
    local end=$(( ${EPOCHREALTIME/./} / 1000 + 60000 ))
    while running "$1" && [ $((${EPOCHREALTIME/./} / 1000)) -lt $end ]; do nap 0.2; done
    if running "$1"; then
        echo "still blocked $(secs $(( ${EPOCHREALTIME/./} / 1000 - BG_T0[$1] ))) s after it began"
    else
        echo "it ended $(secs $(( ${EPOCHREALTIME/./} / 1000 - BG_T0[$1] ))) s after it began"
    fi
}
# timed LIMIT WHAT CMD...: CMD must end within LIMIT s; sets RC and T (seconds, one decimal).
timed() {
    local lim=$1 what=$2; shift 2
    bg timed "$@"
    bg_wait timed "$lim" || die "bound missed: $what did not return within $lim s ($(late timed))"
    T=$(secs $MS)
}

ctl_write() { { echo "$1" > "$2"; } 2> "$3"; }
# state_to FILE OUT: FILE's first line into OUT, read by the shell (for `timed`, so that a read
# of `state` that blocks stays bounded; cat would add an exec: 0.35 s of CPU in the debug VM).
state_to() { local v=""; read -r v < "$1" || true; printf '%s\n' "$v" > "$2"; }

# read_state ID: `cat state`, which must return within STATE_BOUND; sets ST; keeps the longest.
STATE_MAX=0 STATE_N=0
read_state() {
    timed $STATE_BOUND "reading channel $1's state" state_to "$ISCSI_ROOT/$1/state" /tmp/wedge-state
    ST=$(get /tmp/wedge-state)
    STATE_N=$((STATE_N + 1))
    [ $MS -le $STATE_MAX ] || STATE_MAX=$MS
}
# sample_states ID N: N reads of state, a second apart; sets STATES (what they said).
sample_states() {
    local i last=""
    STATES=""
    for ((i = 0; i < $2; i++)); do
        read_state "$1"
        # What they said, each change once ("running/recovering").
        [ $i != 0 ] && [ "$ST" = "$last" ] || STATES+=${STATES:+/}$ST
        last=$ST
        nap 1
    done
}
states_ok() { echo "state read $STATE_N times, each within $(secs $STATE_MAX) s"; }

# ---- logs and failures -----------------------------------------------------------------

save_artifacts() {
    local l
    for l in "${LOGS[@]}"; do [ -f "$l" ] && cp "$l" "$ART/" || true; done
    dmesg > "$ART/dmesg-$MODE.txt" 2>/dev/null || true
}
die() {
    local l
    for l in "${LOGS[@]}"; do
        echo "---- $l (last lines) ----" >&2; tail -30 "$l" >&2 || true
    done
    echo "---- kernel log (last lines) ----" >&2
    dmesg | grep -a -v '^\s*$' | tail -40 >&2 || true
    save_artifacts
    DIED=1
    fail "$MODE: $*"
}
# tlog_wait PATTERN SECONDS: until the target's log has a line matching PATTERN (grep -E).
tlog_wait() { wait_for "grep -qE \"$1\" \"$LOG\"" "$2"; }
klog() { dmesg | grep -a "core-iscsi: channel $1: " || true; }
# klog_wait ID TEXT SECONDS: until the kernel log has "core-iscsi: channel ID: TEXT".
klog_wait() { wait_for "dmesg | grep -aqF \"core-iscsi: channel $1: $2\"" "$3"; }
# kmark TEXT: a line in the kernel log, stamped by the kernel's clock (no process started).
kmark() { echo "core-iscsi-test: $1" > /dev/kmsg; }
# klog_ms_since MARK TEXT: milliseconds by the kernel log's clock from the line `kmark MARK`
# wrote to the first later line with TEXT; empty if either is missing. A bound measured so
# leaves out how late a poll of the log sees the line (a forked dmesg every second or so).
klog_ms_since() {
    dmesg | awk -v m="core-iscsi-test: $1" -v t="$2" '
        { ts = substr($0, 2, index($0, "]") - 2) + 0 }
        !s && index($0, m) { s = ts; next }
        s && index($0, t) { printf "%d", (ts - s) * 1000; exit }'
}

# ---- per mode ----------------------------------------------------------------------------

# begin MODE TARGET-MODE: the target on a new port, a fresh kernel log, channel 0 for it.
begin() {
    MODE=$1 STATE_MAX=0 STATE_N=0
    port=$((port + 1))
    LOG=/tmp/wedge-$MODE-target.log
    LOGS=("$LOG")
    rm -f "$LOG"
    python3 "$TARGET" $port "$2" --log "$LOG" &
    TPID=$!
    wait_for "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null" 20 || die "the target did not start"
    dmesg -C
    channel_create 0 $IQN 127.0.0.1:$port "${SETTINGS[@]}"
}
# good_target: a second, well-behaved target (for a second channel); sets GPORT, GPID.
good_target() {
    port=$((port + 1)) GPORT=$port
    local log=/tmp/wedge-$MODE-good-target.log
    rm -f "$log"; LOGS+=("$log")
    python3 "$TARGET" $GPORT good --log "$log" &
    GPID=$!
    wait_for "(exec 3<>/dev/tcp/127.0.0.1/$GPORT) 2>/dev/null" 20 || die "the good target did not start"
}
end_mode() {
    kill $TPID ${GPID:-} 2>/dev/null || true
    wait $TPID ${GPID:-} 2>/dev/null || true
    GPID=""
    save_artifacts
}

# start_ok ID: `start` returns within START_BOUND and succeeds; sets DISK (the channel's disk).
start_ok() {
    timed $START_BOUND "channel $1: start" ctl_write start "$ISCSI_ROOT/$1/control" /tmp/wedge-start.err
    [ $RC = 0 ] || die "channel $1: start failed (rc $RC: $(cat /tmp/wedge-start.err)) against a target that behaves during login and scan"
    START_T=$T
    read_state "$1"
    [ "$ST" = running ] || die "channel $1: state '$ST' after start"
    DISK=$(channel_disks "$1")
    [ -n "$DISK" ] || die "channel $1: no disk after start"
}
# stop_rmdir ID: stop and rmdir each within their bound; state reads "stopped" in between.
stop_rmdir() {
    timed $STOP_BOUND "channel $1: stop" ctl_write stop "$ISCSI_ROOT/$1/control" /tmp/wedge-stop.err
    [ $RC = 0 ] || die "channel $1: stop failed (rc $RC: $(cat /tmp/wedge-stop.err))"
    STOP_T=$T
    read_state "$1"
    [ "$ST" = stopped ] || die "channel $1: state '$ST' after stop"
    timed $RMDIR_BOUND "channel $1: rmdir" rmdir "$ISCSI_ROOT/$1"
    [ $RC = 0 ] || die "channel $1: rmdir failed"
    RMDIR_T=$T
}
# interrupt_start ID: `start` (background job "start") still runs: `stop` returns within
# STOP_BOUND, then the start writer exits, non-zero, within 10 s; state "stopped"; rmdir within
# RMDIR_BOUND. Sets WHAT.
interrupt_start() {
    running start || die "start ended by itself before stop was written"
    local before; before=$(secs $(( ${EPOCHREALTIME/./} / 1000 - BG_T0[start] )))
    timed $STOP_BOUND "channel $1: stop written while start runs" ctl_write stop "$ISCSI_ROOT/$1/control" /tmp/wedge-stop.err
    [ $RC = 0 ] || die "channel $1: stop failed (rc $RC: $(cat /tmp/wedge-stop.err))"
    STOP_T=$T
    bg_wait start 10 $((${EPOCHREALTIME/./} / 1000)) \
        || die "bound missed: the start writer still runs 10 s after stop returned ($(late start))"
    [ $RC != 0 ] || die "start succeeded although stop interrupted it"
    local start_rc=$RC start_t; start_t=$(secs $MS)
    read_state "$1"
    [ "$ST" = stopped ] || die "channel $1: state '$ST' after stop"
    timed $RMDIR_BOUND "channel $1: rmdir" rmdir "$ISCSI_ROOT/$1"
    [ $RC = 0 ] || die "channel $1: rmdir failed"
    WHAT="start still running after $before s; stop returned in $STOP_T s; start then exited rc $start_rc ($(sed 's/.*: //' /tmp/wedge-start.err)), $start_t s after it was written; state 'stopped'; rmdir in $T s"
}
pattern() { head -c $((1 << 20)) /dev/urandom > /tmp/wedge-pattern; }
# dd_trigger_write DISK: the 1 MiB direct write into the target's trigger window (4 MiB).
dd_trigger_write() {
    dd if=/tmp/wedge-pattern of="/dev/$1" bs=1M seek=4 count=1 oflag=direct status=none 2>/tmp/wedge-dd.err
}
# read_back DISK: the trigger window reads back as the pattern (within 60 s).
read_back() {
    timed 60 "read back of /dev/$1" dd if="/dev/$1" of=/tmp/wedge-back bs=1M skip=4 count=1 iflag=direct status=none
    [ $RC = 0 ] || die "read back of /dev/$1 failed (rc $RC)"
    cmp -s /tmp/wedge-pattern /tmp/wedge-back || die "/dev/$1: the data read back differs"
}

# scan-silent, scan-close, window-login: the target stops cooperating while `start` logs in or
# scans; `start` cannot finish, so `stop` interrupts it. window-login: the connection fails with
# "target kept the command window closed" within STALL_BOUND (+ 5 s slack) of the login.
mode_scan() {
    local tmode=$1 extra=""
    begin "$tmode" "$tmode"
    bg start ctl_write start "$ISCSI_ROOT/0/control" /tmp/wedge-start.err
    tlog_wait "TRIGGER $tmode" 60 || die "the target never misbehaved (no TRIGGER line)"
    local t_trig; t_trig=$((${EPOCHREALTIME/./} / 1000))
    if [ "$tmode" = window-login ]; then
        klog_wait 0 "connection lost: target kept the command window closed" $((STALL_BOUND + 5)) \
            || die "no 'connection lost: target kept the command window closed' within $((STALL_BOUND + 5)) s of the login"
        extra="; 'connection lost: target kept the command window closed' $(secs $(( ${EPOCHREALTIME/./} / 1000 - t_trig ))) s after the login (bound $STALL_BOUND s, asserted with 5 s slack)"
    else
        nap 3
    fi
    sample_states 0 3
    local during=$STATES
    if running start; then
        interrupt_start 0
    else
        # It may end by itself (e.g. the scan's commands failing): then within START_BOUND.
        bg_wait start $START_BOUND || die "start did not return within $START_BOUND s"
        local start_rc=$RC start_t; start_t=$(secs $MS)
        read_state 0
        WHAT="start ended by itself in $start_t s (bound $START_BOUND s; rc $start_rc, state '$ST')"
        stop_rmdir 0
        WHAT="$WHAT; stop in $STOP_T s; rmdir in $RMDIR_T s"
    fi
    end_mode
    ok "$tmode: $WHAT; state during start '$during'; $(states_ok)$extra"
}

# scan-async: start works; a read of the trigger window is answered, then the target sends an
# Async Message (event 0, 3Fh/0Eh) and answers nothing more: the module's rescan is stuck in
# commands nobody answers. stop must still return within STOP_BOUND.
mode_scan_async() {
    begin scan-async scan-async
    start_ok 0
    timed 60 "the read of the trigger window" dd if="/dev/$DISK" of=/dev/null bs=4k skip=1024 count=1 iflag=direct status=none
    [ $RC = 0 ] || die "the read of the trigger window failed (rc $RC): the target answers it"
    local t_dd=$T
    tlog_wait "scan-async: conn [0-9]+: Async Message event 0" 10 || die "the target sent no async event"
    local t0; t0=$((${EPOCHREALTIME/./} / 1000))
    tlog_wait "ignored \(silent\)" 60 || die "no command reached the target after the async event (no rescan)"
    local t_rescan; t_rescan=$(secs $(( ${EPOCHREALTIME/./} / 1000 - t0 )))
    nap 2
    sample_states 0 3
    local during=$STATES seen
    seen=$(sed -n 's/.*: \(opcode 0x[0-9a-f]*\) itt .* ignored (silent)/\1/p' "$LOG" | sort | uniq -c | paste -sd, | tr -s ' ')
    stop_rmdir 0
    end_mode
    ok "scan-async: start in $START_T s; read of the trigger window in $t_dd s; a rescan's command reached the target $t_rescan s after the event (unanswered:$seen); state '$during'; stop during the stuck rescan in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# window-io: the trigger write is answered, then the window stays closed (also after a new
# login): a second direct write waits; the connection fails with "target kept the command
# window closed" within STALL_BOUND (+ 5 s slack) of it by the kernel log's clock; stop ends it
# within STOP_BOUND.
mode_window_io() {
    begin window-io window-io
    start_ok 0
    pattern
    timed 60 "the trigger write" dd_trigger_write "$DISK"
    [ $RC = 0 ] || die "the trigger write failed (rc $RC: $(cat /tmp/wedge-dd.err)): the target answers it"
    local t_w=$T
    tlog_wait "window-io: the command is answered" 5 || die "the target never closed the window"
    kmark "window-io: the waiting write"
    bg io dd_trigger_write "$DISK"
    local lost="core-iscsi: channel 0: connection lost: target kept the command window closed"
    klog_wait 0 "connection lost: target kept the command window closed" $((STALL_BOUND + 15)) \
        || die "no '$lost' within $((STALL_BOUND + 15)) s of the waiting write"
    local ms; ms=$(klog_ms_since "window-io: the waiting write" "$lost")
    [ -n "$ms" ] && [ "$ms" -le $(( (STALL_BOUND + 5) * 1000 )) ] \
        || die "bound missed: '$lost' came ${ms:-?} ms after the waiting write (kernel log's clock), bound $STALL_BOUND s + 5 s"
    local t_lost; t_lost=$(secs "$ms")
    sample_states 0 3
    local during=$STATES io_state
    if running io; then
        stop_rmdir 0
        bg_wait io 10 $((${EPOCHREALTIME/./} / 1000)) \
            || die "bound missed: the waiting write did not end within 10 s of stop ($(late io))"
        io_state="was still waiting at stop, then ended (rc $RC, $(secs $MS) s in all)"
    else
        bg_wait io 1
        io_state="ended before stop (rc $RC, $(secs $MS) s)"
        stop_rmdir 0
    fi
    local grace="no"
    klog 0 | grep -q "stop: the disks' last commands did not end" && grace="yes"
    end_mode
    ok "window-io: start in $START_T s; trigger write answered in $t_w s; the next write waited and the connection was lost (window closed) $t_lost s after it by the kernel log's clock (bound $STALL_BOUND s, asserted with 5 s slack); the write $io_state; stop in $STOP_T s (stop-grace log line: $grace); rmdir in $RMDIR_T s; state '$during'; $(states_ok)"
}

# slow-drain: the target reads one MSS every 3 s once the write's R2T is out: the connection is
# lost ("connection lost: timeout") within nopout_interval + nopout_timeout + 10 s of the
# trigger; the retried write stalls again, and stop during that stall returns within STOP_BOUND.
mode_slow_drain() {
    begin slow-drain slow-drain
    start_ok 0
    pattern
    bg io dd_trigger_write "$DISK"
    tlog_wait "TRIGGER slow-drain on conn" 60 || die "the write never reached the target"
    local t_trig bound=$((NOPOUT_INTERVAL + NOPOUT_TIMEOUT + 10)) line
    t_trig=$((${EPOCHREALTIME/./} / 1000))
    klog_wait 0 "connection lost" $bound || die "no 'connection lost' within $bound s of the trigger"
    local t_lost; t_lost=$(secs $(( ${EPOCHREALTIME/./} / 1000 - t_trig )))
    line=$(klog 0 | grep -m1 "connection lost" | sed 's/^\[[^]]*\] //' || true)
    grep -q "connection lost: timeout" <<< "$line" || die "the connection was lost for another reason: $line"
    # The write is retried on the next connection and stalls again (or, if it failed, a new one).
    wait_for "[ \$(grep -c 'TRIGGER slow-drain' '$LOG') -ge 2 ] || ! running io" 60 \
        || die "the write neither ended nor stalled again within 60 s of the connection loss"
    if [ "$(grep -c 'TRIGGER slow-drain' "$LOG")" -lt 2 ]; then
        bg_wait io 1 || true
        bg io dd_trigger_write "$DISK"
        wait_for "[ \$(grep -c 'TRIGGER slow-drain' '$LOG') -ge 2 ]" 60 || die "a new write did not reach the target"
    fi
    nap 1
    running io || die "the write ended although the target stalls it"
    sample_states 0 3
    local during=$STATES
    stop_rmdir 0
    bg_wait io 10 $((${EPOCHREALTIME/./} / 1000)) \
        || die "bound missed: the stalled write did not end within 10 s of stop ($(late io))"
    local io_rc=$RC
    end_mode
    ok "slow-drain: start in $START_T s; '$line' $t_lost s after the trigger (bound $bound s); the retry stalled again; stop during the stall in $STOP_T s; the write ended (rc $io_rc); rmdir in $RMDIR_T s; state '$during'; $(states_ok)"
}

# login-drip: the Login Response comes one byte per 0.5 s: start fails within login_timeout + 3 s
# with state "failed: timeout".
mode_login_drip() {
    begin login-drip login-drip
    local bound=$((LOGIN_TIMEOUT + 3))
    bg start ctl_write start "$ISCSI_ROOT/0/control" /tmp/wedge-start.err
    bg_wait start $bound || die "bound missed: start still runs $bound s after it was written (login_timeout $LOGIN_TIMEOUT; $(late start))"
    local t_start; t_start=$(secs $MS)
    [ $RC != 0 ] || die "start succeeded against a drip-fed login"
    grep -q "TRIGGER login-drip" "$LOG" || die "the target never dripped"
    read_state 0
    [ "$ST" = "failed: timeout" ] || die "state '$ST', expected 'failed: timeout'"
    local err; err=$(sed 's/.*: //' /tmp/wedge-start.err)
    stop_rmdir 0
    end_mode
    ok "login-drip: start failed in $t_start s (bound $bound s; $err), state 'failed: timeout'; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# r2t-reset: the write is answered by nothing until the LUN reset; then an R2T for it arrives
# and its Data-Out burst is stalled 2 s while the reset is answered. The write ends (90 s) and,
# if it succeeded, reads back intact; KASAN sees no use after free.
mode_r2t_reset() {
    begin r2t-reset r2t-reset
    start_ok 0
    echo 3 > "/sys/block/$DISK/device/timeout"
    pattern
    bg io dd_trigger_write "$DISK"
    tlog_wait "TRIGGER r2t-reset" 60 || die "the write never reached the target"
    tlog_wait "r2t-reset: LUN reset itt 0x[0-9a-f]+ answered" 60 || die "no LUN reset reached the target within 60 s"
    bg_wait io 90 || die "bound missed: the write did not end within 90 s ($(late io))"
    local io_rc=$RC io_t; io_t=$(secs $MS)
    [ $io_rc = 0 ] && read_back "$DISK"
    local noted="no" burst="no Data-Out for it reached the target"
    klog 0 | grep -q "reset: a command still being sent after" && noted="yes"
    # Whether the burst was in progress across the answer: its Data-Out, after the answer.
    local witt ta td
    witt=$(sed -n 's/.*TRIGGER r2t-reset .* itt \(0x[0-9a-f]*\)$/\1/p' "$LOG")
    ta=$(sed -n 's/^\([0-9.]*\) r2t-reset: LUN reset itt .* answered.*/\1/p' "$LOG" | head -1)
    td=$(sed -n "s/^\([0-9.]*\) conn [0-9]*: Data-Out for unknown itt $witt\$/\1/p" "$LOG" | tail -1)
    [ -z "$td" ] || burst="its Data-Out burst ended $(awk "BEGIN{printf \"%.1f\", $td-$ta}") s after the reset's answer"
    sample_states 0 2
    local after=$STATES
    stop_rmdir 0
    end_mode
    ok "r2t-reset: the write ended in $io_t s (rc $io_rc$([ $io_rc = 0 ] && echo ', data read back intact')); R2T sent during the LUN reset, $burst; 'reset: a command still being sent' logged: $noted; state after '$after'; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# trickle_reads DISK: 64 KiB reads of the trigger window until the target misbehaves on one
# (at most 40), from each CPU in turn: a lone command goes out on its hardware queue's own
# connection, and the two CPUs' queues start at different connections. The last read's data
# is left in /tmp/wedge-back.
trickle_reads() {
    local i
    for i in $(seq 1 40); do
        taskset -c $((i % $(nproc))) \
            dd if="/dev/$1" of=/tmp/wedge-back bs=64k skip=64 count=1 iflag=direct status=none || return
        grep -q "TRIGGER trickle-reset" "$LOG" && return
    done
}
# trickle-reset: two connections (the target grants MaxConnections=2). A read that comes on the
# added one gets a Data-In header and then its segment one byte every 0.5 s, never the last:
# that connection answers nothing more, and the bytes keep its ping timer quiet. The error
# handler's ABORT TASK goes there and is not answered; its LUN reset goes on the leading
# connection and is answered at once. Before answering the midlayer, the module must take the
# command back from the placement in progress on the other connection (its log says so; KASAN:
# no write into pages the midlayer freed). The trickled PDU's own bound (the stall bound, 20 s
# here: above the 3 s device timeout and the abort's 4 s wait, so the reset comes first) then
# drops the connection and the session recovers. The read ends (with an error if the midlayer's
# retries ran out first), and a read after the recovery returns the disk's bytes.
mode_trickle_reset() {
    begin trickle-reset trickle-reset
    local settings=(nopout_interval=10 nopout_timeout=10) kv stall=20
    for kv in "${settings[@]}"; do echo "${kv#*=}" > "$ISCSI_ROOT/0/${kv%%=*}"; done
    echo "127.0.0.1:$port*2" > "$ISCSI_ROOT/0/portals"
    start_ok 0
    local conns; conns=$(channel_stat 0 connections)
    [ "$conns" = 2 ] || die "$conns connections, expected 2 (the target grants 2)"
    echo 3 > "/sys/block/$DISK/device/timeout"
    # Every connection serves every hardware queue, a lone command its queue's own: reads from
    # each CPU in turn until one goes on the added connection, which the target misbehaves on
    # (the others are answered).
    bg io trickle_reads "$DISK"
    tlog_wait "TRIGGER trickle-reset" 60 || die "the read never reached the target on the added connection"
    local t_trig; t_trig=$((${EPOCHREALTIME/./} / 1000))
    tlog_wait "task management function 5 itt" 60 || die "no LUN reset reached the target"
    klog_wait 0 "reset: connection 1 was receiving data for a command it covered" 30 \
        || die "the LUN reset did not take the command back from the placement in progress: $(klog 0 | tail -5)"
    klog_wait 0 "connection 1: a PDU from the target not received whole in time" $((stall + 15)) \
        || die "the trickled PDU did not lose its connection within the stall bound ($stall s): $(klog 0 | tail -5)"
    local t_lost=$(( (${EPOCHREALTIME/./} / 1000 - t_trig) / 1000 ))
    [ $t_lost -le $((stall + 10)) ] || die "the trickled PDU lost its connection $t_lost s after the trigger (bound $stall s)"
    bg_wait io 120 || die "bound missed: the read did not end within 120 s ($(late io))"
    local io_rc=$RC io_t; io_t=$(secs $MS)
    if [ $io_rc = 0 ]; then
        cmp -s /tmp/wedge-back <(head -c 65536 /dev/zero) \
            || die "the read returned other bytes than the disk's zeros (the trickled segment's?)"
    fi
    wait_for "grep -qx running $ISCSI_ROOT/0/state" 30 || die "state '$(cat $ISCSI_ROOT/0/state)' 30 s after the read ended"
    rm -f /tmp/wedge-back
    timed 60 "a read after the recovery" dd if="/dev/$DISK" of=/tmp/wedge-back bs=64k skip=64 count=1 iflag=direct status=none
    [ $RC = 0 ] || die "a read after the recovery failed (rc $RC)"
    cmp -s /tmp/wedge-back <(head -c 65536 /dev/zero) \
        || die "a read after the recovery returned other bytes than the disk's zeros"
    sample_states 0 2
    local after=$STATES
    stop_rmdir 0
    end_mode
    ok "trickle-reset: the LUN reset answered on the leading connection took the command back from the trickled Data-In on the added one; that PDU lost its connection $t_lost s after it began (bound $stall s, asserted with 10 s slack: the ticker looks once a second); the read ended in $io_t s (rc $io_rc$([ $io_rc = 0 ] && echo ", the disk's bytes")); a read after the recovery returned the disk's bytes; state after '$after'; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# pause-slow-burst: the target takes the trigger write's Data-Out at about 4 KiB/s (each PDU's
# 48-byte header and 4 KiB segment read after a 0.5 s pause each) and keeps the connection busy
# with NOP-Ins, so nothing times out while the transmit work sends that burst for minutes. fio then
# writes at QD 60 (queue_depth 64, so no tag wait) in batches of 28, past the command window (32
# commands beyond the trigger write, one more for each second since the burst began): the second
# batch is issued directly (scheduler none), some of its commands go, the next finds the window
# shut, and blk-mq calls commit_rqs for those, whose inline send finds the burst's PDU left
# partly sent on a full socket, or the transmit work sending it, and leaves them to the
# transmit work (asserted: conn0.tx_busy > 0). The window must end inside a batch: one that
# filled it exactly would leave the next batch to find it shut at once, with nothing to commit,
# and no completion comes during the burst to dispatch again (CI missed the scenario so, 3 times
# in about 12 runs, with batches of 20 against a window that had grown to 40). With batches of 28
# the window ends inside one for any window of 32 to 55, so fio has 23 s to get going. A send that waited for it there would hold
# fio's io_submit, and scsi_host_block in `pause`, until the burst ends (the debug kernel's
# hung-task check fails the run after 30 s). The target opens the window by one command a second,
# so the window watch does not fail the connection meanwhile. `pause` returns
# within PAUSE_BOUND (its commands wait 10 s, the logout 10 s); the 1 MiB write and fio stay held;
# `start` resumes on a new connection (the target behaves there: asserted from its log) and both
# end within 120 s of the resume: the write reads back intact and fio's crc32c verify passes.
# fio writes 2 MiB: even behaving, this target takes each 4 KiB write as a command, an R2T and a
# Data-Out through its 4 KiB receive buffer, and CI saw fio's 4 MiB take 130 s after a resume on
# a busy host.
PAUSE_BOUND=40
mode_pause_slow_burst() {
    begin pause-slow-burst slow-burst
    echo 64 > "$ISCSI_ROOT/0/queue_depth"
    start_ok 0
    echo 300 > "/sys/block/$DISK/device/timeout"   # no error handling during the slow burst
    echo none > "/sys/block/$DISK/queue/scheduler"   # batches issued directly: commit_rqs
    pattern
    bg io dd_trigger_write "$DISK"
    tlog_wait "slow-burst: conn [0-9]+: the write is served" 60 || die "the write never reached the target"
    local busy
    bg load fio --name=burst --filename="/dev/$DISK" --rw=randwrite --bs=4k --offset=8m --size=2m \
        --ioengine=libaio --direct=1 --iodepth=60 --iodepth_batch_submit=28 --verify=crc32c --do_verify=1 --verify_fatal=1 --eta=never \
        --output=/tmp/wedge-fio.txt
    wait_for "[ \$(channel_stat 0 conn0.tx_busy) -gt 0 ]" 20 \
        || die "no inline send left its PDUs to the transmit work within 20 s (conn0.tx_busy 0, window_full $(channel_stat 0 window_full)): the scenario was not reached"
    busy=$(channel_stat 0 conn0.tx_busy)
    [ "$(channel_stat 0 window_full)" -gt 0 ] || die "no command found the window shut (window_full 0)"
    running io || die "the trigger write ended although the target takes its data at 4 KiB/s"
    running load || die "fio ended although the target takes its data at 4 KiB/s ($(cat /tmp/wedge-fio.txt))"
    local t_pause
    timed $PAUSE_BOUND "channel 0: pause during the slow burst" ctl_write pause "$ISCSI_ROOT/0/control" /tmp/wedge-pause.err
    [ $RC = 0 ] || die "channel 0: pause failed (rc $RC: $(cat /tmp/wedge-pause.err))"
    t_pause=$T
    read_state 0
    [ "$ST" = paused ] || die "channel 0: state '$ST' after pause"
    running io || die "the trigger write ended during the pause (it is held until resume)"
    running load || die "fio ended during the pause (its writes are held until resume)"
    local logins; logins=$(grep -c ": logged in, negotiated" "$LOG")
    timed $START_BOUND "channel 0: resume" ctl_write start "$ISCSI_ROOT/0/control" /tmp/wedge-start.err
    [ $RC = 0 ] || die "channel 0: resume failed (rc $RC: $(cat /tmp/wedge-start.err))"
    local t_resume=$T resumed=$((${EPOCHREALTIME/./} / 1000))
    wait_for "[ \$(grep -c ': logged in, negotiated' '$LOG') -gt $logins ]" 5 || die "resume logged in no new connection"
    bg_wait io 120 $resumed || die "bound missed: the write did not end within 120 s of the resume ($(late io))"
    [ $RC = 0 ] || die "the write failed after the resume (rc $RC: $(cat /tmp/wedge-dd.err))"
    bg_wait load 120 $resumed || die "bound missed: fio did not end within 120 s of the resume ($(late load))"
    [ $RC = 0 ] && grep -q "err= 0" /tmp/wedge-fio.txt || { cat /tmp/wedge-fio.txt >&2; die "fio failed or did not verify after the resume"; }
    read_back "$DISK"
    stop_rmdir 0
    end_mode
    ok "pause-slow-burst: while the transmit work sent a 1 MiB burst at 4 KiB/s, inline sends found the socket full or the work sending $busy times and left their PDUs to it; pause returned in $t_pause s (bound $PAUSE_BOUND s); resume in $t_resume s; the write read back intact and fio's crc32c verify passed; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# late-tmf: ABORT TASK is answered 6 s late, after the LUN reset was sent: the late answer must
# not be taken for the LUN reset's, so the target reset (function 6) follows it. The write ends.
# Each request is sent tmf_timeout (4 s) after the one before: the channel's bound on each wait.
mode_late_tmf() {
    begin late-tmf late-tmf
    start_ok 0
    echo 3 > "/sys/block/$DISK/device/timeout"
    pattern
    bg io dd_trigger_write "$DISK"
    tlog_wait "TRIGGER late-tmf" 60 || die "the write never reached the target"
    bg_wait io 90 || die "bound missed: the write did not end within 90 s ($(late io))"
    local io_rc=$RC io_t; io_t=$(secs $MS)
    [ $io_rc = 0 ] && read_back "$DISK"
    local l1 l5 late l6 abort_itt lun_itt
    l1=$(grep -n -m1 "task management function 1 itt .*: answered in" "$LOG" | cut -d: -f1 || true)
    l5=$(grep -n -m1 "task management function 5 itt .* ignored" "$LOG" | cut -d: -f1 || true)
    late=$(grep -n -m1 "late-tmf: late answer to ABORT TASK itt .* sent" "$LOG" | cut -d: -f1 || true)
    l6=$(grep -n -m1 "task management function 6 itt" "$LOG" | cut -d: -f1 || true)
    [ -n "$l1" ] || die "no ABORT TASK reached the target (the write ended rc $io_rc in $io_t s)"
    [ -n "$l5" ] || die "no LOGICAL UNIT RESET reached the target (the write ended rc $io_rc in $io_t s)"
    [ -n "$late" ] || die "the late ABORT TASK answer was not sent (connection gone?)"
    abort_itt=$(sed -n "${l1}s/.*function 1 itt \(0x[0-9a-f]*\).*/\1/p" "$LOG")
    lun_itt=$(sed -n "${l5}s/.*function 5 itt \(0x[0-9a-f]*\).*/\1/p" "$LOG")
    local why=""
    [ "$abort_itt" != "$lun_itt" ] || why=" (the ABORT TASK and the LUN RESET had the same ITT, $abort_itt)"
    [ -n "$l6" ] || die "no TARGET WARM RESET (function 6) reached the target: the late abort answer was taken for the LUN reset's$why; the write ended rc $io_rc in $io_t s"
    [ -z "$why" ] || die "the ABORT TASK and the LUN RESET have the same ITT ($abort_itt)"
    [ "$l1" -lt "$l5" ] && [ "$l5" -lt "$late" ] && [ "$late" -lt "$l6" ] \
        || die "order in the target log: ABORT line $l1, LUN RESET line $l5, late answer line $late, TARGET RESET line $l6 (want ascending)"
    local ts1 ts5 tsl ts6
    ts1=$(sed -n "${l1}s/ .*//p" "$LOG"); ts5=$(sed -n "${l5}s/ .*//p" "$LOG")
    tsl=$(sed -n "${late}s/ .*//p" "$LOG"); ts6=$(sed -n "${l6}s/ .*//p" "$LOG")
    # Each wait is tmf_timeout, give or take the error handler's own steps (1.5 s of slack).
    local gap what a b
    for gap in "ABORT TASK to LUN RESET:$ts1:$ts5" "LUN RESET to TARGET WARM RESET:$ts5:$ts6"; do
        IFS=: read -r what a b <<< "$gap"
        awk "BEGIN{d=$b-$a; exit !(d >= $TMF_TIMEOUT - 0.2 && d <= $TMF_TIMEOUT + 1.5)}" \
            || die "bound missed: $what took $(awk "BEGIN{printf \"%.1f\", $b-$a}") s (tmf_timeout $TMF_TIMEOUT s, 1.5 s of slack)"
    done
    sample_states 0 2
    local after=$STATES
    stop_rmdir 0
    end_mode
    ok "late-tmf: ABORT TASK (itt $abort_itt) at 0 s, LUN RESET (itt $lun_itt) at $(awk "BEGIN{printf \"%.1f\", $ts5-$ts1}") s, the late abort answer at $(awk "BEGIN{printf \"%.1f\", $tsl-$ts1}") s, then TARGET WARM RESET at $(awk "BEGIN{printf \"%.1f\", $ts6-$ts1}") s (each wait tmf_timeout, $TMF_TIMEOUT s; the late answer was not taken for the LUN reset's); the write ended in $io_t s (rc $io_rc$([ $io_rc = 0 ] && echo ', data read back intact')); state after '$after'; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# filler-reset: two LUNs, two connections, ExpCmdSN kept for the session as RFC 7143 requires
# (a CmdSN never sent shuts the target's window). A 1 MiB write to LUN 1 goes on the added
# connection (CPU 1's queue starts there), whose socket the target then reads at about 4 KiB/s. A
# READ of LUN 1 from CPU 0 goes on the leading connection and is held. Four 4 KiB reads of LUN 0
# from CPU 1, in one batch: with one command on each connection, the first goes on the added
# one (its queue's own) and waits behind the burst, unsent, with its CmdSN. After the device
# timeout (3 s) and the unanswered aborts, the error handler resets LUN 0 on the leading
# connection: the reads it covers end, and each leaves a NOP-Out in its place in the added
# connection's queue (a filler), which keeps its tag there until it is sent. The error
# handler's TEST UNIT READY reuses such a tag: the added connection gives it back
# (conn1.tag_busy) and the leading one sends it. Resetting LUN 1 then ends the write and the
# held read, and the target reads at full speed: the fillers reach it, the session's ExpCmdSN
# passes every CmdSN sent (the target logs how many it holds beyond ExpCmdSN at each filler:
# none after the last), and 256 more commands pass through the window. No recovery; every
# read and the retried write return their bytes.
mode_filler_reset() {
    begin filler-reset filler-reset
    # The held read and the LUN 0 reads must be issued before the write's unanswered abort
    # gives up and puts the host in recovery: 10 s (the default) leaves the time for that.
    echo 10 > "$ISCSI_ROOT/0/tmf_timeout"
    echo "127.0.0.1:$port*2" > "$ISCSI_ROOT/0/portals"
    start_ok 0
    local conns d0 d1; conns=$(channel_stat 0 connections)
    [ "$conns" = 2 ] || die "$conns connections, expected 2 (the target grants 2)"
    read -r d0 d1 <<< "$DISK"
    [ -n "$d1" ] || die "one disk ($DISK), expected one per LUN (the target serves LUNs 0 and 1)"
    echo 3 > "/sys/block/$d0/device/timeout"; echo 3 > "/sys/block/$d1/device/timeout"
    echo none > "/sys/block/$d0/queue/scheduler"   # the batch reaches queuecommand as one
    # LUN 0's bytes, written while the target behaves (fio's verify headers, read back below).
    local fio_lun0=(--name=filler --filename=/dev/$d0 --bs=4k --size=16k --offset=1m
                    --ioengine=libaio --direct=1 --verify=crc32c --eta=never)
    fio "${fio_lun0[@]}" --rw=write --do_verify=0 --output=/tmp/wedge-fio-w.txt \
        || die "writing LUN 0's pattern failed: $(cat /tmp/wedge-fio-w.txt)"
    # ... and LUN 1's first block, which the held read reads.
    head -c 4096 /dev/urandom > /tmp/wedge-held-pattern
    dd if=/tmp/wedge-held-pattern of=/dev/$d1 bs=4k count=1 oflag=direct status=none \
        || die "writing LUN 1's first block failed"
    pattern
    # The LUN 0 reads must be in flight before the write's unanswered abort puts the host in
    # recovery (the 3 s device timeout and tmf_timeout after the write), and fio's start-up
    # alone took seconds of the debug VM's CPU on a busy host (in_flight stayed at 2 in CI):
    # fio starts now and waits at its prerun (after opening the disk and setting up libaio,
    # just before its first read) for a word through a FIFO. The test holds the FIFO open
    # read-write, so neither side's open blocks and the word waits in the pipe.
    local go=/tmp/wedge-go ready=/tmp/wedge-fio-ready
    rm -f $go $ready; mkfifo $go
    exec 3<>$go
    bg reads taskset -c 1 fio "${fio_lun0[@]}" --rw=read --iodepth=4 --iodepth_batch_submit=4 \
        --verify_fatal=1 --output=/tmp/wedge-fio.txt --exec_prerun="touch $ready; read -r w < $go"
    wait_for "[ -e $ready ] || ! running reads" 60 || die "fio did not reach its first read in 60 s"
    [ -e $ready ] || { cat /tmp/wedge-fio.txt >&2; die "fio ended before its first read"; }
    bg io taskset -c 1 dd if=/tmp/wedge-pattern of=/dev/$d1 bs=1M seek=4 count=1 oflag=direct status=none
    tlog_wait "TRIGGER filler-reset on conn" 30 || die "the write to LUN 1 never reached the target on the added connection"
    tlog_wait "filler-reset: conn [0-9]+: one R2T" 10 || die "the target did not start reading slowly"
    wait_for "[ \$(channel_stat 0 conn1.r2ts) -ge 1 ]" 10 || die "the write's R2T did not reach the added connection"
    nap 0.5   # the burst fills the socket
    bg held taskset -c 0 dd if=/dev/$d1 of=/tmp/wedge-held bs=4k count=1 iflag=direct status=none
    tlog_wait "READ of LUN 1 itt .* held" 10 || die "the READ of LUN 1 was not held by the target"
    local t_go=$((${EPOCHREALTIME/./} / 1000)) reads_t
    echo go >&3
    wait_for "[ \$(channel_stat 0 in_flight) -ge 3 ]" 10 \
        || die "the LUN 0 reads were not in flight within 10 s of fio's go (in_flight $(channel_stat 0 in_flight))"
    reads_t=$(secs $(( ${EPOCHREALTIME/./} / 1000 - t_go )))
    exec 3>&-
    tlog_wait "task management function 5 itt .*LUN 0 reset answered" 90 \
        || die "no LUN 0 reset answered within 90 s (aborts: $(channel_stat 0 aborts))"
    tlog_wait "task management function 5 itt .*LUN 1 reset" 60 || die "no LUN 1 reset within 60 s of LUN 0's"
    # From the word, not from fio's start-up.
    bg_wait reads 60 $t_go || die "bound missed: the LUN 0 reads did not end within 60 s of the word ($(late reads))"
    [ $RC = 0 ] && grep -q "err= 0" /tmp/wedge-fio.txt \
        || { cat /tmp/wedge-fio.txt >&2; die "the LUN 0 reads failed or did not verify (fio rc $RC)"; }
    bg_wait io 60 || die "bound missed: the write did not end within 60 s of its start ($(late io))"
    [ $RC = 0 ] || die "the write to LUN 1 failed (rc $RC)"
    bg_wait held 60 || die "bound missed: the held READ did not end ($(late held))"
    [ $RC = 0 ] || die "the held READ of LUN 1 failed after LUN 1's reset (rc $RC)"
    cmp -s /tmp/wedge-held /tmp/wedge-held-pattern || die "the held READ returned other bytes than the block written"
    local fillers tag_busy rec seen
    fillers=$(channel_stat 0 conn1.fillers); tag_busy=$(channel_stat 0 conn1.tag_busy)
    rec=$(channel_stat 0 recoveries)
    [ "$rec" = 0 ] || die "$rec recoveries: $(klog 0 | tail -5)"
    ! klog 0 | grep -q "connection lost" || die "a connection was lost: $(klog 0 | grep 'connection lost')"
    [ "$fillers" -ge 1 ] || die "conn1.fillers $fillers: no read was covered while queued (the scenario was not reached)"
    [ "$tag_busy" -ge 1 ] || die "conn1.tag_busy $tag_busy: no command came back to a tag whose filler was queued"
    # ... and the error handler's TEST UNIT READY went on the leading connection at once, not
    # after the fillers left (LUN 1's reset, next, is what lets them go).
    local lead l0 ltur l1
    lead=$(grep -m1 ": logged in, negotiated" "$LOG" | sed 's/^[0-9.]* conn \([0-9]*\):.*/\1/')
    l0=$(grep -n -m1 "LUN 0 reset answered" "$LOG" | cut -d: -f1)
    ltur=$(grep -n -m1 "filler-reset: conn $lead: TEST UNIT READY of LUN 0" "$LOG" | cut -d: -f1 || true)
    l1=$(grep -n -m1 "LUN 1 reset:" "$LOG" | cut -d: -f1)
    [ -n "$ltur" ] && [ "$l0" -lt "$ltur" ] && [ "$ltur" -lt "$l1" ] \
        || die "no TEST UNIT READY of LUN 0 on the leading connection (conn $lead) between LUN 0's reset (line $l0) and LUN 1's (line $l1): $(grep 'TEST UNIT READY' "$LOG" | head -3)"
    # The module counts a filler as it builds it: wait for the target to have them all.
    local last count='$(( $(channel_stat 0 conn0.fillers) + $(channel_stat 0 conn1.fillers) ))'
    wait_for "[ \$(grep -c 'filler NOP-Out itt' '$LOG') = $count ]" 10 \
        || die "the target received $(grep -c 'filler NOP-Out itt' "$LOG") filler NOP-Outs, the module counts $(eval echo "$count")"
    seen=$(grep -c "filler NOP-Out itt" "$LOG")
    last=$(grep "filler NOP-Out itt" "$LOG" | tail -1)
    grep -q ", 0 received beyond it$" <<< "$last" || die "a CmdSN hole is left after the last filler: $last"
    # The window moves: more commands than it is wide (32).
    timed 60 "256 reads after the fillers" dd if=/dev/$d0 of=/dev/null bs=4k count=256 iflag=direct status=none
    [ $RC = 0 ] || die "256 reads after the fillers failed (rc $RC)"
    [ "$(channel_stat 0 recoveries)" = 0 ] || die "a recovery during the 256 reads"
    read_back "$d1"
    sample_states 0 2
    local after=$STATES
    stop_rmdir 0
    end_mode
    ok "filler-reset: a LUN 0 reset on the leading connection covered $fillers read(s) still queued on the added one; each left a filler NOP-Out, all $seen reached the target and its ExpCmdSN passed them ($(sed 's/.*: session //' <<< "$last")); $tag_busy command(s) found their tag's filler queued, and the error handler's TEST UNIT READY went on the leading connection before the fillers left; no recovery; the reads (in flight $reads_t s after fio's go) verified, the held read and the retried 1 MiB write returned their bytes, 256 more reads passed the window; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
}

# two-BAD: channel 0 wedged by BAD (slow-drain: a stalled write; scan-silent: a start stuck in
# its scan), channel 1 on a good target: its 1 MiB write reads back intact and its stop returns
# within STOP_OTHER_BOUND while channel 0 is still wedged; then channel 0 stops within STOP_BOUND.
mode_two() {
    local bad=$1
    begin "two-$bad" "$bad"
    good_target
    channel_create 1 $IQN 127.0.0.1:$GPORT "${SETTINGS[@]}"
    start_ok 1
    local d1=$DISK t1=$START_T
    if [ "$bad" = slow-drain ]; then
        start_ok 0
        pattern
        bg io dd_trigger_write "$DISK"
        tlog_wait "TRIGGER slow-drain on conn" 60 || die "the write never reached the target"
        wedged() { running io; }
    else
        bg start ctl_write start "$ISCSI_ROOT/0/control" /tmp/wedge-start.err
        tlog_wait "TRIGGER $bad" 60 || die "the target never misbehaved"
        wedged() { running start; }
    fi
    nap 1
    wedged || die "channel 0 is not wedged"
    head -c $((1 << 20)) /dev/urandom > /tmp/wedge-pattern1
    timed 60 "channel 1: 1 MiB write" dd if=/tmp/wedge-pattern1 of="/dev/$d1" bs=1M seek=1 count=1 oflag=direct status=none
    [ $RC = 0 ] || die "channel 1: the write failed while channel 0 is wedged"
    local tw=$T
    timed 60 "channel 1: read back" dd if="/dev/$d1" of=/tmp/wedge-back1 bs=1M skip=1 count=1 iflag=direct status=none
    [ $RC = 0 ] || die "channel 1: the read failed while channel 0 is wedged"
    local tr=$T
    cmp -s /tmp/wedge-pattern1 /tmp/wedge-back1 || die "channel 1: data read back differs"
    wedged || die "channel 0 came unwedged during channel 1's I/O"
    timed $STOP_OTHER_BOUND "channel 1: stop while channel 0 is wedged" ctl_write stop "$ISCSI_ROOT/1/control" /tmp/wedge-stop.err
    [ $RC = 0 ] || die "channel 1: stop failed"
    local ts1=$T
    read_state 1
    [ "$ST" = stopped ] || die "channel 1: state '$ST' after stop"
    wedged || die "channel 0 came unwedged before channel 1's stop returned"
    timed $RMDIR_BOUND "channel 1: rmdir" rmdir "$ISCSI_ROOT/1"
    [ $RC = 0 ] || die "channel 1: rmdir failed"
    local tail
    if [ "$bad" = slow-drain ]; then
        stop_rmdir 0
        bg_wait io 10 $((${EPOCHREALTIME/./} / 1000)) || die "bound missed: channel 0's write did not end within 10 s of stop ($(late io))"
        tail="channel 0's stop in $STOP_T s, its write ended (rc $RC); rmdir in $RMDIR_T s"
    else
        interrupt_start 0
        tail="channel 0: $WHAT"
    fi
    end_mode
    ok "two-$bad: channel 1 (good target) started in $t1 s, wrote 1 MiB in $tw s and read it back intact in $tr s, and stopped in $ts1 s (bound $STOP_OTHER_BOUND s) while channel 0 ($bad) was wedged; $tail; $(states_ok)"
}

# kill-start: the writer of `start`, stuck in a scan-silent scan, is killed with SIGKILL: it
# exits within KILL_BOUND; stop and rmdir work. If it does not, the failure is recorded and the
# run goes on (stop, then the other modes and rmmod) to show what else holds, then fails.
DEFERRED=()
mode_kill_start() {
    begin kill-start scan-silent
    bg start ctl_write start "$ISCSI_ROOT/0/control" /tmp/wedge-start.err
    tlog_wait "TRIGGER scan-silent" 60 || die "the target never misbehaved"
    nap 2
    running start || die "start ended by itself"
    kill -KILL "${BG_PID[start]}"
    BG_T0[start]=$((${EPOCHREALTIME/./} / 1000))
    if bg_wait start $KILL_BOUND; then
        local tk; tk=$(secs $MS)
        [ $RC = 137 ] || die "the killed writer exited with rc $RC, expected 137 (SIGKILL)"
        read_state 0
        local after=$ST
        stop_rmdir 0
        end_mode
        ok "kill-start: the writer of start killed with SIGKILL during the scan exited in $tk s (bound $KILL_BOUND s); state then '$after'; stop in $STOP_T s; rmdir in $RMDIR_T s; $(states_ok)"
        return
    fi
    local msg="the writer of start, killed with SIGKILL during the scan, still runs after $KILL_BOUND s"
    echo "FAIL (deferred to the end): kill-start: $msg" >&2
    read_state 0
    local during=$ST
    timed $STOP_BOUND "channel 0: stop while the killed writer is blocked" ctl_write stop "$ISCSI_ROOT/0/control" /tmp/wedge-stop.err
    local stop_rc=$RC stop_t=$T
    local ended
    if bg_wait start 10 $((${EPOCHREALTIME/./} / 1000)); then
        ended="it ended $(secs $MS) s after the kill (rc $RC), once stop was written"
    else
        ended="it still ran 10 s after stop returned ($(late start) from the kill)"
    fi
    read_state 0
    [ "$ST" = stopped ] || die "channel 0: state '$ST' after stop"
    timed $RMDIR_BOUND "channel 0: rmdir" rmdir "$ISCSI_ROOT/0"
    [ $RC = 0 ] || die "channel 0: rmdir failed"
    end_mode
    DEFERRED+=("kill-start: $msg (state '$during'); stop then returned in $stop_t s (rc $stop_rc), $ended; rmdir in $T s")
    echo "FAIL (deferred to the end): ${DEFERRED[-1]}" >&2
}

# A command failing outside an assertion (set -e) still says where the run stopped.
trap 'rc=$?; if [ $rc != 0 ]; then
    [ -n "${DIED:-}" ] || echo "FAIL: $MODE: stopped by a failing command (rc $rc): $BASH_COMMAND" >&2
    save_artifacts; fi' EXIT
load_module
modes=${*:-"scan-silent scan-close scan-async window-login window-io slow-drain login-drip
    r2t-reset trickle-reset pause-slow-burst late-tmf filler-reset two-slow-drain two-scan-silent
    kill-start"}
for m in $modes; do
    case $m in
        scan-silent|scan-close|window-login) mode_scan "$m" ;;
        scan-async)      mode_scan_async ;;
        window-io)       mode_window_io ;;
        slow-drain)      mode_slow_drain ;;
        login-drip)      mode_login_drip ;;
        r2t-reset)       mode_r2t_reset ;;
        trickle-reset)   mode_trickle_reset ;;
        pause-slow-burst) mode_pause_slow_burst ;;
        late-tmf)        mode_late_tmf ;;
        filler-reset)    mode_filler_reset ;;
        two-slow-drain)  mode_two slow-drain ;;
        two-scan-silent) mode_two scan-silent ;;
        kill-start)      mode_kill_start ;;
        *) fail "unknown mode $m" ;;
    esac
done
MODE=rmmod
timed $RMMOD_BOUND "rmmod core_iscsi" rmmod core_iscsi
[ $RC = 0 ] || die "rmmod core_iscsi failed (rc $RC)"
ok "rmmod core_iscsi in $T s (bound $RMMOD_BOUND s), after every mode ($((SECONDS - t_all)) s in all)"
if [ ${#DEFERRED[@]} != 0 ]; then
    printf 'FAIL: %s\n' "${DEFERRED[@]}" >&2
    exit 1
fi
