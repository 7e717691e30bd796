#!/bin/bash
# The benchmark's guest side (run by tests/bench/run through tests/vm/run; not part of make check).
#
# One LIO iSCSI target with an iblock LUN on the ramdisk /dev/ram0; the same fio jobs
# (tests/bench/jobs.fio) on:
#   ramdisk     /dev/ram1, a ramdisk of the same size, directly: the ceiling
#   core-iscsi  the LUN through this module
#   open-iscsi  the LUN through open-iscsi's iscsi_tcp (iscsid + iscsiadm in the guest)
# in BENCH_ROUNDS rounds, each job on the three devices back to back, the two initiators'
# order alternating so that neither warm-up nor the host's load favours one. fio's JSON results,
# the busy CPU time over each fio run, the negotiated parameters and the module's counters go
# to $VM_ARTIFACTS; tests/bench/report.py turns them into the table.
#
# Environment: BENCH_ROUNDS (default 3), BENCH_RUNTIME seconds per job (default 10),
# BENCH_SIDES (default "ramdisk core-iscsi open-iscsi"), BENCH_JOBS (default: every job).
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"

ROUNDS=${BENCH_ROUNDS:-3}
export RUNTIME=${BENCH_RUNTIME:-10}
SIDES=${BENCH_SIDES:-ramdisk core-iscsi open-iscsi}
OUT=${VM_ARTIFACTS:?}/bench
JOBS=$REPO/tests/bench/jobs.fio
IQN=iqn.2003-01.org.linux-iscsi.vm:bench
PORT=3260
KDIR=${CORE_ISCSI_KDIR:?}

# The same session parameters on every side: the target offers them, both initiators ask for them.
MRDSL=262144 FBL=262144 MBL=1048576
QD=32        # our queue_depth (host can_queue = LUN queue depth); open-iscsi's node.session.queue_depth
CMDS_MAX=128 # open-iscsi's node.session.cmds_max (its host can_queue; the LUN's 32 binds first)
PARAMS="MaxRecvDataSegmentLength=$MRDSL;FirstBurstLength=$FBL;MaxBurstLength=$MBL;ImmediateData=Yes;InitialR2T=No"

mkdir -p "$OUT"
log() { echo "bench: $*"; }

ramsize=$(( $(cat /sys/block/ram0/size) * 512 ))
[ "$(cat /sys/block/ram1/size)" = "$(cat /sys/block/ram0/size)" ] || fail "ram0 and ram1 differ in size"
log "ramdisks: $((ramsize >> 20)) MiB; $(nproc) CPU(s) online; $(grep MemTotal /proc/meminfo | tr -s ' ')"
echo "$(nproc)" > "$OUT/cpus"
# Fill both ramdisks first: brd answers reads of never-written sectors without touching memory.
for r in ram0 ram1; do
    dd if=/dev/zero of=/dev/$r bs=1M count=$((ramsize >> 20)) oflag=direct status=none || fail "filling /dev/$r failed"
done

# ---- the target: LIO, iblock on /dev/ram0 --------------------------------------------------
dev=$CFS/target/core/iblock_0/ram0
tpg=$CFS/target/iscsi/$IQN/tpgt_1
mkdir -p "$dev"
echo "udev_path=/dev/ram0" > "$dev/control"
echo 1 > "$dev/enable" || fail "LIO: cannot enable iblock backstore on /dev/ram0"
mkdir -p "$tpg/lun/lun_0"
ln -s "$dev" "$tpg/lun/lun_0/port_0"
mkdir -p "$tpg/np/127.0.0.1:$PORT"
echo 1 > "$tpg/attrib/generate_node_acls"
echo 1 > "$tpg/attrib/cache_dynamic_acls"
echo 0 > "$tpg/attrib/demo_mode_write_protect"
echo 0 > "$tpg/attrib/authentication"
echo 128 > "$tpg/attrib/default_cmdsn_depth"
echo $MRDSL > "$tpg/param/MaxRecvDataSegmentLength"
echo $MRDSL > "$tpg/param/MaxXmitDataSegmentLength" 2>/dev/null || true
echo $FBL > "$tpg/param/FirstBurstLength"
echo $MBL > "$tpg/param/MaxBurstLength"
echo Yes > "$tpg/param/ImmediateData"
echo No > "$tpg/param/InitialR2T"
echo 1 > "$tpg/enable"
# LIO pins each connection's receive and transmit threads to one CPU, chosen by a connection
# number (modulo the CPUs allowed) that depends on the logins before it; the placement is
# logged below. BENCH_TARGET_CPUS (a CPU list) restricts every connection to those CPUs, and
# BENCH_FIO_CPUS pins fio.
if [ -n "${BENCH_TARGET_CPUS:-}" ]; then
    echo "$BENCH_TARGET_CPUS" > $CFS/target/iscsi/cpus_allowed_list \
        || fail "LIO: cannot set cpus_allowed_list to $BENCH_TARGET_CPUS"
fi
log "LIO target $IQN on 127.0.0.1:$PORT, iblock /dev/ram0, threads on CPUs $(cat $CFS/target/iscsi/cpus_allowed_list)"

# ---- helpers -------------------------------------------------------------------------------
# tune DEV: the same block-layer settings on every device under test.
tune() {
    local q=/sys/block/$1/queue
    if [ -w $q/scheduler ]; then echo none > $q/scheduler; fi
    echo "$1: scheduler=$(cat $q/scheduler 2>/dev/null) max_sectors_kb=$(cat $q/max_sectors_kb)" \
        "nr_requests=$(cat $q/nr_requests 2>/dev/null) queue_depth=$(cat /sys/block/$1/device/queue_depth 2>/dev/null || echo -)"
}

# cpu_sample: the clock (ns) and the busy jiffies (USER_HZ) of all CPUs together: user, nice,
# system, irq, softirq and steal (/proc/stat's first line; guest time is within user and nice),
# then idle + iowait.
cpu_sample() {
    echo "$(date +%s%N) $(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat)"
}

# run_fio SIDE ROUND DEV JOB: one job of jobs.fio on /dev/DEV. Next to fio's JSON: the network
# stack's counters (.nstat) and the whole guest's busy CPU time over the fio run (.cpu), which
# report.py turns into CPU µs per I/O.
run_fio() {
    local side=$1 round=$2 dev=$3 job=$4 f=$OUT/r$2-$1-$4.json t0 b0 i0 t1 b1 i1 tck
    nstat -n
    read -r t0 b0 i0 < <(cpu_sample)
    DEV=/dev/$dev ${BENCH_FIO_CPUS:+taskset -c "$BENCH_FIO_CPUS"} fio --eta=never --output-format=json --output="$f" --section="$job" "$JOBS" \
        || fail "fio $job on $side (/dev/$dev) failed: see $f"
    read -r t1 b1 i1 < <(cpu_sample)
    # The network stack's counters over the run (both ends: target and initiator share lo).
    nstat > "${f%.json}.nstat"
    tck=$(getconf CLK_TCK)
    printf 'clk_tck %s\nwall_ns %s\nbusy_ticks %s\nidle_ticks %s\ncpus %s\n' \
        "$tck" $((t1 - t0)) $((b1 - b0)) $((i1 - i0)) "$(nproc)" > "${f%.json}.cpu"
    # CPU µs per I/O as report.py computes it: the busy time scaled to fio's measured window
    # (job_runtime: without the ramp and fio's start and exit) over the I/Os of that window.
    jq -r --argjson busy_us $(((b1 - b0) * 1000000 / tck)) --argjson wall_ns $((t1 - t0)) \
        '.jobs[] | "  r'"$round"' \(.jobname) '"$side"': " +
        (if .read.io_bytes > 0 then .read else .write end |
         "\(.bw_bytes / 1e6 | floor) MB/s \(.iops | floor) IOPS lat \(.lat_ns.mean / 1e3 | floor) us") +
        ((.read.total_ios + .write.total_ios) as $n |
         if $n > 0 and .job_runtime > 0 then
             " cpu \($busy_us * .job_runtime * 1e6 / $wall_ns / $n | floor) us/IO" else "" end)' "$f"
}

# core_iscsi_login: our channel 0, logged in; prints its disk.
core_iscsi_login() {
    local d
    module_loaded || load_module
    channel_create 0 $IQN 127.0.0.1:$PORT "params=$PARAMS" queue_depth=${BENCH_OUR_QD:-$QD}
    echo start > $ISCSI_ROOT/0/control || { cat $ISCSI_ROOT/0/state; dmesg | tail -20; fail "core-iscsi: start failed"; } >&2
    d=$(channel_disks 0 | head -1)
    [ -n "$d" ] || fail "core-iscsi: no disk after start"
    wait_for "[ -b /dev/$d ]" 10 || fail "core-iscsi: no /dev/$d"
    cat $ISCSI_ROOT/0/negotiated > "$OUT/core-iscsi.negotiated"
    echo "$d"
}

core_iscsi_logout() {
    echo stop > $ISCSI_ROOT/0/control
    rmdir $ISCSI_ROOT/0
}

open_iscsi_setup() {
    local m
    for m in scsi_transport_iscsi libiscsi libiscsi_tcp iscsi_tcp; do
        grep -q "^$m " /proc/modules || insmod "$KDIR/drivers/scsi/$m.ko" || fail "insmod $m.ko failed"
    done
    rm -rf /etc/iscsi/nodes /etc/iscsi/send_targets /etc/iscsi/ifaces
    mkdir -p /etc/iscsi /run/lock/iscsi
    echo "InitiatorName=iqn.2026-11.org.core-iscsi:bench-open-iscsi" > /etc/iscsi/initiatorname.iscsi
    cat > /etc/iscsi/iscsid.conf <<EOF
iscsid.startup = /bin/true
node.startup = manual
node.session.timeo.replacement_timeout = 120
node.conn[0].timeo.login_timeout = 15
node.conn[0].timeo.logout_timeout = 15
node.conn[0].timeo.noop_out_interval = 5
node.conn[0].timeo.noop_out_timeout = 10
node.session.cmds_max = $CMDS_MAX
node.session.queue_depth = $QD
node.session.xmit_thread_priority = -20
node.session.iscsi.InitialR2T = No
node.session.iscsi.ImmediateData = Yes
node.session.iscsi.FirstBurstLength = $FBL
node.session.iscsi.MaxBurstLength = $MBL
node.conn[0].iscsi.MaxRecvDataSegmentLength = $MRDSL
node.conn[0].iscsi.MaxXmitDataSegmentLength = 0
node.conn[0].iscsi.HeaderDigest = None
node.conn[0].iscsi.DataDigest = None
node.session.scan = auto
EOF
    iscsid -f > "$OUT/iscsid.log" 2>&1 &
    # iscsiadm fails until iscsid listens on its socket.
    wait_for "iscsiadm -m discovery -t st -p 127.0.0.1:$PORT >/dev/null 2>&1" 15 \
        || { cat "$OUT/iscsid.log"; fail "open-iscsi: discovery failed"; } >&2
}

# open_iscsi_login: logged in through iscsi_tcp; prints its disk.
open_iscsi_login() {
    local d
    [ -e /etc/iscsi/nodes ] || open_iscsi_setup
    iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT --login >&2 || fail "open-iscsi: login failed"
    wait_for "iscsiadm -m session -P 3 2>/dev/null | grep -q 'Attached scsi disk'" 20 || fail "open-iscsi: no disk"
    d=$(iscsiadm -m session -P 3 | sed -n 's/.*Attached scsi disk \([a-z]*\).*/\1/p' | head -1)
    wait_for "[ -b /dev/$d ]" 10 || fail "open-iscsi: no /dev/$d"
    iscsiadm -m session -P 2 > "$OUT/open-iscsi.negotiated"
    echo "$d"
}

open_iscsi_logout() {
    iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT --logout >&2 || fail "open-iscsi: logout failed"
}

# ---- the rounds ------------------------------------------------------------------------------
# (tests/bench/profile.sh sources this file for the setup and helpers only.)
[ "${BENCH_SETUP_ONLY:-0}" = 1 ] && return 0

# Both initiators stay logged in to the same LUN for the whole run (only one does I/O at a
# time), so that every job runs on the three devices back to back: a host whose load drifts
# (TCG shares the host's CPUs) then shifts all three alike. The order of the two initiators
# alternates from job to job and from round to round.
declare -A DEVS=([ramdisk]=ram1)
case " $SIDES " in *" core-iscsi "*) DEVS[core-iscsi]=$(core_iscsi_login) ;; esac
case " $SIDES " in *" open-iscsi "*) DEVS[open-iscsi]=$(open_iscsi_login) ;; esac
for side in "${!DEVS[@]}"; do
    tune "${DEVS[$side]}" | sed "s/^/$side: /" | tee -a "$OUT/devices"
done
# Where the target's threads run (one pair per initiator, in login order).
ps -eLo pid,psr,comm | awk '$3 ~ /^iscsi_t[rt]x/' | while read -r pid psr comm; do
    echo "target thread $comm (pid $pid): CPUs $(taskset -cp "$pid" | sed 's/.*: //')"
done | tee -a "$OUT/devices"
jobs=${BENCH_JOBS:-$(sed -n 's/^\[\(.*\)\]$/\1/p' "$JOBS" | grep -v '^global$')}
start=$SECONDS
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    j=0
    for job in $jobs; do
        j=$((j + 1))
        # Job index plus round: each job swaps its order every round, whatever the job count.
        if [ $(((j + round) % 2)) = 0 ]; then order="ramdisk core-iscsi open-iscsi"
        else order="ramdisk open-iscsi core-iscsi"; fi
        for side in $order; do
            [ -n "${DEVS[$side]:-}" ] || continue
            case " $SIDES " in *" $side "*) ;; *) continue ;; esac
            run_fio "$side" "$round" "${DEVS[$side]}" "$job"
        done
    done
    if [ -n "${DEVS[core-iscsi]:-}" ]; then cat $ISCSI_ROOT/0/stats > "$OUT/r$round-core-iscsi.stats"; fi
    log "round $round done at $((SECONDS - start)) s"
done
log "all rounds done in $((SECONDS - start)) s"
if [ -n "${DEVS[core-iscsi]:-}" ]; then cat $ISCSI_ROOT/0/stats; core_iscsi_logout; fi
if [ -n "${DEVS[open-iscsi]:-}" ]; then open_iscsi_logout; fi
uname -r > "$OUT/kernel"
dmesg > "$OUT/dmesg.txt"
if module_loaded; then unload_module; fi
ok "benchmark finished"
