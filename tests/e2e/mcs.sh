#!/bin/bash
# Several connections per session (MC/S, the howto's "trunking"): two portals of two connections
# each against LIO (one bound to a device), a portal that does not answer (the session runs on
# the others, `connections` names the missing one, and the running session adds it once it
# answers), a portal that accepts and never answers (stop does not wait for the running
# session's login through it), the howto's Example 2 layout through
# `initiator-ctl start` with the target's own view of the session and two connections killed
# under load (`ss -K`), a connection the target asks to log out (it leaves alone, no recovery,
# and is added back; a refused logout reinstates the session), four connections with mutual CHAP and digests against istgt, connections
# bound to two veth devices into a network namespace, the fallback to what the target grants
# (tgt), I/O carried by every connection, each target's own view of the session (LIO's `info`,
# `istgtcontrol info`, `tgtadm --op show`), a connection killed under load with each target,
# recoveries that bring every connection back, and stop leaving no connection behind.
# vm-kernel: debug
# vm-args: --timeout 1800
# vm-seconds: 300
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2003-01.org.linux-iscsi.vm:mcs
ch=$ISCSI_ROOT/0

# established PORT: the TCP connections to PORT in state ESTABLISHED, one per line as ss
# prints them ("LOCAL%DEV:PORT PEER:PORT" when bound to a device).
established() {
    ss -Htn state established "( dport = :$1 )" | awk '{print $3 " " $4}'
}

# conn_busy N: every connection 0..N-1 received at least 8 PDUs (each carried commands).
conn_busy() {
    local i n
    for i in $(seq 0 $(($1 - 1))); do
        n=$(channel_stat 0 conn$i.pdus_rx)
        [ "$n" -ge 8 ] || fail "connection $i received only $n PDUs: it carried no I/O"
    done
}

# fio_both DEV SIZE: fio verify with one job pinned to each CPU, so both hardware queues (and
# so every connection) carry I/O.
fio_both() {
    fio --name=mcs --filename=/dev/$1 --rw=randwrite --bs=64k --iodepth=16 --numjobs=2 \
        --cpus_allowed=0-1 --cpus_allowed_policy=split --offset_increment=$2 --size=$2 \
        --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output=/tmp/fio-mcs.txt > /dev/null 2>&1 \
        || { cat /tmp/fio-mcs.txt >&2; fail "/dev/$1: fio verify over two CPUs failed"; }
    grep -q "err= 0" /tmp/fio-mcs.txt || { cat /tmp/fio-mcs.txt >&2; fail "/dev/$1: fio reported errors"; }
}

# kill_under_load CH DEV SIZE N FILTER...: while a verifying fio writes DEV (one job per CPU,
# SIZE each), destroys the TCP connections that ss's FILTER matches (a socket destroy, as a
# dead link or a reset would end them). At ErrorRecoveryLevel 0 losing one connection loses the
# session: channel CH must count a recovery, be back to N connections, and fio's verify pass.
# The kill comes once 1 MiB is written with writes in flight (the disk's own counters, read by
# bash alone, pausing on a FIFO nobody writes: on the debug kernel under this load a forked
# process takes up to 2 s, and on a fast host fio had written and verified 16 MiB before a
# fixed 1 s sleep and two forked reads ended).
kill_under_load() {
    local n=$1 dev=$2 size=$3 want=$4 rec pid st inflight i pause; shift 4
    rec=$(channel_stat $n recoveries)
    rm -f /tmp/kill-pause; mkfifo /tmp/kill-pause; exec {pause}<> /tmp/kill-pause
    read -ra st < /sys/block/$dev/stat
    local start=${st[6]}
    fio --name=kill --filename=/dev/$dev --rw=randwrite --bs=64k --iodepth=16 --numjobs=2 \
        --cpus_allowed=0-1 --cpus_allowed_policy=split --offset_increment=$size --size=$size \
        --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output=/tmp/fio-kill.txt > /dev/null 2>&1 &
    pid=$!
    for ((i = 0; i < 300; i++)); do
        read -ra st < /sys/block/$dev/stat             # sectors written: field 6
        read -ra inflight < /sys/block/$dev/inflight   # reads, writes in flight
        [ $(( st[6] - start )) -ge 2048 ] && [ "${inflight[1]}" -gt 0 ] && break
        read -rt 0.05 -u $pause _ || true
    done
    exec {pause}>&-
    [ $(( st[6] - start )) -ge 2048 ] && [ "${inflight[1]}" -gt 0 ] \
        || fail "fio had not 1 MiB written and writes in flight on /dev/$dev within 15 s"
    ss -K "$@" > /dev/null || fail "ss -K $* failed"
    kill -0 $pid 2>/dev/null || fail "fio ended before the connections were killed: the test proves nothing"
    wait $pid || { cat /tmp/fio-kill.txt >&2; fail "fio verify failed across the killed connections"; }
    grep -q "err= 0" /tmp/fio-kill.txt || fail "fio reported errors"
    [ "$(channel_stat $n recoveries)" -gt "$rec" ] || fail "no recovery counted after the kill"
    wait_for "[ \"\$(channel_stat $n connections)\" = $want ]" 30 \
        || fail "not $want connections again: $(cat $ISCSI_ROOT/$n/connections)"
}

dmesg -C
load_module

# ---- LIO, two portals of two connections each, the second bound to lo ----------------------
lio_target $IQN 3260 128
tpg=$CFS/target/iscsi/$IQN/tpgt_1
mkdir -p "$tpg/np/127.0.0.2:3260"
echo 4 > "$tpg/param/MaxConnections"
lo=$(cat /sys/class/net/lo/ifindex)
channel_create 0 $IQN "127.0.0.1:3260*2 127.0.0.2:3260*2@$lo"
[ "$(cat $ch/portals)" = "127.0.0.1:3260*2 127.0.0.2:3260*2@$lo" ] \
    || fail "portals read back as '$(cat $ch/portals)'"
start_channel 0
[ "$(channel_stat 0 connections)" = 4 ] || fail "$(channel_stat 0 connections) connections open, expected 4"
[ "$(channel_stat 0 connections_configured)" = 4 ] || fail "connections_configured $(channel_stat 0 connections_configured)"
grep -qx "MaxConnections=4" $ch/negotiated || fail "negotiated: $(grep MaxConnections $ch/negotiated)"
conns=$(established 3260)
# Two to 127.0.0.1 unbound, two to 127.0.0.2 from a socket bound to lo (ss prints LOCAL%DEV).
[ "$(grep -c '^[0-9.]*:[0-9]* 127.0.0.1:3260$' <<< "$conns")" = 2 ] || fail "not two unbound connections to 127.0.0.1: $conns"
[ "$(grep -c '^[0-9.]*%lo:[0-9]* 127.0.0.2:3260$' <<< "$conns")" = 2 ] || fail "not two connections to 127.0.0.2 bound to lo: $conns"
ok "LIO: 4 connections (2 via 127.0.0.1, 2 via 127.0.0.2 bound to lo), MaxConnections=4"
# The channel's own account: four connections up, by CID, with their portals and binding.
c=$ch/connections
[ "$(grep -c ' state up ' $c)" = 4 ] || fail "connections: $(cat $c)"
for cid in 0 1 2 3; do grep -q "^cid $cid portal 127.0.0.[12]:3260 " $c || fail "no CID $cid in: $(cat $c)"; done
[ "$(grep -c "portal 127.0.0.2:3260 ifindex $lo local 127.0.0.1:" $c)" = 2 ] || fail "binding not shown: $(cat $c)"
disk=$(channel_disks 0)
check_disks 0 LIO-ORG 128
# min(4 connections, 2 CPUs) hardware queues, each served by every connection.
[ "$(ls /sys/block/$disk/mq | wc -l)" = 2 ] || fail "$disk: $(ls /sys/block/$disk/mq | wc -l) hardware queues, expected 2"
fio_both $disk 16m
conn_busy 4
ok "LIO: data verified, every connection carried I/O ($(for i in 0 1 2 3; do echo -n "conn$i $(channel_stat 0 conn$i.pdus_rx) "; done)PDUs received)"
# One command at a time from one CPU goes out on one connection every time (the least busy,
# the queue's own on a tie), not on each connection in turn.
declare -a before
for i in 0 1 2 3; do before[$i]=$(channel_stat 0 conn$i.pdus_rx); done
taskset -c 0 dd if=/dev/$disk of=/dev/null bs=4k count=400 iflag=direct 2>/dev/null \
    || fail "/dev/$disk: 4 KiB reads at QD1 failed"
most=0; rest=0
for i in 0 1 2 3; do
    d=$(( $(channel_stat 0 conn$i.pdus_rx) - before[i] ))
    [ "$d" -gt "$most" ] && { rest=$((rest + most)); most=$d; } || rest=$((rest + d))
done
[ "$most" -ge 400 ] && [ "$rest" -lt 20 ] \
    || fail "400 reads at QD1 spread over connections: $most PDUs on the busiest, $rest on the others"
ok "LIO: 400 reads at QD1 on one connection ($most PDUs there, $rest on the other three)"
stop_channel 0
[ -z "$(established 3260)" ] || fail "connections left after stop: $(established 3260)"
ok "LIO: stop closed every connection"

# ---- one address listed three times, more connections than the target grants ----------------
# The connections through one address count towards the entries that name it in order
# (`missing_at`): of 1 + 2 + 2 asked and 4 granted, exactly one is missing, the last entry's.
echo "127.0.0.1:3260 127.0.0.1:3260*2 127.0.0.1:3260*2" > $ch/portals
start_channel 0
[ "$(channel_stat 0 connections)" = 4 ] || fail "$(channel_stat 0 connections) connections of 5 asked, 4 granted"
[ "$(channel_stat 0 connections_configured)" = 5 ] || fail "connections_configured $(channel_stat 0 connections_configured)"
[ "$(grep -c ' state up ' $ch/connections)" = 4 ] && [ "$(grep -c 'state missing' $ch/connections)" = 1 ] \
    && grep -qx "cid - portal 127.0.0.1:3260 ifindex 0 local - state missing" $ch/connections \
    || fail "not 4 up and 1 missing: $(cat $ch/connections)"
dmesg | grep -q "core-iscsi: channel 0: the target grants 4 of 5 connections" \
    || fail "no kernel log line for the connection the target did not grant"
stop_channel 0
ok "LIO: one address listed three times (1 + 2 + 2 connections, 4 granted): 4 up, 1 missing, said in the kernel log"

# ---- a portal that does not answer: the session runs on the others and says what is missing --
echo "127.0.0.1:3260*2 127.0.0.3:3999" > $ch/portals
start_channel 0
[ "$(channel_stat 0 connections)" = 2 ] || fail "$(channel_stat 0 connections) connections with one portal dead"
[ "$(channel_stat 0 connections_configured)" = 3 ] || fail "connections_configured $(channel_stat 0 connections_configured)"
grep -qx "cid - portal 127.0.0.3:3999 ifindex 0 local - state missing" $ch/connections \
    || fail "the missing connection is not named: $(cat $ch/connections)"
dmesg | grep -q "core-iscsi: channel 0: connection 2 (TSIH [0-9]*) not added: connection refused" \
    || fail "no kernel log line for the connection not added"
fio_verify "$(channel_disks 0)" 4m
ok "LIO: a dead portal leaves the session on 2 of 3 connections, the missing one named, data verified"
# The portal comes to life: the running session adds its connection at its next try (5 s after
# the login, then waits doubling up to 60 s: the bound asserted, with a login's time on top).
t0=$SECONDS
mkdir -p "$tpg/np/127.0.0.3:3999"
wait_for "[ \"\$(channel_stat 0 connections)\" = 3 ]" 75 \
    || fail "the portal that came back was not added within 75 s: $(cat $ch/connections)"
took=$((SECONDS - t0))
grep -Eq "^cid 2 portal 127.0.0.3:3999 ifindex 0 local [0-9.]+:[0-9]+ state up " $ch/connections \
    || fail "connection 2 not shown up: $(cat $ch/connections)"
! grep -q "state missing" $ch/connections || fail "still missing: $(cat $ch/connections)"
dmesg | grep -q "core-iscsi: channel 0: connection 2 (TSIH [0-9]*) added through portal 127.0.0.3:3999" \
    || fail "no kernel log line for the connection added"
[ "$(channel_stat 0 recoveries)" = 0 ] || fail "adding the connection cost a recovery"
fio_both "$(channel_disks 0)" 4m
conn_busy 3
stop_channel 0
rmdir "$tpg/np/127.0.0.3:3999"
ok "LIO: the dead portal answered again: its connection added to the running session in $took s (no recovery), all 3 carried verified I/O"

rmdir $ch

# ---- a portal that accepts and never answers: stop does not wait for the grow work's login ----
# A listener that takes connections and says nothing: a login through it ends at login_timeout
# (10 s). The start leaves that connection out; the grow work tries it again 5 s after the
# login and hangs in that login; a stop written meanwhile interrupts it (within 200 ms).
python3 -c '
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.4", 3999))
s.listen(8)
held = []
while True:
    held.append(s.accept()[0])
' &
mute_pid=$!
wait_for "ss -Hltn 'sport = :3999' | grep -q 127.0.0.4" 10 || fail "the mute listener did not start"
channel_create 0 $IQN "127.0.0.1:3260*2 127.0.0.4:3999" login_timeout=10
start_channel 0
[ "$(channel_stat 0 connections)" = 2 ] || fail "$(channel_stat 0 connections) connections with a mute portal"
[ -z "$(established 3999)" ] || fail "the start's login through the mute portal is still open: $(established 3999)"
wait_for "[ -n \"\$(established 3999)\" ]" 20 || fail "the grow work did not try the mute portal within 20 s"
t0=$((${EPOCHREALTIME/./} / 1000))
stop_channel 0
stop_ms=$(( ${EPOCHREALTIME/./} / 1000 - t0 ))
# A stop that waited for the login would end at its timeout, over 9 s after this stop began
# (the login began at most one poll of wait_for before); the stop's own work (two connections'
# logout, the disk's removal) took up to 6 s on a host running three VMs on two cores.
[ $stop_ms -lt 8000 ] || fail "stop took $stop_ms ms while the grow work was logging in (login_timeout 10 s)"
[ -z "$(established 3999)" ] || fail "the grow work's connection is open after stop: $(established 3999)"
rmdir $ch
kill $mute_pid; wait $mute_pid 2>/dev/null || true
ok "LIO: a mute portal left out at start; stop during the grow work's login to it returned in $stop_ms ms (login_timeout 10 s), nothing left open"

# ---- the target asks one connection to log out (Async Message event 1) ---------------------
# tests/e2e/hostile-target.py in mode conn-logout grants two connections and, at the first read
# of its 4 MiB window that comes on the added connection, holds that read (never answered) and
# asks the connection to log out within 4 s. The session must stop sending on it, let the
# rest of what is in flight on it end (half the target's time: 2 s), then log it out alone
# ("close the connection", reason 1, its CID) with nothing sent after the logout, requeue the
# held read (the target terminated it), all with no recovery while a verifying fio keeps both
# CPUs' queues busy; then the grow work adds a connection back through the portal (5 s after,
# plus a login). In modes conn-logout-refuse, -reject and -mute the target answers that logout
# "cleanup failed", rejects it or leaves it unanswered: the connection is then lost, and the
# session reinstated with the data intact. In mode
# conn-logout-lead the request comes on the leading connection, which is not logged out alone:
# the session is reinstated.
HT=$REPO/tests/e2e/hostile-target.py
HLOG=/tmp/conn-logout-target.log

# conn_logout_begin PORT MODE: the scripted target, channel 0 of two connections to it, the
# window written with /tmp/cl-pattern; sets d (the disk) and ht_pid.
conn_logout_begin() {
    rm -f $HLOG
    python3 "$HT" $1 $2 --log $HLOG &
    ht_pid=$!
    wait_for "(exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null" 20 || fail "$2: the target did not start"
    dmesg -C
    channel_create 0 iqn.2026-11.org.core-iscsi:hostile "127.0.0.1:$1*2"
    start_channel 0
    [ "$(channel_stat 0 connections)" = 2 ] || fail "$2: $(channel_stat 0 connections) connections, expected 2"
    d=$(channel_disks 0)
    head -c $((1 << 20)) /dev/urandom > /tmp/cl-pattern
    dd if=/tmp/cl-pattern of=/dev/$d bs=1M seek=4 count=1 oflag=direct status=none || fail "$2: write failed"
}

# conn_logout_trigger MODE [PID]: reads of the window from each CPU in turn until one goes on
# the added connection (a lone command from a CPU goes on its queue's own connection unless
# that one is busier); PID (the load) must still run when it does; the read, held by the
# target and requeued, returns the pattern.
conn_logout_trigger() {
    local i p
    for i in $(seq 1 60); do
        taskset -c $((i % 2)) dd if=/dev/$d of=/tmp/cl-back bs=64k skip=64 count=16 iflag=direct status=none &
        p=$!
        wait_for "grep -q 'TRIGGER $1' $HLOG || ! kill -0 $p 2>/dev/null" 60 || fail "$1: a read of the window hung"
        if grep -q "TRIGGER $1" $HLOG; then
            [ -z "${2:-}" ] || kill -0 $2 2>/dev/null \
                || fail "$1: the load ended before the logout request: the test proves less than it says"
            wait $p || fail "$1: the read that drew the logout request failed"
            break
        fi
        wait $p || fail "$1: a read of the window failed"
    done
    grep -q "TRIGGER $1" $HLOG || fail "$1: no read of the window came on the added connection"
    cmp -s /tmp/cl-pattern /tmp/cl-back || fail "$1: the read that drew the logout request returned other data"
}

# conn_logout_end PORT: stop leaves no connection; the target goes.
conn_logout_end() {
    stop_channel 0
    [ -z "$(established $1)" ] || fail "connections left after stop: $(established $1)"
    rmdir $ch
    kill $ht_pid; wait $ht_pid 2>/dev/null || true
}

conn_logout_begin 3310 conn-logout
# The load: 8-16 MiB, one job per CPU, written and verified four times over (it must outlast the
# reads that look for the trigger, one or two of them as a rule).
fio --name=cl --filename=/dev/$d --rw=randwrite --bs=16k --iodepth=8 --numjobs=2 \
    --cpus_allowed=0-1 --cpus_allowed_policy=split --offset=8m --offset_increment=4m --size=4m \
    --loops=4 --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output=/tmp/fio-cl.txt > /dev/null 2>&1 &
fio_pid=$!
conn_logout_trigger conn-logout $fio_pid
grep -q 'logout reason 1 cid 1' $HLOG \
    || { tail -20 $HLOG >&2; fail "conn-logout: the held read came back without connection 1 logging out alone"; }
# Within the 4 s the target gave (its log's clock: the request, then the logout).
t_req=$(grep -m1 "asked to log out" $HLOG | cut -d' ' -f1)
t_out=$(grep -m1 "logout reason 1 cid 1" $HLOG | cut -d' ' -f1)
lag=$(awk -v a="$t_req" -v b="$t_out" 'BEGIN { printf "%.1f", b - a }')
awk -v t="$lag" 'BEGIN { exit !(t >= 0 && t <= 4) }' || fail "conn-logout: the logout came $lag s after the request (the target gave 4 s)"
# The held read was requeued at the logout: one command left after the 2 s drain.
wait_for "dmesg | grep -q 'core-iscsi: channel 0: connection 1 logged out at the target.s request (1 commands requeued); 1 left'" 10 \
    || fail "conn-logout: no kernel log line for the logout with its one requeued command: $(dmesg | grep core-iscsi | tail -5)"
wait_for "grep -q 'conn [0-9]*: closed (logged out)' $HLOG" 10 || fail "conn-logout: the logged-out connection was not closed"
! grep -q "after the logout\|still open 3 s after the logout" $HLOG \
    || { grep "after the logout" $HLOG >&2; fail "conn-logout: a PDU followed the logout, or the connection stayed open"; }
wait $fio_pid || { cat /tmp/fio-cl.txt >&2; fail "conn-logout: fio verify failed across the logout"; }
grep -q "err= 0" /tmp/fio-cl.txt || fail "conn-logout: fio reported errors"
! grep -q "logout reason 0" $HLOG || fail "conn-logout: the session was logged out"
! dmesg | grep -q "core-iscsi: channel 0: connection lost" || fail "conn-logout: a connection was lost: $(dmesg | grep core-iscsi | tail -5)"
[ "$(channel_stat 0 recoveries)" = 0 ] || fail "conn-logout: the logout cost a recovery"
[ "$(cat $ch/state)" = running ] || fail "conn-logout: state '$(cat $ch/state)'"
# Added back by the grow work, with the CID the leaving one gave up.
wait_for "[ \"\$(channel_stat 0 connections)\" = 2 ]" 30 \
    || fail "conn-logout: not 2 connections again within 30 s: $(cat $ch/connections)"
dmesg | grep -q "core-iscsi: channel 0: connection 1 (TSIH [0-9]*) added through portal 127.0.0.1:3310" \
    || fail "conn-logout: no kernel log line for the connection added back"
[ "$(grep -c ' state up ' $ch/connections)" = 2 ] || fail "conn-logout: connections: $(cat $ch/connections)"
fio_both "$d" 4m
conn_busy 2
[ "$(channel_stat 0 recoveries)" = 0 ] || fail "conn-logout: a recovery after the connection came back"
conn_logout_end 3310
ok "the target asked connection 1 to log out: logged out alone (reason 1) under a verifying load, nothing sent after it, $lag s after the request (4 s given), the held read requeued and answered on connection 0, no recovery, added back by the grow work, both carried verified I/O"

# A logout refused ("cleanup failed"), rejected (Reject) or never answered: the connection is
# lost and the session reinstated, at once for the first two, after the logout's 10 s wait
# (LOGOUT_TIMEOUT_MS) for the third.
port=3311
for mode in conn-logout-refuse conn-logout-reject conn-logout-mute; do
    conn_logout_begin $port $mode
    conn_logout_trigger $mode
    # The target's own clock, from its answer (or silence) to the initiator's close.
    line=$(grep -m1 'logout refused\|logout rejected\|logout ignored' $HLOG) \
        || { tail -20 $HLOG >&2; fail "$mode: no logout of connection 1"; }
    what=$(grep -o 'logout [a-z]*' <<< "$line") cn=$(grep -o 'conn [0-9]*' <<< "$line")
    wait_for "grep -q '$cn: closed' $HLOG" 30 || fail "$mode: the connection was not closed within 30 s of the $what"
    dmesg | grep -q 'core-iscsi: channel 0: connection 1: logout not answered or refused' \
        || fail "$mode: no kernel log line for the failed logout: $(dmesg | grep core-iscsi | tail -5)"
    took=$(awk -v a="$(cut -d' ' -f1 <<< "$line")" -v b="$(grep -m1 "$cn: closed" $HLOG | cut -d' ' -f1)" \
        'BEGIN { printf "%d", (b - a) * 1000 }')
    case $mode in
        conn-logout-mute) [ $took -ge 9000 ] && [ $took -le 13000 ] \
            || fail "$mode: the unanswered logout was given up after $took ms, not 10 s" ;;
        *) [ $took -le 3000 ] || fail "$mode: the $what logout was given up after $took ms" ;;
    esac
    wait_for "[ \"\$(channel_stat 0 recoveries)\" -ge 1 ] && [ \"\$(get $ch/state)\" = running ] && [ \"\$(channel_stat 0 connections)\" = 2 ]" 30 \
        || fail "$mode: no recovery back to 2 connections (state '$(cat $ch/state)', recoveries $(channel_stat 0 recoveries))"
    dd if=/dev/$d of=/tmp/cl-back bs=64k skip=64 count=16 iflag=direct status=none || fail "$mode: a read after the recovery failed"
    cmp -s /tmp/cl-pattern /tmp/cl-back || fail "$mode: data differs after the recovery"
    conn_logout_end $port
    ok "$mode: $what by the target: the initiator closed the connection $took ms after (the target's clock), the session reinstated with 2 connections, data intact"
    port=$((port + 2))
done

conn_logout_begin 3312 conn-logout-lead
conn_logout_trigger conn-logout-lead
dmesg | grep -q "core-iscsi: channel 0: target requests logout (event 1) of connection 0" \
    || fail "conn-logout-lead: no kernel log line for the request: $(dmesg | grep core-iscsi | tail -5)"
wait_for "[ \"\$(channel_stat 0 recoveries)\" -ge 1 ] && [ \"\$(get $ch/state)\" = running ] && [ \"\$(channel_stat 0 connections)\" = 2 ]" 30 \
    || fail "conn-logout-lead: no recovery back to 2 connections (state '$(cat $ch/state)', recoveries $(channel_stat 0 recoveries))"
! grep -q "logout reason 1" $HLOG || fail "conn-logout-lead: the leading connection was logged out alone"
conn_logout_end 3312
ok "the target asked the leading connection to log out: the session was reinstated with 2 connections (the leading one is not logged out alone), the held read answered after it"

# ---- the howto's Example 2 layout through initiator-ctl; LIO's view; connections killed -------
echo 4 > "$tpg/param/MaxConnections"
# LIO 6.12 can oops in iscsit_stop_session when a reinstating login comes while it still closes
# the old session's connections (a use after free of its connection list under KASAN, seen
# once in CI at the kill below). DefaultTime2Wait 8 (the maximum of both offers is taken) makes
# the recovery wait 8 s, not 2, before it logs in again (RFC 7143 section 6.1).
echo 8 > "$tpg/param/DefaultTime2Wait"
# An explicit ACL for our initiator, so that LIO shows its session and connections (info).
acl=$tpg/acls/$INITIATOR_NAME
mkdir -p "$acl/lun_0"
ln -s "$tpg/lun/lun_0" "$acl/lun_0/lun_0"
CONF=$(mktemp -d); mkdir "$CONF/sysconfig"
echo "InitiatorName=$INITIATOR_NAME" > "$CONF/initiatorname.iscsi"
{
    echo "# The howto's Example 2: one channel, two portal lines of two connections each."
    echo "CHANNEL=\"1 2 lo 127.0.0.1 3260 0 AuthMethod=None $IQN\""
    echo "CHANNEL=\"1 2 lo 127.0.0.2 3260 0 AuthMethod=None $IQN\""
} > "$CONF/sysconfig/initiator"
: > "$CONF/sysconfig/initiator_auth"; chmod 600 "$CONF/sysconfig/initiator_auth"
: > "$CONF/sysconfig/iscsi_device_maps"
initiator-ctl --config-dir "$CONF" check-config | tee /tmp/mcs-check.txt
grep -q "4 connections" /tmp/mcs-check.txt || fail "check-config summary: $(cat /tmp/mcs-check.txt)"
initiator-ctl --config-dir "$CONF" start || fail "initiator-ctl start failed: $(dmesg | grep core-iscsi | tail -3)"
ch1=$ISCSI_ROOT/1
[ "$(cat $ch1/portals)" = "127.0.0.1:3260*2@$lo 127.0.0.2:3260*2@$lo" ] || fail "portals written: $(cat $ch1/portals)"
[ "$(channel_stat 1 connections)" = 4 ] || fail "Example 2: $(channel_stat 1 connections) connections"
[ "$(established 3260 | grep -c '%lo:')" = 4 ] || fail "not 4 connections bound to lo: $(established 3260)"
# The target's own view: one session of ours, four connections in it.
cat "$acl/info" > /tmp/lio-info.txt
[ "$(grep -c 'InitiatorName: ' /tmp/lio-info.txt)" = 1 ] || fail "LIO sees not one session: $(cat /tmp/lio-info.txt)"
[ "$(grep -c 'CID: ' /tmp/lio-info.txt)" = 4 ] || fail "LIO sees not 4 connections: $(cat /tmp/lio-info.txt)"
initiator-ctl --config-dir "$CONF" status > /tmp/mcs-status.txt
cat /tmp/mcs-status.txt
grep -q "connections: 4" /tmp/mcs-status.txt || fail "status: $(cat /tmp/mcs-status.txt)"
ok "Example 2 through initiator-ctl: 4 connections bound to lo; LIO's view: one session, CIDs $(grep -o 'CID: [0-9]*' /tmp/lio-info.txt | cut -d' ' -f2 | tr '\n' ' ')"
disk1=$(channel_disks 1)
# Task management with four connections: a LUN reset is answered and costs nothing. (Not a
# target reset: LIO refuses it by default, the module then reinstates the session, and LIO 6.12
# can crash in iscsit_stop_session tearing down the old session's four connections, a
# use after free seen once under KASAN. istgt closes the other connections on a LUN reset.)
rec=$(channel_stat 1 recoveries)
sg_reset -d /dev/$disk1 || fail "LUN reset failed"
[ "$(channel_stat 1 recoveries)" = "$rec" ] || fail "a LUN reset cost a recovery: $(dmesg | grep core-iscsi | tail -3)"
[ "$(channel_stat 1 connections)" = 4 ] || fail "after the LUN reset: $(channel_stat 1 connections) connections"
ok "LUN reset answered with four connections, no recovery"
# Two connections killed under load (socket destroy): the session is lost as a whole (ERL 0),
# reinstated with all four, and fio's verify passes.
grep -qx "DefaultTime2Wait=8" $ch1/negotiated || fail "DefaultTime2Wait: $(grep DefaultTime2Wait $ch1/negotiated)"
kill_under_load 1 "$disk1" 32m 4 dst 127.0.0.2 dport = :3260
ok "two connections killed under load (ss -K): the session recovered with 4, data verified"
initiator-ctl --config-dir "$CONF" stop || fail "initiator-ctl stop failed"
[ -z "$(established 3260)" ] || fail "connections left after stop: $(established 3260)"
ok "Example 2: stop left no connection"
[ ! -e $ch1 ] || rmdir $ch1

# ---- istgt: four connections, mutual CHAP, digests; a recovery brings all four back --------
istgt_target mcs 3262 "Mutual alice alice-secret-0123 target1 target-secret-456" 64
channel_create 0 iqn.2007-09.jp.ne.peach.istgt:mcs "127.0.0.1:3262*4" \
    chap_user=alice chap_secret=alice-secret-0123 \
    chap_mutual_user=target1 chap_mutual_secret=target-secret-456 \
    "params=HeaderDigest=CRC32C;DataDigest=CRC32C" nopout_interval=1 nopout_timeout=3 \
    replacement_timeout=60
start_channel 0
[ "$(channel_stat 0 connections)" = 4 ] || fail "istgt: $(channel_stat 0 connections) connections, expected 4"
[ "$(established 3262 | wc -l)" = 4 ] || fail "istgt: $(established 3262 | wc -l) TCP connections"
grep -qx "HeaderDigest=CRC32C" $ch/negotiated && grep -qx "DataDigest=CRC32C" $ch/negotiated \
    || fail "istgt: digests not negotiated: $(cat $ch/negotiated)"
# The target's own view: one session of ours (one ISID and TSIH), connections 0-3 in it.
istgt_info 3262 > /tmp/istgt-info.txt
logins=$(grep 'Login from' /tmp/istgt-info.txt) || fail "istgt shows no login: $(cat /tmp/istgt-info.txt)"
[ "$(wc -l <<< "$logins")" = 4 ] || fail "istgt shows not 4 connections: $logins"
[ "$(grep -o 'ISID=[0-9a-f]*, TSIH=[0-9]*' <<< "$logins" | sort -u | wc -l)" = 1 ] \
    || fail "istgt shows more than one session: $logins"
[ "$(grep -o 'CID=[0-9]*' <<< "$logins" | sort | tr '\n' ' ')" = "CID=0 CID=1 CID=2 CID=3 " ] \
    || fail "istgt shows other CIDs than 0-3: $logins"
disk=$(channel_disks 0)
[ "$(wc -w <<< "$disk")" = 1 ] || fail "istgt: disks '$disk', expected one (one LUN)"
fio_both $disk 8m
conn_busy 4
for i in 0 1 2 3; do
    [ "$(channel_stat 0 conn$i.digest_errors)" = 0 ] || fail "conn$i: digest errors"
done
ok "istgt: 4 connections with mutual CHAP and header and data digests, data verified on each; istgt's view: one session, CIDs 0-3"

# One of the four connections killed under load: the session recovers with all four.
local_addr=$(established 3262 | head -1 | cut -d' ' -f1)
kill_under_load 0 "$disk" 32m 4 dst 127.0.0.1 dport = :3262 sport = :${local_addr##*:}
ok "istgt: one connection killed under load (ss -K): the session recovered with 4, data verified"

# Keepalive per connection: idle for a few NOP intervals (1 s), each connection pings its own.
nap 4
for i in 0 1 2 3; do
    [ "$(channel_stat 0 conn$i.nop_pings)" -ge 1 ] || fail "conn$i sent no ping while idle"
done
# Pause and resume with four connections: the I/O is held, all four come back.
echo pause > $ch/control || fail "pause failed"
[ "$(cat $ch/state)" = paused ] || fail "state after pause: $(cat $ch/state)"
[ -z "$(established 3262)" ] || fail "connections left while paused: $(established 3262)"
echo start > $ch/control || fail "resume failed: $(cat $ch/state)"
[ "$(channel_stat 0 connections)" = 4 ] || fail "after resume: $(channel_stat 0 connections) connections"
fio_verify "$disk" 4m
ok "istgt: every connection pings on its own; pause closed all four, resume brought four back, data verified"

pkill -9 -x istgt
wait_for "[ \"\$(get $ch/state)\" = recovering ]" 20 || fail "istgt killed: state $(cat $ch/state)"
istgt -D -c /tmp/istgt-3262/istgt.conf > /tmp/istgt-3262/log2 2>&1 &
wait_for "[ \"\$(get $ch/state)\" = running ]" 60 || fail "no recovery: state $(cat $ch/state)"
[ "$(channel_stat 0 connections)" = 4 ] || fail "after recovery: $(channel_stat 0 connections) connections"
fio_both $disk 8m
ok "istgt: killed and restarted, the session recovered with 4 connections, data verified"
stop_channel 0
[ -z "$(established 3262)" ] || fail "connections left after stop: $(established 3262)"
rmdir $ch
pkill -x istgt || true

# ---- two devices: veth pairs into a network namespace, the target behind both ---------------
ip netns add mcs-tgt
for i in 1 2; do
    ip link add mcsh$i type veth peer name mcst$i
    ip link set mcst$i netns mcs-tgt
    ip addr add 10.99.$i.1/24 dev mcsh$i
    ip link set mcsh$i up
    ip netns exec mcs-tgt ip addr add 10.99.$i.2/24 dev mcst$i
    ip netns exec mcs-tgt ip link set mcst$i up
done
ip netns exec mcs-tgt ip link set lo up
# istgt_target's configuration, moved into the namespace with a portal on each device.
istgt_target veth 3265 None 32
pkill -x istgt; wait_for "! pgrep -x istgt > /dev/null" 10 || fail "istgt did not stop"
sed -i -e 's|^  Portal DA1 .*|  Portal DA1 10.99.1.2:3265\n  Portal DA2 10.99.2.2:3265|' \
    -e '/^\[InitiatorGroup1\]/,/^\[/ s|^  Netmask .*|  Netmask 10.99.0.0/16|' /tmp/istgt-3265/istgt.conf
ip netns exec mcs-tgt istgt -D -c /tmp/istgt-3265/istgt.conf > /tmp/istgt-3265/log.ns 2>&1 &
wait_for "(exec 3<>/dev/tcp/10.99.2.2/3265) 2>/dev/null" 10 || fail "istgt in the namespace did not start: $(cat /tmp/istgt-3265/log.ns)"
h1=$(cat /sys/class/net/mcsh1/ifindex); h2=$(cat /sys/class/net/mcsh2/ifindex)
channel_create 0 iqn.2007-09.jp.ne.peach.istgt:veth "10.99.1.2:3265*2@$h1 10.99.2.2:3265*2@$h2"
start_channel 0
[ "$(channel_stat 0 connections)" = 4 ] || fail "veth: $(channel_stat 0 connections) connections"
conns=$(established 3265)
[ "$(grep -c '%mcsh1:[0-9]* 10.99.1.2:3265$' <<< "$conns")" = 2 ] || fail "not two connections on mcsh1: $conns"
[ "$(grep -c '%mcsh2:[0-9]* 10.99.2.2:3265$' <<< "$conns")" = 2 ] || fail "not two connections on mcsh2: $conns"
tx1=$(cat /sys/class/net/mcsh1/statistics/tx_bytes); tx2=$(cat /sys/class/net/mcsh2/statistics/tx_bytes)
fio_both "$(channel_disks 0)" 8m
conn_busy 4
d1=$(( $(cat /sys/class/net/mcsh1/statistics/tx_bytes) - tx1 )); d2=$(( $(cat /sys/class/net/mcsh2/statistics/tx_bytes) - tx2 ))
[ $d1 -gt $((4 << 20)) ] && [ $d2 -gt $((4 << 20)) ] || fail "the writes did not leave through both devices: mcsh1 $d1, mcsh2 $d2 bytes"
ok "two devices: 2 connections bound to each veth, $((d1 >> 20)) and $((d2 >> 20)) MiB sent through them, data verified"
stop_channel 0
rmdir $ch
pkill -x istgt || true
ip netns del mcs-tgt

# ---- tgt grants one connection --------------------------------------------------------------
tgt_target iqn.2026-11.org.core-iscsi:mcs-tgt 3263 32
channel_create 0 iqn.2026-11.org.core-iscsi:mcs-tgt "127.0.0.1:3263*2"
start_channel 0
[ "$(channel_stat 0 connections)" = 1 ] || fail "tgt: $(channel_stat 0 connections) connections, expected the 1 it grants"
dmesg | grep -q "core-iscsi: channel 0: the target grants 1 of 2 connections" \
    || fail "no kernel log line for the connections the target did not grant"
# The target's own view: one I_T nexus (session) of ours, one connection in it.
tgtadm -C $TGT_CP --lld iscsi --op show --mode target > /tmp/tgt-show.txt
[ "$(grep -c 'I_T nexus: ' /tmp/tgt-show.txt)" = 1 ] || fail "tgt shows not one session: $(cat /tmp/tgt-show.txt)"
[ "$(grep -c 'Connection: ' /tmp/tgt-show.txt)" = 1 ] || fail "tgt shows not one connection: $(cat /tmp/tgt-show.txt)"
disk=$(channel_disks 0)
[ "$(wc -w <<< "$disk")" = 1 ] || fail "tgt: disks '$disk', expected one (one LUN)"
fio_verify "$disk" 4m
ok "tgt: one connection of two configured (it grants MaxConnections=1), said in the kernel log; tgt's view: one session, one connection; data verified"
kill_under_load 0 "$disk" 16m 1 dst 127.0.0.1 dport = :3263
ok "tgt: its connection killed under load (ss -K): the session recovered with 1, data verified"
stop_channel 0
[ -z "$(established 3263)" ] || fail "connections left after stop: $(established 3263)"
rmdir $ch

unload_module
ok "module unloaded"
