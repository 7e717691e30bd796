#!/bin/bash
# vm-args: --timeout 900
# vm-seconds: 31
# The core-iscsi howto replayed with the real module and tools: the three sysconfig files
# written like the howto's examples (loopback portals), two channels (0: LIO with mutual CHAP,
# 1: tgtd found by SendTargets discovery, with a DVD image), then the init script's start,
# status (also as an unprivileged user), pause with a writer held and released, a stop refused
# by a busy mount, the forced unmap, and a stop that leaves nothing behind; a configuration
# error in several files reported at once, and a DEVICE line that collides with another
# channel's only once discovery names the target.
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
export PATH=$REPO/init.d:$PATH
INIT=$REPO/init.d/initiator

IQN0=iqn.2005-04.com.example.target.mipsEE:sn.1234567890
IQN1=iqn.2005-04.com.example.target.gekko:sn.0987654321
SECRETS='somepass034xyz|somepass014_ma'

# ---- targets: LIO on 3260 (two LUNs, mutual CHAP), tgtd on 3261 (a DVD and a disk) -------
lio_target $IQN0 3260 64 32
lio_chap $IQN0 someuser somepass034xyz someuser_ma somepass014_ma

mkdir -p /var/run/tgtd /tmp/dvd
echo "core-iscsi DVD image" > /tmp/dvd/README
genisoimage -quiet -r -V DVD0 -o /dev/shm/dvd0.iso /tmp/dvd
truncate -s 32M /dev/shm/gekko1.img
tgtd -f -C 1 --iscsi portal=127.0.0.1:3261 >/tmp/tgtd.log 2>&1 &
TGTD=$!
wait_for "[ -S /var/run/tgtd/socket.1 ]" 10 || fail "tgtd did not start"
tgtadm() { command tgtadm -C 1 --lld iscsi "$@"; }
wait_for "tgtadm --op show --mode target >/dev/null 2>&1" 10 || fail "tgtd does not answer"
tgtadm --op new --mode target --tid 1 -T $IQN1
tgtadm --op new --mode logicalunit --tid 1 --lun 1 --device-type cd -b /dev/shm/dvd0.iso
tgtadm --op new --mode logicalunit --tid 1 --lun 2 -b /dev/shm/gekko1.img
tgtadm --op bind --mode target --tid 1 -I ALL
ok "targets: LIO $IQN0 on 3260, tgtd $IQN1 on 3261"

# ---- the configuration, in a temporary directory --------------------------------------------
CONF=$(mktemp -d)
export CORE_ISCSI_CONFIG_DIR=$CONF
mkdir "$CONF/sysconfig"
cat > "$CONF/sysconfig/initiator" <<EOF
# Channel 0: the howto's example 1 (mutual CHAP: CHAP only), with the target name.
CHANNEL="0 1 lo 127.0.0.1 3260 0 AuthMethod=CHAP;MaxRecvDataSegmentLength=8192 nopout_timeout=5 $IQN0"
# Channel 1: the howto's example 2 (and our tmf_timeout), no target name: found with SendTargets.
CHANNEL="1 1 lo 127.0.0.1 3261 0 AuthMethod=None;MaxRecvDataSegmentLength=32768;ImmediateData=No nopout_timeout=10, nopout_response_timeout=10, tmf_timeout=7"
EOF
cat > "$CONF/sysconfig/initiator_auth" <<'EOF'
# Channel ID, mutual, user, secret, mutual user, mutual secret
AUTH="0 1 someuser somepass034xyz someuser_ma somepass014_ma"
EOF
chmod 600 "$CONF/sysconfig/initiator_auth"
echo "# no DEVICE lines yet" > "$CONF/sysconfig/iscsi_device_maps"

# ---- a bad configuration starts nothing -------------------------------------------------------
BAD=$(mktemp -d); mkdir "$BAD/sysconfig"
cp "$CONF"/sysconfig/* "$BAD/sysconfig/"
echo 'DEVICE="0 0 x disk0a"' > "$BAD/sysconfig/iscsi_device_maps"
echo 'CHANNEL="2 1 127.0.0.1 3262x 0"' >> "$BAD/sysconfig/initiator"
set +e; err=$(initiator-ctl --config-dir "$BAD" start 2>&1 >/dev/null); rc=$?; set -e
[ $rc = 1 ] || fail "bad config: exit $rc, want 1"
[ "$(echo "$err" | wc -l)" = 2 ] || fail "bad config: not one line per error: $err"
echo "$err" | sed -n 1p | grep -q "initiator:5: field 5 (port)" || fail "bad config error: $err"
echo "$err" | sed -n 2p | grep -q "iscsi_device_maps:1: field 3 (partition)" || fail "bad config error: $err"
! module_loaded || fail "bad config: the module was loaded"
[ ! -e "$BAD/initiatorname.iscsi" ] || fail "bad config: initiatorname.iscsi created"
ok "bad config: exit 1, both errors named at once, nothing loaded or created"

# ---- first start: login, discovery, name file; partition and format through the disks -------
initiator-ctl start | tee /tmp/start1.out
[ -f "$CONF/initiatorname.iscsi" ] || fail "initiatorname.iscsi not created"
NAME=$(cat "$CONF/initiatorname.iscsi")
grep -q "discovered target $IQN1" /tmp/start1.out || fail "channel 1 was not discovered"
[ "$(cat $ISCSI_ROOT/0/state)" = running ] && [ "$(cat $ISCSI_ROOT/1/state)" = running ] || fail "not running"
ok "start: both channels running; $(grep -v '^#' "$CONF/initiatorname.iscsi")"
# The attributes reach the module (the howto's nopout_timeout is its ping interval).
attrs() { local a; for a in nopout_interval nopout_timeout tmf_timeout; do printf '%s ' "$(cat $ISCSI_ROOT/$1/$a)"; done; }
[ "$(attrs 0)" = "5 10 10 " ] || fail "channel 0's nopout_interval nopout_timeout tmf_timeout: $(attrs 0), want 5 10 10"
[ "$(attrs 1)" = "10 10 7 " ] || fail "channel 1's nopout_interval nopout_timeout tmf_timeout: $(attrs 1), want 10 10 7"
ok "the attributes of field 8 reach the module (channel 1: nopout_interval 10, nopout_timeout 10, tmf_timeout 7)"

lun_disk() { # CHANNEL LUN -> sdX
    initiator-ctl --json status "$1" | jq -r ".status[0].luns[] | select(.lun == $2) | .device" | sed 's|/dev/||'
}
d00=$(lun_disk 0 0); d01=$(lun_disk 0 1); d11=$(lun_disk 1 1); d12=$(lun_disk 1 2)
echo "disks: ch0 LUN0=$d00 LUN1=$d01, ch1 LUN1=$d11 LUN2=$d12"
for d in $d00 $d01 $d11 $d12; do [ -b /dev/$d ] || fail "/dev/$d missing"; done
printf 'label: dos\n,24M\n,\n' | sfdisk -q /dev/$d00
printf 'label: dos\n,\n' | sfdisk -q /dev/$d01
printf 'label: dos\n,\n' | sfdisk -q /dev/$d12
wait_for "[ -b /dev/${d00}2 ] && [ -b /dev/${d01}1 ] && [ -b /dev/${d12}1 ]" 10 || fail "partitions missing"
for p in ${d00}1 ${d00}2 ${d01}1 ${d12}1; do mkfs.ext4 -q -F /dev/$p; done
ok "partitioned and formatted $d00 (2), $d01 (1), $d12 (1)"

initiator-ctl stop
[ -z "$(ls $ISCSI_ROOT | grep -E '^[0-9]+$' || true)" ] || fail "channel dirs left after stop"

# ---- the maps file of the howto (adapted: tgt's LUN 0 is its controller) ---------------------
cat > "$CONF/sysconfig/iscsi_device_maps" <<'EOF'
DEVICE="0 0 1 disk0a" # Channel 0, LUN 0, Partition 1 -> /iqn.target.example/disk0a
DEVICE="0 0 2 disk0b" # Channel 0, LUN 0, Partition 2 -> /iqn.target.example/disk0b
DEVICE="0 1 1 disk1a" # Channel 0, LUN 1, Partition 1 -> /iqn.target.example/disk1a
DEVICE="1 1 0 dvd0"   # Channel 1, LUN 1, Partition 0 -> /iqn.target.example/dvd0
DEVICE="1 2 1 disk0a" # Channel 1, LUN 2, Partition 1 -> /iqn.target.example/disk0a
EOF

# ---- start through the init script mounts every entry ----------------------------------------
"$INIT" start 2>&1 | tee /tmp/start2.out
mnt() { awk -v m="$1" '$2 == m { print $3, substr($4, 1, 2) }' /proc/mounts; }
[ "$(mnt /$IQN0/disk0a)" = "ext4 rw" ] || fail "/$IQN0/disk0a: $(mnt /$IQN0/disk0a)"
[ "$(mnt /$IQN0/disk0b)" = "ext4 rw" ] || fail "/$IQN0/disk0b"
[ "$(mnt /$IQN0/disk1a)" = "ext4 rw" ] || fail "/$IQN0/disk1a"
[ "$(mnt /$IQN1/dvd0)" = "iso9660 ro" ] || fail "/$IQN1/dvd0: $(mnt /$IQN1/dvd0)"
[ "$(mnt /$IQN1/disk0a)" = "ext4 rw" ] || fail "/$IQN1/disk0a"
grep -q "core-iscsi DVD image" /$IQN1/dvd0/README || fail "DVD content"
[ "$(cat "$CONF/initiatorname.iscsi")" = "$NAME" ] || fail "initiatorname.iscsi changed"
ok "init script start: 5 mounts (dvd0 read-only iso9660), initiator name kept"

# ---- a DEVICE line that would mount where another channel's does, found after discovery -------
CLASH=$(mktemp -d); mkdir "$CLASH/sysconfig"
cp "$CONF"/sysconfig/* "$CONF/initiatorname.iscsi" "$CLASH/sysconfig/" && mv "$CLASH/sysconfig/initiatorname.iscsi" "$CLASH/"
echo 'CHANNEL="2 1 127.0.0.1 3261 0 AuthMethod=None"' >> "$CLASH/sysconfig/initiator"
echo 'DEVICE="2 2 1 disk0a" # same target as channel 1 (discovered): same mount point' >> "$CLASH/sysconfig/iscsi_device_maps"
initiator-ctl --config-dir "$CLASH" check-config >/dev/null || fail "the clash is visible before discovery"
set +e; err=$(initiator-ctl --config-dir "$CLASH" start 2 2>&1 >/dev/null); rc=$?; set -e
[ $rc = 3 ] || fail "start of a clashing channel: exit $rc, want 3 ($err)"
echo "$err" | grep -q "channel 2: discovered target $IQN1, but .*iscsi_device_maps:6: field 4 (name): \"disk0a\" would mount at /$IQN1/disk0a like line 5 (channel 1)" ||
    fail "clash error: $err"
[ ! -e $ISCSI_ROOT/2 ] || fail "the clashing channel was created"
ok "start refuses a DEVICE line that would mount on another channel's mount point once discovered"

# ---- status: text and JSON ----------------------------------------------------------------------
"$INIT" status > /tmp/status.txt || fail "init script status: exit $? with channels running"
cat /tmp/status.txt
grep -q "^channel 0: running" /tmp/status.txt || fail "status: channel 0"
grep -q "^channel 1: running" /tmp/status.txt || fail "status: channel 1"
grep -q "target:      $IQN1" /tmp/status.txt || fail "status: discovered target name"
grep -q "portals:     127.0.0.1:3261" /tmp/status.txt || fail "status: portals"
grep -q "connections: 1" /tmp/status.txt || fail "status: connections"
grep -q "MaxRecvDataSegmentLength=8192" /tmp/status.txt || fail "status: negotiated"
grep -q "map disk0b: LUN 0 partition 2 /dev/${d00}2 mounted at /$IQN0/disk0b (ext4)" /tmp/status.txt || fail "status: map line"
grep -q "map dvd0: LUN 1 whole device /dev/$d11 mounted at /$IQN1/dvd0 (iso9660, read-only)" /tmp/status.txt || fail "status: dvd"
grep -q "commands=" /tmp/status.txt || fail "status: counters"
initiator-ctl --json status > /tmp/status.json
jq -e '.status | length == 2' /tmp/status.json >/dev/null
jq -e '[.status[].maps[] | select(.mounted)] | length == 5' /tmp/status.json >/dev/null || fail "json: 5 mounted"
jq -e '.status[0].negotiated | map(select(.[0] == "MaxRecvDataSegmentLength")) | .[0][1] == "8192"' /tmp/status.json >/dev/null || fail "json: negotiated"
jq -e '.status[1].target == "'$IQN1'" and .status[1].state == "running"' /tmp/status.json >/dev/null || fail "json: channel 1"
! grep -Eq "$SECRETS" /tmp/status.txt /tmp/status.json /tmp/start1.out /tmp/start2.out || fail "a secret was printed"
! dmesg | grep -Eq "$SECRETS" || fail "a secret is in the kernel log"
ok "status: text and --json show states, targets, portals, negotiated keys, LUNs, mounts, counters; no secret"
chmod 755 "$CONF" "$CONF/sysconfig"
setpriv --reuid=65534 --regid=65534 --clear-groups "$INIT" status 0 > /tmp/status-nobody.txt ||
    fail "status as nobody: exit $?"
grep -q "^channel 0: running" /tmp/status-nobody.txt || fail "status as nobody: $(cat /tmp/status-nobody.txt)"
set +e; setpriv --reuid=65534 --regid=65534 --clear-groups "$INIT" stop 0 2>/dev/null; rc=$?; set -e
[ $rc = 4 ] || fail "stop as nobody: exit $rc, want 4"
ok "status works for nobody (no secrets read); stop as nobody exits 4"

# ---- pause: a writer is held, start releases it, data verified ----------------------------------
dd if=/dev/urandom of=/tmp/payload bs=1M count=8 status=none
want=$(sha256sum < /tmp/payload)
"$INIT" pause 0
[ "$(cat $ISCSI_ROOT/0/state)" = paused ] || fail "not paused"
[ "$(mnt /$IQN0/disk0a)" = "ext4 rw" ] || fail "paused: mount gone"
[ -b /dev/$d00 ] || fail "paused: disk gone"
dd if=/tmp/payload of=/$IQN0/disk0a/payload bs=64k oflag=direct status=none &
WRITER=$!
nap 3
kill -0 $WRITER 2>/dev/null || fail "the writer finished while the channel was paused"
set +e; "$INIT" status 0 >/dev/null; rc=$?; set -e
[ $rc = 3 ] || fail "init script status of a paused channel: exit $rc, want 3"
ok "paused: disks and mounts stay, the writer waits"
"$INIT" start 0
wait $WRITER || fail "the writer failed after start"
echo 3 > /proc/sys/vm/drop_caches
got=$(dd if=/$IQN0/disk0a/payload bs=64k iflag=direct status=none | sha256sum)
[ "$got" = "$want" ] || fail "payload checksum differs after pause/start"
[ "$(cat $ISCSI_ROOT/0/state)" = running ] || fail "not running after start"
ok "start after pause: the held writer completed, 8 MiB verified by sha256"

# ---- stop with a busy mount fails, naming it; forced unmap; clean stop -------------------------
(cd /$IQN0/disk1a && exec sleep 1000) &
BUSY=$!
nap 0.5
set +e; "$INIT" stop 0 2>/tmp/stop.err; rc=$?; set -e
cat /tmp/stop.err
[ $rc = 1 ] || fail "stop with a busy mount: exit $rc, want 1"
grep -q "/$IQN0/disk1a (/dev/${d01}1) is busy: used by sleep (pid $BUSY: cwd)" /tmp/stop.err || fail "busy: reason"
[ "$(cat $ISCSI_ROOT/0/state)" = running ] || fail "busy stop changed the channel"
[ "$(mnt /$IQN0/disk0a)" = "ext4 rw" ] && [ "$(mnt /$IQN0/disk1a)" = "ext4 rw" ] || fail "busy stop unmounted something"
set +e; initiator-ctl unmap 0 2>/dev/null; rc=$?; set -e
[ $rc = 4 ] || fail "unmap of a busy channel: exit $rc, want 4"
ok "stop refused: exit 1 naming /$IQN0/disk1a and its user; channel and mounts untouched"
# The same on a paused channel: stop resumes it to flush, finds the mount busy, and pauses it
# again, so that the failed command leaves it as it was.
"$INIT" pause 0
[ "$(cat $ISCSI_ROOT/0/state)" = paused ] || fail "not paused before the busy stop"
set +e; "$INIT" stop 0 2>/tmp/stop.err; rc=$?; set -e
[ $rc = 1 ] || fail "stop of a paused channel with a busy mount: exit $rc, want 1"
grep -q "/$IQN0/disk1a (/dev/${d01}1) is busy" /tmp/stop.err || fail "busy (paused): reason: $(cat /tmp/stop.err)"
[ "$(cat $ISCSI_ROOT/0/state)" = paused ] || fail "busy stop left a paused channel $(cat $ISCSI_ROOT/0/state)"
[ "$(mnt /$IQN0/disk0a)" = "ext4 rw" ] && [ "$(mnt /$IQN0/disk1a)" = "ext4 rw" ] || fail "busy stop (paused) unmounted something"
"$INIT" start 0
[ "$(cat $ISCSI_ROOT/0/state)" = running ] || fail "not running after the paused busy stop"
ok "stop of a paused channel refused the same way; the channel is left paused, mounts untouched"
iscsi-unmap-channel 0 1
# Gone, or a zombie its shell has not reaped yet (kill -0 succeeds on one).
wait_for "[ ! -e /proc/$BUSY ] || [ \"\$(awk '{print \$3}' /proc/$BUSY/stat 2>/dev/null)\" = Z ]" 5 \
    || fail "the user of the busy mount is still alive"
wait $BUSY 2>/dev/null || true
[ -z "$(mnt /$IQN0/disk1a)$(mnt /$IQN0/disk0a)$(mnt /$IQN0/disk0b)" ] || fail "forced unmap left mounts"
[ "$(mnt /$IQN1/dvd0)" = "iso9660 ro" ] || fail "forced unmap of channel 0 touched channel 1"
ok "iscsi-unmap-channel 0 1: user killed, channel 0 unmounted"
iscsi-map-channel 0
[ "$(mnt /$IQN0/disk1a)" = "ext4 rw" ] || fail "iscsi-map-channel 0"
iscsi-remap-channel 1
[ "$(mnt /$IQN1/dvd0)" = "iso9660 ro" ] || fail "iscsi-remap-channel 1"
ok "iscsi-map-channel and iscsi-remap-channel"

# ---- a link-local IPv6 portal: written fe80::...%lo, given to the module as the index ----------
ip -6 addr add fe80::1234/64 dev lo
mkdir -p "/sys/kernel/config/target/iscsi/$IQN0/tpgt_1/np/[::]:3262"
LL=$(mktemp -d); mkdir "$LL/sysconfig"; cp "$CONF/initiatorname.iscsi" "$LL/"
echo "CHANNEL=\"4 1 fe80::1234%lo 3262 0 AuthMethod=CHAP $IQN0\"" > "$LL/sysconfig/initiator"
echo 'AUTH="4 1 someuser somepass034xyz someuser_ma somepass014_ma"' > "$LL/sysconfig/initiator_auth"
chmod 600 "$LL/sysconfig/initiator_auth"
initiator-ctl --config-dir "$LL" start 4 || fail "start over a link-local portal"
lo_index=$(cat /sys/class/net/lo/ifindex)
grep -q "fe80::1234%$lo_index\]:3262" $ISCSI_ROOT/4/portals || fail "module portals: $(cat $ISCSI_ROOT/4/portals)"
[ "$(cat $ISCSI_ROOT/4/state)" = running ] || fail "link-local channel: $(cat $ISCSI_ROOT/4/state)"
initiator-ctl --config-dir "$LL" stop 4
ok "link-local portal fe80::1234%lo: the module got [fe80::1234%$lo_index]:3262 and logged in"

"$INIT" stop
[ -z "$(ls $ISCSI_ROOT | grep -E '^[0-9]+$' || true)" ] || fail "channel dirs left: $(ls $ISCSI_ROOT)"
! grep -q " /iqn\." /proc/mounts || fail "mounts left: $(grep ' /iqn\.' /proc/mounts)"
[ ! -e /$IQN0 ] && [ ! -e /$IQN1 ] || fail "mount point directories left"
for d in $d00 $d01 $d11 $d12; do [ ! -e /sys/class/block/$d ] || fail "/dev/$d still present"; done
set +e; "$INIT" status >/dev/null; rc=$?; set -e
[ $rc = 3 ] || fail "init script status after stop: exit $rc, want 3"
unload_module
set +e; out=$("$INIT" status); rc=$?; set -e
[ $rc = 3 ] || fail "init script status without the module: exit $rc, want 3"
echo "$out" | head -n1 | grep -q "^the core_iscsi module is not loaded" || fail "status without the module: $out"
ok "stop: no channel directory, no mounts, no disks; rmmod succeeds; status says the module is not loaded"

# tgtd ignores SIGTERM while it has targets.
kill -9 $TGTD; wait $TGTD 2>/dev/null || true
echo "initiator-howto: all checks passed"
