# Helpers for the end-to-end scripts that run inside the test VM (sourced, bash).
# Each check prints what it verified; the first failure prints why and exits non-zero.

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

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
    sleep 6
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
    echo "$2" > "$tpg/auth/userid"
    echo "$3" > "$tpg/auth/password"
    if [ $# -ge 5 ]; then
        echo "$4" > "$tpg/auth/userid_mutual"
        echo "$5" > "$tpg/auth/password_mutual"
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

# channel_disks ID: the block devices (sdX) of the channel's SCSI host, by LUN order.
channel_disks() {
    local host
    host=$(cat "$ISCSI_ROOT/$1/host")
    [ -n "$host" ] || return 0
    for d in /sys/class/scsi_host/host$host/device/target*/*:*:*:*/block/*; do
        [ -e "$d" ] && basename "$d"
    done
}

# wait_for COND SECONDS: until `eval COND` holds.
wait_for() {
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        eval "$1" && return 0
        sleep 0.1
    done
    return 1
}
