# The data-path scenario every target runs (sourced by tests/e2e/io-*.sh after lib.bash).

# start_channel ID: `echo start` must succeed and leave the channel running.
start_channel() {
    if ! echo start > "$ISCSI_ROOT/$1/control"; then
        dmesg | grep core-iscsi | tail -5 >&2
        fail "channel $1: start failed: $(get "$ISCSI_ROOT/$1/state")"
    fi
    local st; st=$(get "$ISCSI_ROOT/$1/state")
    [ "$st" = running ] || fail "channel $1: state $st"
}

# check_disks ID VENDOR MB... : the channel's disks have these sizes, in LUN order, and vendor.
check_disks() {
    local ch=$1 vendor=$2 i=0 d size; shift 2
    local disks=($(channel_disks "$ch"))
    [ ${#disks[@]} = $# ] || fail "channel $ch: ${#disks[@]} disks (${disks[*]}), expected $#"
    for size in "$@"; do
        d=${disks[$i]}
        [ "$(cat /sys/block/$d/size)" = $((size * 2048)) ] \
            || fail "$d: $(cat /sys/block/$d/size) sectors, expected $((size * 2048))"
        [ "$(sed 's/ *$//' /sys/block/$d/device/vendor)" = "$vendor" ] \
            || fail "$d: vendor '$(cat /sys/block/$d/device/vendor)', expected $vendor"
        i=$((i + 1))
    done
    ok "channel $ch: ${#disks[@]} LUNs of $* MiB, vendor $vendor (${disks[*]})"
}

# fs_roundtrip DEV: ext4 on DEV, a 16 MiB file written, synced, caches dropped, read back.
fs_roundtrip() {
    local dev=/dev/$1 mnt=/mnt/$1
    mkfs.ext4 -q -F "$dev" || fail "mkfs.ext4 $dev failed"
    mkdir -p "$mnt"
    mount "$dev" "$mnt" || fail "mount $dev failed"
    head -c $((16 << 20)) /dev/urandom > /dev/shm/file16
    cp /dev/shm/file16 "$mnt/file16"
    sync
    echo 3 > /proc/sys/vm/drop_caches
    [ "$(sha256sum < "$mnt/file16")" = "$(sha256sum < /dev/shm/file16)" ] \
        || fail "$dev: the 16 MiB file read back differs"
    umount "$mnt"
    mount -o ro "$dev" "$mnt"
    cmp -s "$mnt/file16" /dev/shm/file16 || fail "$dev: file differs after remount"
    umount "$mnt"
    rm -f /dev/shm/file16
    ok "$dev: ext4, 16 MiB file written, synced, caches dropped, read back identical"
}

# fio_verify DEV SIZE: fio writes with crc32c verification at 4 KiB and 1 MiB, queue depth 32.
fio_verify() {
    local dev=/dev/$1 bs
    for bs in 4k 1m; do
        fio --name=verify-$bs --filename="$dev" --rw=randwrite --bs=$bs --iodepth=32 \
            --ioengine=libaio --direct=1 --size="$2" --verify=crc32c --do_verify=1 \
            --verify_fatal=1 --output=/tmp/fio-$1-$bs.txt > /dev/null 2>&1 \
            || { cat /tmp/fio-$1-$bs.txt >&2; fail "$dev: fio verify at $bs failed"; }
        grep -q "err= 0" /tmp/fio-$1-$bs.txt || { cat /tmp/fio-$1-$bs.txt >&2; fail "$dev: fio reported errors at $bs"; }
    done
    ok "$dev: fio randwrite + crc32c verify at 4 KiB and 1 MiB, QD32, $2"
}

# stop_channel ID: stop removes the disks and the host; rmdir removes the channel.
stop_channel() {
    local host disks st
    host=$(get "$ISCSI_ROOT/$1/host")
    disks=$(channel_disks "$1")
    echo stop > "$ISCSI_ROOT/$1/control" || fail "channel $1: stop failed"
    st=$(get "$ISCSI_ROOT/$1/state")
    [ "$st" = stopped ] || fail "channel $1: state after stop: $st"
    [ ! -e /sys/class/scsi_host/host$host ] || fail "channel $1: host$host still there after stop"
    for d in $disks; do [ ! -e /sys/block/$d ] || fail "channel $1: $d still there after stop"; done
    ok "channel $1: stopped, host$host and disks ($disks) gone"
}

# chap_fails ID: start must fail with EACCES, say why in `state`, and leave no SCSI host.
chap_fails() {
    local hosts_before err
    hosts_before=$(ls /sys/class/scsi_host | wc -l)
    if err=$( { echo start > "$ISCSI_ROOT/$1/control"; } 2>&1 ); then
        fail "channel $1: start with a wrong secret succeeded"
    fi
    case $err in *"Permission denied"*) ;; *) fail "channel $1: start failed with '$err', expected EACCES" ;; esac
    [ "$(cat "$ISCSI_ROOT/$1/state")" = "failed: authentication failed" ] \
        || fail "channel $1: state '$(cat "$ISCSI_ROOT/$1/state")'"
    [ -z "$(cat "$ISCSI_ROOT/$1/host")" ] || fail "channel $1: a SCSI host is left"
    [ "$(ls /sys/class/scsi_host | wc -l)" = "$hosts_before" ] || fail "channel $1: a SCSI host is left"
    ! dmesg | grep -q "$2" || fail "the secret appears in the kernel log"
    ok "channel $1: wrong secret refused (EACCES, 'failed: authentication failed', nothing left)"
}

# data_path ID VENDOR: the channel's three LUNs (128, 32, 16 MiB) are there with the target's
# vendor; ext4 with a 16 MiB file read back on the first, fio verify on the second; stop.
data_path() {
    start_channel "$1"
    check_disks "$1" "$2" 128 32 16
    local disks=($(channel_disks "$1"))
    # Reads one at a time (nothing else in flight) are received in the socket's callback,
    # never handed to the rx work.
    local before after recoveries timeouts
    recoveries=$(channel_stat "$1" recoveries) timeouts=$(channel_stat "$1" timeouts)
    [ "$(channel_stat "$1" in_flight)" = 0 ] || fail "channel $1: commands in flight before the QD1 read"
    before=$(channel_stat "$1" conn0.rx_deferred)
    dd if=/dev/${disks[1]} of=/dev/null bs=4k count=256 iflag=direct status=none \
        || fail "/dev/${disks[1]}: direct read failed"
    after=$(channel_stat "$1" conn0.rx_deferred)
    [ "$after" = "$before" ] || fail "channel $1: reads at QD1 went to the rx work ($before -> $after)"
    fs_roundtrip "${disks[0]}"
    # fio's reads at QD32 (its verify pass) are received by the rx work, and none of them
    # waited for a timeout or a recovery to be picked up.
    before=$(channel_stat "$1" conn0.rx_deferred)
    fio_verify "${disks[1]}" 8m
    after=$(channel_stat "$1" conn0.rx_deferred)
    [ "$after" -gt "$before" ] || fail "channel $1: no receive under load went to the rx work (conn0.rx_deferred $after)"
    [ "$(channel_stat "$1" recoveries)" = "$recoveries" ] && [ "$(channel_stat "$1" timeouts)" = "$timeouts" ] \
        || fail "channel $1: recoveries or timeouts during the reads: $(grep -E '^(recoveries|timeouts) ' "$ISCSI_ROOT/$1/stats" | tr '\n' ' ')"
    ok "channel $1: reads at QD1 received in the callback, fio's at QD32 by the rx work ($before -> $after handoffs), no timeout or recovery, data verified"
    stop_channel "$1"
}

# digests ID: with HeaderDigest and DataDigest CRC32C offered (the target must accept them),
# both are negotiated and fio verify on the third LUN sees no digest error; stop, offer reset.
digests() {
    local ch=$ISCSI_ROOT/$1
    echo "HeaderDigest=CRC32C;DataDigest=CRC32C" > "$ch/params"
    start_channel "$1"
    grep -qx "HeaderDigest=CRC32C" "$ch/negotiated" || fail "header digest not negotiated"
    grep -qx "DataDigest=CRC32C" "$ch/negotiated" || fail "data digest not negotiated"
    local disks=($(channel_disks "$1"))
    fio_verify "${disks[2]}" 8m
    grep -qx "conn0.digest_errors 0" "$ch/stats" || fail "digest errors counted"
    ok "header and data digests (CRC32C) negotiated and used"
    stop_channel "$1"
    echo "" > "$ch/params"
}

# no_immediate_data ID: ImmediateData=No in `params` (InitialR2T stays No: write data goes as
# unsolicited Data-Out PDUs). LIO leaves a decisive Boolean offer unanswered; the session must
# still take No (the code that took the silence for the default, Yes, sent immediate data that
# LIO refused with a connection reset on every write). Writes of 4 KiB and 64 KiB read back
# identical, with no recovery.
no_immediate_data() {
    local ch=$ISCSI_ROOT/$1 disk bs
    echo "ImmediateData=No" > "$ch/params"
    start_channel "$1"
    grep -qx "ImmediateData=No" "$ch/negotiated" \
        || fail "channel $1: ImmediateData=No offered, negotiated: $(grep ImmediateData "$ch/negotiated")"
    disk=/dev/$(channel_disks "$1" | cut -d' ' -f3)
    for bs in 4k 64k; do
        head -c $((1 << 20)) /dev/urandom > /dev/shm/pattern
        within 60 dd if=/dev/shm/pattern of="$disk" bs=$bs oflag=direct status=none \
            || fail "$disk: writes of $bs without immediate data failed or hung"
        within 60 dd if="$disk" of=/dev/shm/back bs=1M count=1 iflag=direct status=none \
            || fail "$disk: read back failed"
        cmp -s /dev/shm/pattern /dev/shm/back || fail "$disk: writes of $bs without immediate data read back different"
    done
    [ "$(channel_stat "$1" recoveries)" = 0 ] || fail "channel $1: $(channel_stat "$1" recoveries) recoveries without immediate data"
    ok "channel $1: ImmediateData=No negotiated (the target left it unanswered or answered No); writes of 4 KiB and 64 KiB as unsolicited Data-Out read back identical, no recovery"
    stop_channel "$1"
    echo "" > "$ch/params"
}

# small_buffers ID: with every new socket's buffers at 4 KiB (net.ipv4.tcp_wmem and tcp_rmem:
# the target's window is small, the initiator's send buffer full after a few KiB), a write
# alone in flight does not fit the socket: queuecommand sends what the socket takes without
# waiting (MSG_DONTWAIT), and the transmit work, woken by the socket's write-space callback,
# sends the rest of the PDU, its command lent meanwhile (counted by connN.tx_full, as are the
# transmit work's own sends that find the socket full). Writes one at a time of 8 KiB to 1 MiB (a pattern of
# their own each) read back identical, then fio verify at QD4 (inline sends and the transmit
# work take turns) with no timeout, abort or recovery and the keepalive off; without and with
# digests (a copied data segment). The settings are restored after.
small_buffers() {
    local ch=$ISCSI_ROOT/$1 wmem rmem nopout disk bs before after p ms
    wmem=$(cat /proc/sys/net/ipv4/tcp_wmem) rmem=$(cat /proc/sys/net/ipv4/tcp_rmem)
    echo "4096 4096 4096" > /proc/sys/net/ipv4/tcp_wmem
    echo "4096 4096 4096" > /proc/sys/net/ipv4/tcp_rmem
    # No keepalive: its ping would wake the transmit work for a command left queued with no
    # one to send it, which then waits for the SCSI timeout (an abort) instead.
    nopout=$(get "$ch/nopout_interval")
    echo 0 > "$ch/nopout_interval"
    for p in "" "HeaderDigest=CRC32C;DataDigest=CRC32C"; do
        echo "$p" > "$ch/params"
        start_channel "$1"
        disk=/dev/$(channel_disks "$1" | cut -d' ' -f3)
        before=$(channel_stat "$1" conn0.tx_full)
        for bs in 8k 64k 1M; do
            head -c $((4 << 20)) /dev/urandom > /dev/shm/pattern
            dd if=/dev/shm/pattern of="$disk" bs=$bs oflag=direct status=none \
                || fail "$disk: writes of $bs one at a time failed (params '$p')"
            dd if="$disk" of=/dev/shm/back bs=1M count=4 iflag=direct status=none \
                || fail "$disk: read back failed"
            cmp -s /dev/shm/pattern /dev/shm/back \
                || fail "$disk: what writes of $bs one at a time wrote reads back different (params '$p')"
        done
        after=$(channel_stat "$1" conn0.tx_full)
        [ "$after" -gt "$before" ] \
            || fail "channel $1: no send found the socket full (conn0.tx_full $after, params '$p'): the scenario was not reached"
        fio --name=qd4 --filename="$disk" --rw=randwrite --bs=64k --iodepth=4 --ioengine=libaio \
            --direct=1 --size=4m --verify=crc32c --do_verify=1 --verify_fatal=1 \
            --output-format=json --output=/tmp/fio-qd4.json > /dev/null 2>&1 \
            || { cat /tmp/fio-qd4.json >&2; fail "$disk: fio verify at QD4 failed (params '$p')"; }
        ms=$(python3 -c 'import json, sys; j = json.load(open(sys.argv[1]))["jobs"][0]
print(max(j[d]["lat_ns"]["max"] for d in ("read", "write")) // 1000000)' /tmp/fio-qd4.json)
        [ "$(channel_stat "$1" recoveries)" = 0 ] && [ "$(channel_stat "$1" timeouts)" = 0 ] \
            && [ "$(channel_stat "$1" aborts)" = 0 ] \
            || fail "channel $1: with small socket buffers (params '$p'): $(grep -E '^(recoveries|timeouts|aborts) ' "$ch/stats" | tr '\n' ' ')"
        ok "channel $1, 4 KiB socket buffers, params '${p:-none}': $((after - before)) sends found the socket full and left a PDU partly sent for when it had room; writes of 8 KiB, 64 KiB, 1 MiB one at a time read back identical; fio verify at QD4, slowest command $ms ms; no timeout, abort or recovery"
        stop_channel "$1"
    done
    echo "" > "$ch/params"
    echo "$nopout" > "$ch/nopout_interval"
    echo "$wmem" > /proc/sys/net/ipv4/tcp_wmem
    echo "$rmem" > /proc/sys/net/ipv4/tcp_rmem
    rm -f /dev/shm/pattern /dev/shm/back
}
