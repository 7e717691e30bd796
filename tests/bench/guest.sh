#!/bin/bash
# The benchmark's guest side (run by tests/bench/run through tests/vm/run; not part of make check).
#
# One LIO iSCSI target with an iblock LUN on the ramdisk /dev/ram0; the same fio jobs
# (tests/bench/jobs.fio) on:
#   ramdisk        /dev/ram1, a ramdisk of the same size, directly: the ceiling
#   core-iscsi     the LUN through this module (channel 0, one connection)
#   open-iscsi     the LUN through open-iscsi's iscsi_tcp (iscsid + iscsiadm in the guest)
#   core-iscsi-2c  the LUN through this module, one session of 2 connections (channel 1, MC/S;
#                  LIO's MaxConnections raised to 2)
#   open-iscsi-mp  the LUN through two open-iscsi sessions (ifaces mp1 and mp2) under
#                  dm-multipath, multibus, round-robin (multipathd in the guest; fio on
#                  /dev/mapper/WWID)
# in BENCH_ROUNDS rounds, each job on every device back to back, the initiators' order
# reversed from job to job and round to round so that neither warm-up nor the host's load
# favours one. fio's JSON results, the busy CPU time over each fio run, the negotiated
# parameters and the module's counters go to $VM_ARTIFACTS; tests/bench/report.py turns them
# into the table.
#
# Environment: BENCH_ROUNDS (default 3), BENCH_RUNTIME seconds per job (default 10),
# BENCH_SIDES (default "ramdisk core-iscsi open-iscsi"; all five:
# "ramdisk core-iscsi core-iscsi-2c open-iscsi open-iscsi-mp"), BENCH_JOBS (default: every job).
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
ALL_SIDES="ramdisk core-iscsi open-iscsi core-iscsi-2c open-iscsi-mp"
MP_IFACES="mp1 mp2"            # open-iscsi-mp: one session through each of these ifaces
MP_SELECTOR="round-robin 0"    # its dm-multipath path selector (the test kernel's only one)
UDEVD=/lib/systemd/systemd-udevd

mkdir -p "$OUT"
log() { echo "bench: $*"; }
has_side() { case " $SIDES " in *" $1 "*) return 0 ;; esac; return 1; }
for side in $SIDES; do
    case " $ALL_SIDES " in *" $side "*) ;; *) fail "BENCH_SIDES: unknown side '$side' (sides: $ALL_SIDES)" ;; esac
done

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
# BENCH_LIO_SUBMIT_TYPE, if set, goes to the backstore's submit_type (0: the fabric's default,
# for iSCSI 1: each command submitted in the receive thread that sequenced it, under the
# session's cmdsn_mutex; 2: queued to a per-CPU work): a diagnostic of LIO's serialisation,
# applied to every side alike, not a setting the comparison rests on.
if [ -n "${BENCH_LIO_SUBMIT_TYPE:-}" ]; then
    echo "$BENCH_LIO_SUBMIT_TYPE" > "$dev/attrib/submit_type" \
        || fail "LIO: cannot set submit_type to $BENCH_LIO_SUBMIT_TYPE"
    log "LIO backstore submit_type $(cat "$dev/attrib/submit_type")"
fi
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
# core-iscsi-2c's session has 2 connections; LIO grants 1 by default. The other sessions ask
# for 1 and get 1 either way.
if has_side core-iscsi-2c; then
    echo 2 > "$tpg/param/MaxConnections" || fail "LIO: cannot set MaxConnections to 2"
fi
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
# (The *_login helpers run in command substitutions, where bash turns errexit off: every step
# that can fail says so itself.)

# sysname DEV: the kernel's name of the block device /dev/DEV (dm-3 for mapper/NAME).
sysname() {
    local mm
    mm=$(stat -L -c '%t:%T' "/dev/$1") || return 1
    basename "$(readlink -f "/sys/dev/block/$((16#${mm%:*})):$((16#${mm#*:}))")"
}

# tune DEV: the same block-layer settings on every device under test (and on the paths under
# a dm-multipath device); BENCH_RQ_AFFINITY, if set, goes to each one's rq_affinity.
tune() {
    local s q p
    s=$(sysname "$1") || fail "no block device /dev/$1"
    q=/sys/block/$s/queue
    if [ -w $q/scheduler ]; then echo none > $q/scheduler; fi
    if [ -n "${BENCH_RQ_AFFINITY:-}" ] && [ -w $q/rq_affinity ]; then echo "$BENCH_RQ_AFFINITY" > $q/rq_affinity; fi
    echo "$1: scheduler=$(cat $q/scheduler 2>/dev/null) max_sectors_kb=$(cat $q/max_sectors_kb) rq_affinity=$(cat $q/rq_affinity 2>/dev/null)" \
        "nr_requests=$(cat $q/nr_requests 2>/dev/null) queue_depth=$(cat /sys/block/$s/device/queue_depth 2>/dev/null || echo -)"
    for p in /sys/block/$s/slaves/*; do
        if [ -e "$p" ]; then tune "$(basename "$p")" | sed "s/^/  path /"; fi
    done
    return 0
}

# cpu_sample: the clock (ns) and the busy jiffies (USER_HZ) of all CPUs together: user, nice,
# system, irq, softirq and steal (/proc/stat's first line; guest time is within user and nice),
# then idle + iowait.
cpu_sample() {
    echo "$(date +%s%N) $(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit }' /proc/stat)"
}

# host_cpu_sample: the host's clock (ns), QEMU's CPU time on the host (ticks) and the host's
# CLK_TCK, from the file tests/vm/run keeps current when VM_HOST_CPU=1 (tests/bench/run sets
# it); nothing without it (the callers' reads then fail: `|| true`). A line caught while the
# host rewrites it is read again.
host_cpu_sample() {
    local f=/run/vmjob/host-cpu line i
    [ -e $f ] || return 0
    for i in 1 2 3 4 5; do
        read -r line < $f || true
        if [[ $line =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then echo "$line"; return 0; fi
        sleep 0.01
    done
}

# thread_ticks: every thread's CPU time so far, as "tid ticks group ns": utime + stime in clock
# ticks (the kernel's tick accounting, which charges an interrupt or softirq to the thread it
# interrupted: a sample per tick) and the scheduler's exact runtime in ns
# (se.sum_exec_runtime, CONFIG_SCHED_DEBUG; the same charging, measured rather than sampled),
# and its group, its name without a CPU or instance number. Kworkers are one group: the
# workqueue in a kworker's name is only the one it is running at that moment, if any.
thread_ticks() {
    # A thread that exits between the glob and its read makes cat fail (errexit, pipefail).
    { awk 'FNR == 1 { n = split(FILENAME, p, "/"); tid = p[n - 1] }
           $1 == "se.sum_exec_runtime" { split($3, v, "."); printf "rt %s %.0f\n", tid, v[1] * 1000000 + substr(v[2] "000000", 1, 6) }' \
          /proc/[0-9]*/task/[0-9]*/sched 2>/dev/null || true
      cat /proc/[0-9]*/task/[0-9]*/stat 2>/dev/null || true; } | awk '
        $1 == "rt" { rt[$2] = $3; next }
        {
        o = index($0, "("); c = 0
        for (i = length($0); i > o; i--) if (substr($0, i, 1) == ")") { c = i; break }
        if (!o || !c) next
        g = substr($0, o + 1, c - o - 1)
        n = split(substr($0, c + 2), f, " ")
        if (n < 13) next
        if (g ~ /^kworker\//) g = "kworkers"
        else sub(/\/[0-9]+$/, "", g)
        gsub(/[[:space:]]/, "_", g)
        printf "%s %d %s %.0f\n", $1, f[12] + f[13], g, ($1 in rt) ? rt[$1] : -1 }'
}

# run_fio SIDE ROUND DEV JOB: one job of jobs.fio on /dev/DEV. Next to fio's JSON: the network
# stack's counters (.nstat), the whole guest's busy CPU time over the fio run and, when the host
# samples it, QEMU's CPU time on the host (.cpu), which report.py turns into CPU µs per I/O,
# and the CPU ticks each group of threads took (.threads).
run_fio() {
    local side=$1 round=$2 dev=$3 job=$4 f=$OUT/r$2-$1-$4.json t0 b0 i0 t1 b1 i1 tck
    local h0= hc0= h1= hc1= htck=
    nstat -n
    thread_ticks > "$OUT/ticks-before"
    read -r h0 hc0 htck < <(host_cpu_sample) || true
    read -r t0 b0 i0 < <(cpu_sample)
    DEV=/dev/$dev ${BENCH_FIO_CPUS:+taskset -c "$BENCH_FIO_CPUS"} fio --eta=never --output-format=json --output="$f" --section="$job" "$JOBS" \
        || fail "fio $job on $side (/dev/$dev) failed: see $f"
    read -r t1 b1 i1 < <(cpu_sample)
    read -r h1 hc1 htck < <(host_cpu_sample) || true
    # Per group: ticks and ns over the run (a thread started during it counts from zero; -1:
    # no runtime read).
    thread_ticks | awk 'NR == FNR { before[$1] = $2; if ($4 >= 0) rt0[$1] = $4; next }
        { d = $2 - before[$1]; if (d > 0) t[$3] += d
          if ($4 >= 0) { r = $4 - rt0[$1]; if (r > 0) { ns[$3] += r; t[$3] += 0 } } }
        END { for (g in t) printf "%s %d %.0f\n", g, t[g], ns[g] }' "$OUT/ticks-before" - | sort -k2,2nr > "${f%.json}.threads"
    # The network stack's counters over the run (both ends: target and initiator share lo).
    nstat > "${f%.json}.nstat"
    tck=$(getconf CLK_TCK)
    printf 'clk_tck %s\nwall_ns %s\nbusy_ticks %s\nidle_ticks %s\ncpus %s\n' \
        "$tck" $((t1 - t0)) $((b1 - b0)) $((i1 - i0)) "$(nproc)" > "${f%.json}.cpu"
    if [ -n "${hc0:-}" ] && [ -n "${hc1:-}" ]; then
        printf 'host_clk_tck %s\nhost_wall_ns %s\nhost_busy_ticks %s\n' \
            "$htck" $((h1 - h0)) $((hc1 - hc0)) >> "${f%.json}.cpu"
    fi
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

# core_iscsi_login [CH [SIDE [PORTALS [ATTR=VALUE...]]]]: our channel CH (default 0, side
# core-iscsi, one connection to the target), logged in; prints its disk.
core_iscsi_login() {
    local ch=${1:-0} side=${2:-core-iscsi} portals=${3:-127.0.0.1:$PORT} d
    shift $(($# < 3 ? $# : 3))
    module_loaded || load_module
    channel_create "$ch" $IQN "$portals" "params=${BENCH_OUR_PARAMS:-$PARAMS}" queue_depth=${BENCH_OUR_QD:-$QD} "$@"
    echo start > $ISCSI_ROOT/$ch/control || { cat $ISCSI_ROOT/$ch/state; dmesg | tail -20; fail "$side: start failed"; } >&2
    d=$(channel_disks "$ch" | head -1)
    [ -n "$d" ] || fail "$side: no disk after start"
    wait_for "[ -b /dev/$d ]" 10 || fail "$side: no /dev/$d"
    cat $ISCSI_ROOT/$ch/negotiated > "$OUT/$side.negotiated"
    echo "$d"
}

# core_iscsi_logout [CH]
core_iscsi_logout() {
    echo stop > $ISCSI_ROOT/${1:-0}/control
    rmdir $ISCSI_ROOT/${1:-0}
}

# check_2c: channel 1 (core-iscsi-2c) runs 2 connections; anything else fails the benchmark.
check_2c() {
    local n
    n=$(channel_stat 1 connections) || exit 1
    [ "$n" = 2 ] || { cat $ISCSI_ROOT/1/stats; dmesg | grep core-iscsi | tail -10
        fail "core-iscsi-2c: $n connection(s) open, expected 2 (LIO MaxConnections=$(cat "$tpg/param/MaxConnections"))"; } >&2
}

# core_iscsi_2c_login: our channel 1, one session of 2 connections through the same portal (its
# own channel, so its own disk); prints its disk.
core_iscsi_2c_login() {
    local d
    d=$(core_iscsi_login 1 core-iscsi-2c "127.0.0.1:$PORT*2" \
        initiator_name=iqn.2026-11.org.core-iscsi:bench-2c) || exit 1
    check_2c
    grep -qx MaxConnections=2 $ISCSI_ROOT/1/negotiated \
        || fail "core-iscsi-2c: negotiated $(grep MaxConnections $ISCSI_ROOT/1/negotiated), expected MaxConnections=2"
    echo "$d"
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

# iface_disk IFACE: the disk of open-iscsi's session to $IQN through IFACE, if any.
iface_disk() {
    local s d
    for s in /sys/class/iscsi_session/session*; do
        [ "$(cat "$s/ifacename" 2>/dev/null)" = "$1" ] && [ "$(cat "$s/targetname")" = $IQN ] || continue
        for d in "$s"/device/target*/*:*:*:*/block/*; do
            if [ -e "$d" ]; then basename "$d"; fi
        done
    done | head -1
}

# open_iscsi_login: logged in through iscsi_tcp (the default iface); prints its disk.
open_iscsi_login() {
    local d
    [ -e /etc/iscsi/nodes ] || open_iscsi_setup
    iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT -I default --login >&2 || fail "open-iscsi: login failed"
    wait_for "[ -n \"\$(iface_disk default)\" ]" 20 || fail "open-iscsi: no disk"
    d=$(iface_disk default)
    wait_for "[ -b /dev/$d ]" 10 || fail "open-iscsi: no /dev/$d"
    iscsiadm -m session -P 2 > "$OUT/open-iscsi.negotiated"
    echo "$d"
}

open_iscsi_logout() {
    iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT -I default --logout >&2 || fail "open-iscsi: logout failed"
}

# mp_check_kernel: device-mapper and its multipath target, or a clear failure. The test kernel
# builds them in (CONFIG_BLK_DEV_DM, CONFIG_DM_MULTIPATH); as modules they are insmod'ed from
# its build tree.
mp_check_kernel() {
    local m
    for m in dm-mod dm-multipath dm-round-robin; do
        [ -d /sys/module/${m//-/_} ] || [ ! -f "$KDIR/drivers/md/$m.ko" ] \
            || insmod "$KDIR/drivers/md/$m.ko" || fail "insmod $m.ko failed"
    done
    [ -d /sys/module/dm_mod ] \
        || fail "open-iscsi-mp: no device-mapper in the test kernel (/sys/module/dm_mod missing: CONFIG_BLK_DEV_DM)"
    [ -d /sys/module/dm_multipath ] \
        || fail "open-iscsi-mp: no dm-multipath in the test kernel (/sys/module/dm_multipath missing: CONFIG_DM_MULTIPATH)"
    command -v multipathd >/dev/null && command -v dmsetup >/dev/null && [ -x $UDEVD ] \
        || fail "open-iscsi-mp: multipathd, dmsetup or $UDEVD missing on the host root (tests/vm/install-deps: multipath-tools)"
    dmsetup targets 2>&1 | grep -q '^multipath ' \
        || fail "open-iscsi-mp: the kernel has no dm 'multipath' target (dmsetup targets: $(dmsetup targets 2>&1 | tr '\n' ' '))"
}

# mp_map DISK DISK: the name of the dm device over both disks, if any.
mp_map() {
    local m
    for m in /sys/block/dm-*; do
        if [ -e "$m/slaves/$1" ] && [ -e "$m/slaves/$2" ]; then cat "$m/dm/name"; fi
    done 2>/dev/null | head -1
}

# mp_diagnose: what multipath saw, on stderr, before a failure.
mp_diagnose() {
    {
        echo "---- multipathd log"; tail -40 "$OUT/multipathd.log"
        echo "---- multipath -v3 -d (dry run)"; multipath -v3 -d 2>&1 | tail -40
        echo "---- dmsetup"; dmsetup ls; dmsetup table; dmsetup status
        echo "---- udev database"; ls /run/udev/data 2>&1 | tr '\n' ' '; echo
        echo "---- dmesg"; dmesg | tail -20
    } >&2
}

# mp_conf DISK DISK: /etc/multipath.conf taking these two disks and nothing else, in the
# guest's tmpfs overlay (the host's /etc is untouched). uid_attribute "": multipath reads the
# WWID itself (sysfs VPD page 0x83, else SG_IO): udev's rules give these disks no ID_SERIAL in
# the test VM, and multipathd would retrigger uevents for seconds before doing the same. (From
# LIO's page it makes "1LIO-ORG_", the same for both paths: the map's name.)
mp_conf() {
    mkdir -p /etc/multipath
    cat > /etc/multipath.conf <<MPCONF
defaults {
    user_friendly_names no
    find_multipaths greedy
    uid_attribute ""
    path_grouping_policy multibus
    path_selector "$MP_SELECTOR"
    rr_min_io_rq 1
    no_path_retry fail
}
# Only the two paths of open-iscsi-mp: every side reaches the same LUN (one WWID).
blacklist {
    devnode ".*"
}
blacklist_exceptions {
    devnode "^($1|$2)\$"
}
# LIO's entry in the built-in hardware table (group_by_prio, ALUA) would override the defaults.
devices {
    device {
        vendor "LIO-ORG"
        product ".*"
        path_grouping_policy multibus
        path_selector "$MP_SELECTOR"
        hardware_handler "0"
        prio const
        detect_prio no
        no_path_retry fail
    }
}
overrides {
    path_grouping_policy multibus
    path_selector "$MP_SELECTOR"
    uid_attribute ""
}
MPCONF
    cp /etc/multipath.conf "$OUT/multipath.conf"
}

# mp_udev DISK DISK: udevd in the guest, and these two disks in its database: multipath-tools
# enumerates only devices udev has initialized. (The other sides' disks, older, stay unknown
# to it.)
mp_udev() {
    local d
    if ! pgrep -x systemd-udevd >/dev/null; then
        $UDEVD --daemon >&2 || fail "open-iscsi-mp: $UDEVD --daemon failed"
    fi
    udevadm trigger --wait-daemon=20 --settle --action=change --subsystem-match=block \
        --sysname-match="$1" --sysname-match="$2" >&2 || fail "open-iscsi-mp: udevadm trigger failed"
    for d in "$1" "$2"; do
        wait_for "[ -e /run/udev/data/b$(cat /sys/block/$d/dev) ]" 20 \
            || fail "open-iscsi-mp: udev did not record $d (/run/udev/data/b$(cat /sys/block/$d/dev))"
    done
}

# mp_start DISK DISK: multipathd (in the guest only) over these two disks; prints the map's
# name once it runs one path group of both paths.
mp_start() {
    local name table
    mp_conf "$1" "$2"
    mp_udev "$1" "$2"
    multipathd -d -s > "$OUT/multipathd.log" 2>&1 &
    wait_for "[ -n \"\$(mp_map $1 $2)\" ]" 30 || { mp_diagnose; fail "open-iscsi-mp: multipathd made no map over $1 and $2"; }
    name=$(mp_map "$1" "$2")
    # udev makes /dev/mapper/NAME; dmsetup if it did not.
    udevadm settle -t 20 >&2 || true
    [ -b "/dev/mapper/$name" ] || dmsetup mknodes "$name" >&2
    [ -b "/dev/mapper/$name" ] || { mp_diagnose; fail "open-iscsi-mp: no /dev/mapper/$name"; }
    # One path group ("1 1") of 2 paths under the selector.
    table=$(dmsetup table "$name")
    case "$table" in
        *" 1 1 $MP_SELECTOR 2 "*) ;;
        *) mp_diagnose; fail "open-iscsi-mp: map $name is not one group of 2 paths with $MP_SELECTOR: $table" ;;
    esac
    wait_for "[ \"\$(dmsetup status $name | grep -oE '[0-9]+:[0-9]+ A' | wc -l)\" = 2 ]" 20 \
        || { mp_diagnose; fail "open-iscsi-mp: not 2 active paths in $name: $(dmsetup status "$name")"; }
    { echo "table: $table"; echo "status: $(dmsetup status "$name")"; multipath -ll "$name"; } \
        > "$OUT/open-iscsi-mp.multipath" 2>&1
    echo "$name"
}

# open_iscsi_mp_sessions: one open-iscsi session to the LUN through each of $MP_IFACES;
# prints their disks.
open_iscsi_mp_sessions() {
    local i d disks=()
    [ -e /etc/iscsi/nodes ] || open_iscsi_setup
    for i in $MP_IFACES; do
        # (Created once: profile.sh may log in again.)
        if [ ! -e /etc/iscsi/ifaces/$i ]; then
            iscsiadm -m iface -I $i -o new >&2 || fail "open-iscsi-mp: cannot create iface $i"
            iscsiadm -m iface -I $i -o update -n iface.transport_name -v tcp >&2 \
                || fail "open-iscsi-mp: cannot set iface $i's transport"
        fi
        if ! iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT -I $i >/dev/null 2>&1; then
            iscsiadm -m node -o new -T $IQN -p 127.0.0.1:$PORT -I $i >&2 \
                || fail "open-iscsi-mp: cannot create the node record for iface $i"
        fi
        iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT -I $i --login >&2 || fail "open-iscsi-mp: login through $i failed"
    done
    for i in $MP_IFACES; do
        wait_for "[ -n \"\$(iface_disk $i)\" ]" 20 || fail "open-iscsi-mp: no disk for the session through $i"
        d=$(iface_disk $i)
        wait_for "[ -b /dev/$d ]" 10 || fail "open-iscsi-mp: no /dev/$d"
        disks+=("$d")
    done
    [ "${disks[0]}" != "${disks[1]}" ] || fail "open-iscsi-mp: both sessions show the same disk ${disks[0]}"
    iscsiadm -m session -P 2 > "$OUT/open-iscsi-mp.negotiated"
    echo "${disks[@]}"
}

# open_iscsi_mp_login: two sessions to the LUN (ifaces mp1 and mp2), combined by dm-multipath;
# prints the dm device (mapper/NAME).
open_iscsi_mp_login() {
    local disks name
    mp_check_kernel
    disks=$(open_iscsi_mp_sessions) || exit 1
    # shellcheck disable=SC2086 # two disk names
    name=$(mp_start $disks) || exit 1
    echo "mapper/$name"
}

# open_iscsi_mp_logout DEV: multipathd stopped, the map removed, both sessions logged out,
# udevd stopped.
open_iscsi_mp_logout() {
    local name=${1#mapper/} i
    multipathd shutdown >&2 || true
    wait_for "! pgrep -x multipathd >/dev/null" 20 || fail "open-iscsi-mp: multipathd does not stop"
    udevadm settle -t 20 >&2 || true
    dmsetup remove --noudevsync "$name" || fail "open-iscsi-mp: cannot remove the map $name"
    for i in $MP_IFACES; do
        iscsiadm -m node -T $IQN -p 127.0.0.1:$PORT -I $i --logout >&2 || fail "open-iscsi-mp: logout through $i failed"
    done
    udevadm control --exit >&2 || true
}

# mp_paths_stat DEV: each path's I/O counters (/sys/block/sdX/stat: reads ... writes ...).
mp_paths_stat() {
    local p
    for p in /sys/block/$(sysname "$1")/slaves/*; do
        echo "$(basename "$p") $(tr -s ' ' < "$p/stat")"
    done
}

# ---- the rounds ------------------------------------------------------------------------------
# (tests/bench/profile.sh sources this file for the setup and helpers only.)
[ "${BENCH_SETUP_ONLY:-0}" = 1 ] && return 0

# Every initiator side stays logged in to the same LUN for the whole run (only one does I/O
# at a time), so that every job runs on all the devices back to back: a host whose load drifts
# (TCG shares the host's CPUs) then shifts them alike. The initiators' order (core-iscsi,
# open-iscsi, core-iscsi-2c, open-iscsi-mp) is reversed from job to job and from round to
# round: each pair of neighbours swaps.
declare -A DEVS=([ramdisk]=ram1)
if has_side core-iscsi; then DEVS[core-iscsi]=$(core_iscsi_login); fi
if has_side open-iscsi; then DEVS[open-iscsi]=$(open_iscsi_login); fi
if has_side core-iscsi-2c; then DEVS[core-iscsi-2c]=$(core_iscsi_2c_login); fi
if has_side open-iscsi-mp; then DEVS[open-iscsi-mp]=$(open_iscsi_mp_login); fi
for side in "${!DEVS[@]}"; do
    tune "${DEVS[$side]}" | sed "s/^/$side: /" | tee -a "$OUT/devices"
done
# Where the target's threads run (one pair per initiator, in login order).
ps -eLo pid,psr,comm | awk '$3 ~ /^iscsi_t[rt]x/' | while read -r pid psr comm; do
    echo "target thread $comm (pid $pid): CPUs $(taskset -cp "$pid" | sed 's/.*: //')"
done | tee -a "$OUT/devices"
# What QEMU costs the host while the guest idles: the floor under every host CPU figure.
h0= hc0= h1= hc1=
read -r h0 hc0 htck < <(host_cpu_sample) || true
if [ -n "$hc0" ]; then
    sleep 5
    read -r h1 hc1 htck < <(host_cpu_sample) || true
    if [ -n "$hc1" ] && [ "$h1" -gt "$h0" ]; then
        pm=$(( (hc1 - hc0) * 1000000000000 / htck / (h1 - h0) ))
        echo "host: QEMU used $((pm / 10)).$((pm % 10)) % of a host CPU over 5 s with the guest idle" \
            | tee -a "$OUT/devices"
    else
        echo "host: no second sample of QEMU's CPU time (the host's sampler stopped?)" | tee -a "$OUT/devices"
    fi
fi
jobs=${BENCH_JOBS:-$(sed -n 's/^\[\(.*\)\]$/\1/p' "$JOBS" | grep -v '^global$')}
start=$SECONDS
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    j=0
    for job in $jobs; do
        j=$((j + 1))
        # Job index plus round: each job swaps its order every round, whatever the job count.
        if [ $(((j + round) % 2)) = 0 ]; then order="ramdisk core-iscsi open-iscsi core-iscsi-2c open-iscsi-mp"
        else order="ramdisk open-iscsi-mp core-iscsi-2c open-iscsi core-iscsi"; fi
        # A session that recovered with one connection would measure something else.
        if [ -n "${DEVS[core-iscsi-2c]:-}" ]; then check_2c; fi
        for side in $order; do
            [ -n "${DEVS[$side]:-}" ] || continue
            has_side "$side" || continue
            run_fio "$side" "$round" "${DEVS[$side]}" "$job"
        done
    done
    if [ -n "${DEVS[core-iscsi]:-}" ]; then cat $ISCSI_ROOT/0/stats > "$OUT/r$round-core-iscsi.stats"; fi
    if [ -n "${DEVS[core-iscsi-2c]:-}" ]; then cat $ISCSI_ROOT/1/stats > "$OUT/r$round-core-iscsi-2c.stats"; fi
    if [ -n "${DEVS[open-iscsi-mp]:-}" ]; then
        { mp_paths_stat "${DEVS[open-iscsi-mp]}"; dmsetup status "${DEVS[open-iscsi-mp]#mapper/}"; } \
            > "$OUT/r$round-open-iscsi-mp.paths"
    fi
    log "round $round done at $((SECONDS - start)) s"
done
log "all rounds done in $((SECONDS - start)) s"
if [ -n "${DEVS[core-iscsi]:-}" ]; then cat $ISCSI_ROOT/0/stats; core_iscsi_logout; fi
if [ -n "${DEVS[core-iscsi-2c]:-}" ]; then
    check_2c
    # How the I/O spread over the two connections.
    grep -E '^(connections|conn[0-9]+\.pdus_(rx|tx)) ' $ISCSI_ROOT/1/stats | sed 's/^/core-iscsi-2c: /'
    core_iscsi_logout 1
fi
if [ -n "${DEVS[open-iscsi-mp]:-}" ]; then
    # How the I/O spread over the two paths (reads ... writes ... of /sys/block/sdX/stat).
    mp_paths_stat "${DEVS[open-iscsi-mp]}" | sed 's/^/open-iscsi-mp: path /'
    open_iscsi_mp_logout "${DEVS[open-iscsi-mp]}"
fi
if [ -n "${DEVS[open-iscsi]:-}" ]; then open_iscsi_logout; fi
uname -r > "$OUT/kernel"
dmesg > "$OUT/dmesg.txt"
if module_loaded; then unload_module; fi
ok "benchmark finished"
