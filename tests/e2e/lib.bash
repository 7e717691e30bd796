# Helpers for the end-to-end scripts that run inside the test VM (sourced, bash).
# Each check prints what it verified; the first failure prints why and exits non-zero.

fail() { echo "FAIL: $*" >&2; exit 1; }
# Each line ends with the script's time so far, so that a run's log shows where its time goes.
ok() { echo "ok: $* [${SECONDS} s]"; }

# The version every component must report: the workspace's.
expected_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1; }

module_loaded() { grep -q '^core_iscsi ' /proc/modules; }

load_module() {
    insmod "$CORE_ISCSI_KO" "$@" || fail "insmod $CORE_ISCSI_KO failed"
}

unload_module() {
    rmmod core_iscsi || fail "rmmod core_iscsi failed"
}

# Forget every leak suspect so far, so that a later kmemleak_check reports only ours.
kmemleak_clear() {
    [ -w /sys/kernel/debug/kmemleak ] || fail "kmemleak is not enabled (boot with kmemleak=on)"
    echo clear > /sys/kernel/debug/kmemleak
}

# Fails if kmemleak finds unreferenced objects allocated since kmemleak_clear.
kmemleak_check() {
    # An object must be seen unreferenced by two scans, some seconds apart, to be reported.
    echo scan > /sys/kernel/debug/kmemleak
    nap 6
    echo scan > /sys/kernel/debug/kmemleak
    local leaks
    leaks=$(cat /sys/kernel/debug/kmemleak)
    if [ -n "$leaks" ]; then
        echo "$leaks" | head -60 >&2
        fail "kmemleak reports unreferenced objects"
    fi
    ok "kmemleak: no leaks"
}

# ---- targets in the guest ------------------------------------------------------------------

CFS=/sys/kernel/config
ISCSI_ROOT=$CFS/core_iscsi
INITIATOR_NAME=iqn.2026-11.org.core-iscsi:test-initiator

# lio_target IQN PORT LUN_MB... : an LIO iSCSI target on 127.0.0.1:PORT with one fileio LUN
# of each given size (MiB) backed by tmpfs, open to any initiator (demo mode), no auth.
lio_target() {
    local iqn=$1 port=$2; shift 2
    local tpg=$CFS/target/iscsi/$iqn/tpgt_1 lun=0 size
    mkdir -p "$tpg" || fail "LIO: cannot create $tpg"
    for size in "$@"; do
        local name="${iqn##*:}_$lun" dev
        dev=$CFS/target/core/fileio_$lun/$name
        mkdir -p "$dev"
        truncate -s "${size}M" "/dev/shm/$name.img"
        echo "fd_dev_name=/dev/shm/$name.img,fd_dev_size=$((size << 20))" > "$dev/control"
        echo 1 > "$dev/enable"
        mkdir -p "$tpg/lun/lun_$lun"
        ln -s "$dev" "$tpg/lun/lun_$lun/port_$lun"
        lun=$((lun + 1))
    done
    mkdir -p "$tpg/np/127.0.0.1:$port"
    echo 1 > "$tpg/attrib/generate_node_acls"
    echo 1 > "$tpg/attrib/cache_dynamic_acls"
    echo 0 > "$tpg/attrib/demo_mode_write_protect"
    echo 0 > "$tpg/attrib/authentication"
    echo 1 > "$tpg/enable"
}

# lio_chap IQN USER SECRET [MUTUAL_USER MUTUAL_SECRET]: require CHAP on the target's portal group.
lio_chap() {
    local tpg=$CFS/target/iscsi/$1/tpgt_1
    # LIO keeps a trailing newline as part of the value: write none.
    printf %s "$2" > "$tpg/auth/userid"
    printf %s "$3" > "$tpg/auth/password"
    if [ $# -ge 5 ]; then
        printf %s "$4" > "$tpg/auth/userid_mutual"
        printf %s "$5" > "$tpg/auth/password_mutual"
    fi
    echo 1 > "$tpg/attrib/authentication"
}

# channel_create ID IQN PORTAL [ATTR=VALUE...]: a channel directory with its settings.
channel_create() {
    local ch=$ISCSI_ROOT/$1 iqn=$2 portal=$3 kv; shift 3
    mkdir "$ch" || fail "mkdir $ch failed"
    echo "$iqn" > "$ch/target_name"
    echo "$INITIATOR_NAME" > "$ch/initiator_name"
    echo "$portal" > "$ch/portals"
    for kv in "$@"; do
        echo "${kv#*=}" > "$ch/${kv%%=*}" || fail "setting ${kv%%=*} of channel $1 failed"
    done
}

# channel_disks ID: the block devices (sdX) of the channel's SCSI host, by LUN order. sd probes
# a disk asynchronously, after `start` has returned: this waits (up to 10 s) until every LUN of
# the direct-access type (0) has its block device. Without a process: globs, and an array
# indexed by LUN (whose elements come in index order).
channel_disks() {
    local host lun d found missing out end=$(( ${EPOCHREALTIME/./} + 10000000 ))
    host=$(get "$ISCSI_ROOT/$1/host")
    [ -n "$host" ] || return 0
    while :; do
        out=() missing=0
        for lun in /sys/class/scsi_host/host$host/device/target*/*:*:*:*; do
            [ -e "$lun/type" ] || continue
            found=""
            for d in "$lun"/block/*; do [ ! -e "$d" ] || found=${d##*/}; done
            if [ -n "$found" ]; then
                out[${lun##*:}]=$found
            elif [ "$(get "$lun/type")" = 0 ]; then
                missing=1
            fi
        done
        if [ $missing = 0 ] || [ "${EPOCHREALTIME/./}" -ge $end ]; then break; fi
        nap 0.05
    done
    echo "${out[*]}"
}

# channel_stat ID NAME: the value of one line of the channel's stats.
channel_stat() {
    local k v
    while read -r k v; do
        [ "$k" != "$2" ] || { echo "$v"; return; }
    done < "$ISCSI_ROOT/$1/stats"
    fail "channel $1: no $2 in stats"
}

# nap SECONDS: sleep(1) without a process. In the test VM under TCG a fork and exec costs
# 0.05-0.15 s of a CPU (the debug kernel: 0.13-0.35 s), so `sleep 0.1` took 0.35 s and a
# polling loop kept a CPU busy. A read that times out on a FIFO nobody writes.
nap() {
    if [ -z "${NAP_FD:-}" ]; then
        local f=/tmp/.nap.$$.$BASHPID
        rm -f "$f"; mkfifo "$f" && exec {NAP_FD}<> "$f" && rm -f "$f"
    fi
    read -rt "$1" -u "$NAP_FD" _ || true
}

# get FILE: the file's first line, read by the shell (`$(cat FILE)` execs a process: 0.25-0.35 s
# of a CPU in the debug VM, `$(get FILE)` only forks: 0.05 s). Empty if it cannot be read.
get() { local v=""; { read -r v < "$1"; } 2>/dev/null || true; printf '%s' "$v"; }

# alive PID: whether this shell's child PID still runs (bash reaps a background child as it
# ends; a zombie not yet reaped counts as ended).
alive() {
    local s
    { read -r s < "/proc/$1/stat"; } 2>/dev/null || return 1
    s=${s##*) }    # "PID (COMM) STATE ...", COMM possibly with spaces
    [ -n "$s" ] && [ "${s%% *}" != Z ]
}

# within SECONDS CMD...: CMD (a command or a shell function) given at most SECONDS: its exit
# status, or 124 once it has been killed at the bound; timeout(1) without its own process. A
# process the kill cannot end at once (in uninterruptible sleep) is left behind after 5 s more,
# so that the caller's failure message comes within the bound and those 5 s.
within() {
    local end=$(( ${EPOCHREALTIME/./} + $1 * 1000000 )) pid rc=0 i; shift
    "$@" &
    pid=$!
    while alive $pid; do
        if [ "${EPOCHREALTIME/./}" -ge $end ]; then
            kill -KILL $pid 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do alive $pid || break; nap 0.1; done
            alive $pid || wait $pid 2>/dev/null || true
            return 124
        fi
        nap 0.05
    done
    wait $pid || rc=$?
    return $rc
}

# klog_ms LINE: the time stamp of a kernel log line ("[   12.345678] ..."), in ms; nothing for a
# line without one.
klog_ms() {
    [[ $1 =~ ^\[\ *[0-9]+\.[0-9]+\] ]] || return 0
    local ts=${1#[}; ts=${ts%%]*}; ts=${ts// /}
    local frac=${ts#*.}000000
    echo $(( ${ts%.*} * 1000 + 10#${frac:0:3} ))
}

# ctl WORD FILE: writes WORD to a control file (for `within`: a function runs in a subshell,
# where bash -c would exec a shell).
ctl() { echo "$1" > "$2"; }

# wait_for COND SECONDS: until `eval COND` holds; false once SECONDS have passed by the clock.
# It tries every 0.1 s, or, when a try takes longer (each process COND starts costs up to 0.3 s
# of a CPU in the debug VM), twice the try's time later: waiting leaves at least two thirds of
# a CPU to what it waits for.
wait_for() {
    local end=$(( ${EPOCHREALTIME/./} + $2 * 1000000 )) t0 t1 gap s
    while :; do
        t0=${EPOCHREALTIME/./}
        eval "$1" && return 0
        t1=${EPOCHREALTIME/./}
        [ "$t1" -lt "$end" ] || return 1
        gap=$(( 2 * (t1 - t0) ))
        [ $gap -ge 100000 ] || gap=100000
        [ $((t1 + gap)) -le "$end" ] || gap=$((end - t1))
        printf -v s '%d.%06d' $((gap / 1000000)) $((gap % 1000000))
        nap "$s"
    done
}

# tgt_target IQN PORT LUN_MB... : tgtd on 127.0.0.1:PORT with one target whose LUNs 1..N are
# files on tmpfs (tgt's LUN 0 is its controller). Sets TGT_CP (its control port).
tgt_target() {
    local iqn=$1 port=$2 lun=1 size; shift 2
    TGT_CP=$((port % 1000 + 100))
    tgtd -f -C $TGT_CP --iscsi portal=127.0.0.1:$port > /tmp/tgtd-$port.log 2>&1 &
    wait_for "tgtadm -C $TGT_CP --lld iscsi --op show --mode target >/dev/null 2>&1" 10 \
        || fail "tgtd did not start: $(cat /tmp/tgtd-$port.log)"
    tgtadm -C $TGT_CP --lld iscsi --op new --mode target --tid 1 -T "$iqn"
    for size in "$@"; do
        truncate -s "${size}M" "/dev/shm/tgt-$port-$lun.img"
        tgtadm -C $TGT_CP --lld iscsi --op new --mode logicalunit --tid 1 --lun $lun \
            -b "/dev/shm/tgt-$port-$lun.img"
        lun=$((lun + 1))
    done
    tgtadm -C $TGT_CP --lld iscsi --op bind --mode target --tid 1 -I 127.0.0.1
}

# tgt_param NAME VALUE: a target parameter of tgt_target's target (e.g. HeaderDigest CRC32C).
tgt_param() {
    tgtadm -C $TGT_CP --lld iscsi --op update --mode target --tid 1 --name "$1" --value "$2"
}

# tgt_chap USER SECRET [MUTUAL_USER MUTUAL_SECRET]: require CHAP on tgt_target's target.
tgt_chap() {
    tgtadm -C $TGT_CP --lld iscsi --op new --mode account --user "$1" --password "$2"
    tgtadm -C $TGT_CP --lld iscsi --op bind --mode account --tid 1 --user "$1"
    if [ $# -ge 4 ]; then
        tgtadm -C $TGT_CP --lld iscsi --op new --mode account --user "$3" --password "$4"
        tgtadm -C $TGT_CP --lld iscsi --op bind --mode account --tid 1 --user "$3" --outgoing
    fi
}

# istgt_target NAME PORT AUTH LUN_MB... : istgt on 127.0.0.1:PORT with target
# iqn.2007-09.jp.ne.peach.istgt:NAME, LUNs 0..N-1 on tmpfs; AUTH is "None", or
# "CHAP user secret" or "Mutual user secret muser msecret". Digests are negotiable (Auto).
# Its unit control (istgt_info) listens on 127.0.0.1:PORT+100.
istgt_target() {
    local name=$1 port=$2 auth=$3 dir=/tmp/istgt-$2 lun=0 size method group=""
    shift 3
    mkdir -p $dir
    set -- "$@"
    read -r -a a <<< "$auth"
    case ${a[0]} in
        None) method=None; : > $dir/auth.conf ;;
        CHAP) method=CHAP; group="  AuthGroup AuthGroup1"
              printf '[AuthGroup1]\n  Auth "%s" "%s"\n' "${a[1]}" "${a[2]}" > $dir/auth.conf ;;
        Mutual) method="CHAP Mutual"; group="  AuthGroup AuthGroup1"
              printf '[AuthGroup1]\n  Auth "%s" "%s" "%s" "%s"\n' "${a[1]}" "${a[2]}" "${a[3]}" "${a[4]}" > $dir/auth.conf ;;
    esac
    cat > $dir/istgt.conf <<CONF
[Global]
  NodeBase "iqn.2007-09.jp.ne.peach.istgt"
  PidFile $dir/istgt.pid
  AuthFile $dir/auth.conf
  MediaDirectory $dir
  LogFacility "local7"
  Timeout 30
  NopInInterval 20
  DiscoveryAuthMethod None
  MaxSessions 16
  MaxConnections 4
  MaxR2T 32
  MaxOutstandingR2T 16
  DefaultTime2Wait 2
  DefaultTime2Retain 60
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
  DataPDUInOrder Yes
  DataSequenceInOrder Yes
  ErrorRecoveryLevel 0
[UnitControl]
  AuthMethod None
  Portal UC1 127.0.0.1:$(($port + 100))
  Netmask 127.0.0.1
[PortalGroup1]
  Portal DA1 127.0.0.1:$port
[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask 127.0.0.1
[LogicalUnit1]
  TargetName $name
  Mapping PortalGroup1 InitiatorGroup1
  AuthMethod $method
$group
  UseDigest Auto
  UnitType Disk
CONF
    for size in "$@"; do
        echo "  LUN$lun Storage $dir/lun$lun.img ${size}MB" >> $dir/istgt.conf
        lun=$((lun + 1))
    done
    printf '[Global]\n  Timeout 10\n  AuthMethod None\n  Host 127.0.0.1\n  Port %s\n' $(($port + 100)) \
        > $dir/istgtcontrol.conf
    istgt -D -c $dir/istgt.conf > $dir/log 2>&1 &
    wait_for "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null" 10 || fail "istgt did not start: $(cat $dir/log)"
}
# istgt_info PORT: the target's own view of its connections (istgtcontrol info), one
# "Login from" line per connection with its ISID, TSIH, CID and digests. istgt_target's unit
# control listens on 127.0.0.1 at PORT + 100, without authentication (a test target).
istgt_info() {
    istgtcontrol -c /tmp/istgt-$1/istgtcontrol.conf info || fail "istgtcontrol info failed (port $1)"
}
