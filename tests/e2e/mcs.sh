#!/bin/bash
# Several connections per session (MC/S, the howto's "trunking"): the howto's Example 2 shape
# (two portal lines of two connections each, the second bound to a network device) against LIO,
# four connections with mutual CHAP and digests against istgt, the fallback to what the target
# grants (LIO's default MaxConnections=1, tgt), I/O carried by every connection, a recovery that
# brings every connection back, and stop leaving no connection behind.
# vm-kernel: debug
# vm-args: --timeout 1200
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
disk=$(channel_disks 0)
check_disks 0 LIO-ORG 128
# min(4 connections, 2 CPUs) hardware queues, each served by two of the connections.
[ "$(ls /sys/block/$disk/mq | wc -l)" = 2 ] || fail "$disk: $(ls /sys/block/$disk/mq | wc -l) hardware queues, expected 2"
fio_both $disk 16m
conn_busy 4
fs_roundtrip $disk
ok "LIO: data verified, every connection carried I/O ($(for i in 0 1 2 3; do echo -n "conn$i $(channel_stat 0 conn$i.pdus_rx) "; done)PDUs received)"
stop_channel 0
[ -z "$(established 3260)" ] || fail "connections left after stop: $(established 3260)"
ok "LIO: stop closed every connection"

# ---- LIO's default MaxConnections=1: the session runs on what it grants ---------------------
echo 1 > "$tpg/param/MaxConnections"
echo "127.0.0.1:3260*2" > $ch/portals
start_channel 0
[ "$(channel_stat 0 connections)" = 1 ] || fail "$(channel_stat 0 connections) connections with MaxConnections=1"
[ "$(channel_stat 0 connections_configured)" = 2 ] || fail "connections_configured $(channel_stat 0 connections_configured)"
dmesg | grep -q "core-iscsi: channel 0: the target grants 1 of 2 connections" \
    || fail "no kernel log line for the connections the target did not grant"
fio_verify $disk 4m
stop_channel 0
ok "LIO with MaxConnections=1: one connection of two configured, said so, data verified"
rmdir $ch

# ---- istgt: four connections, mutual CHAP, digests; a recovery brings all four back --------
istgt_target mcs 3262 "Mutual alice alice-secret-0123 target1 target-secret-456" 32
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
disk=$(channel_disks 0)
fio_both $disk 8m
conn_busy 4
for i in 0 1 2 3; do
    [ "$(channel_stat 0 conn$i.digest_errors)" = 0 ] || fail "conn$i: digest errors"
done
ok "istgt: 4 connections with mutual CHAP and header and data digests, data verified on each"

pkill -9 -x istgt
wait_for "grep -qx recovering $ch/state" 20 || fail "istgt killed: state $(cat $ch/state)"
istgt -D -c /tmp/istgt-3262/istgt.conf > /tmp/istgt-3262/log2 2>&1 &
wait_for "grep -qx running $ch/state" 60 || fail "no recovery: state $(cat $ch/state)"
[ "$(channel_stat 0 connections)" = 4 ] || fail "after recovery: $(channel_stat 0 connections) connections"
fio_both $disk 8m
ok "istgt: killed and restarted, the session recovered with 4 connections, data verified"
stop_channel 0
[ -z "$(established 3262)" ] || fail "connections left after stop: $(established 3262)"
rmdir $ch
pkill -x istgt || true

# ---- tgt grants one connection --------------------------------------------------------------
tgt_target iqn.2026-11.org.core-iscsi:mcs-tgt 3263 16
channel_create 0 iqn.2026-11.org.core-iscsi:mcs-tgt "127.0.0.1:3263*2"
start_channel 0
[ "$(channel_stat 0 connections)" = 1 ] || fail "tgt: $(channel_stat 0 connections) connections, expected the 1 it grants"
fio_verify "$(channel_disks 0)" 4m
stop_channel 0
rmdir $ch
ok "tgt: one connection of two configured (it grants MaxConnections=1), data verified"

unload_module
ok "module unloaded"
