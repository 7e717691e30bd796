#!/bin/bash
# vm-args: --timeout 600
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
IQN=iqn.2003-01.org.linux-iscsi.vm:basic
lio_target $IQN 3260 64
load_module
channel_create 0 $IQN 127.0.0.1:3260
echo start > $ISCSI_ROOT/0/control || { cat $ISCSI_ROOT/0/state; dmesg | tail -20; fail "start failed"; }
cat $ISCSI_ROOT/0/state
cat $ISCSI_ROOT/0/negotiated
disks=$(channel_disks 0)
echo "disks: $disks"
dmesg | tail -20
d=$(echo $disks | cut -d' ' -f1)
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 status=none
dd if=/tmp/pat of=/dev/$d bs=1M oflag=direct status=none
dd if=/dev/$d of=/tmp/back bs=1M count=4 iflag=direct status=none
cmp /tmp/pat /tmp/back && ok "4 MiB read back"
cat $ISCSI_ROOT/0/stats
echo stop > $ISCSI_ROOT/0/control
rmdir $ISCSI_ROOT/0
unload_module
