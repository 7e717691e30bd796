#!/bin/bash
# `make demo`, inside the test VM: the main job of core-iscsi, as the howto tells it.
# An LIO target starts on 127.0.0.1; the three sysconfig files are written; `initiator start`
# loads the module, logs in and mounts the LUN under /<target-iqn>/<name>; a file is written
# and read back; `initiator status` is shown; `initiator stop` cleans everything up.
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
export PATH=$REPO/init.d:$PATH
INIT=$REPO/init.d/initiator
IQN=iqn.2003-01.org.linux-iscsi.demo:storage
step() { printf '\n### %s\n' "$*"; }

step "an iSCSI target (the kernel's LIO) on 127.0.0.1:3260 with one 64 MiB LUN, CHAP required"
lio_target $IQN 3260 64
lio_chap $IQN demo-user demo-secret-0123
# A first partition with ext4 on the LUN's backing file, as an administrator would have it.
img=/dev/shm/${IQN##*:}_0.img
printf 'label: dos\n,\n' | sfdisk -q "$img"
start=$(sfdisk -d "$img" | sed -n 's/.*start= *\([0-9]*\).*/\1/p')
size=$(sfdisk -d "$img" | sed -n 's/.*size= *\([0-9]*\).*/\1/p')
mkfs.ext4 -q -F -E offset=$((start * 512)) "$img" $((size / 2))k
echo "target $IQN: LUN 0 with partition 1 (ext4)"

CONF=$(mktemp -d)
step "the configuration (the howto's three files, in $CONF)"
export CORE_ISCSI_CONFIG_DIR=$CONF
mkdir "$CONF/sysconfig"
cat > "$CONF/sysconfig/initiator" <<EOF
CHANNEL="0 1 lo 127.0.0.1 3260 0 AuthMethod=CHAP;MaxRecvDataSegmentLength=65536 nopout_timeout=5 $IQN"
EOF
cat > "$CONF/sysconfig/initiator_auth" <<'EOF'
AUTH="0 0 demo-user demo-secret-0123"
EOF
chmod 600 "$CONF/sysconfig/initiator_auth"
cat > "$CONF/sysconfig/iscsi_device_maps" <<'EOF'
DEVICE="0 0 1 data" # Channel 0, LUN 0, Partition 1 -> /<target iqn>/data
EOF
for f in initiator iscsi_device_maps; do echo "--- sysconfig/$f"; cat "$CONF/sysconfig/$f"; done
echo "--- sysconfig/initiator_auth (mode 600): one AUTH line, secret not shown"
initiator-ctl check-config

step "initiator start"
"$INIT" start
echo "--- initiatorname.iscsi, created on first start:"
grep InitiatorName "$CONF/initiatorname.iscsi"

step "write a file to /$IQN/data and read it back"
dd if=/dev/urandom of=/tmp/demo.bin bs=1M count=4 status=none
cp /tmp/demo.bin "/$IQN/data/demo.bin"
sync
echo 3 > /proc/sys/vm/drop_caches
cmp /tmp/demo.bin "/$IQN/data/demo.bin"
echo "4 MiB written through iSCSI and read back identical: $(sha256sum < "/$IQN/data/demo.bin" | cut -c1-16)..."
df -h "/$IQN/data" | sed 's/^/    /'

step "initiator status"
"$INIT" status

step "initiator stop"
"$INIT" stop
leftover=$(ls "$ISCSI_ROOT" | grep -E '^[0-9]+$' || true)
[ -z "$leftover" ] || fail "channel directories left: $leftover"
! grep -q " /iqn\." /proc/mounts || fail "mounts left"
[ ! -e "/$IQN" ] || fail "/$IQN left"
echo "no channel, no disk, no mount left"
set +e; "$INIT" status >/dev/null; rc=$?; set -e
echo "initiator status now exits $rc (3: not running)"
unload_module

printf '\ndemo done\n'
