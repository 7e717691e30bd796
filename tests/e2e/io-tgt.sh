#!/bin/bash
# The data path against tgt (userspace target, tgtd): as io-lio.sh.
# vm-args: --timeout 900
# vm-seconds: 31
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2001-04.com.example:tgt-io
tgt_target $IQN 3260 128 32 16
load_module

channel_create 0 $IQN 127.0.0.1:3260
# tgt's LUN 0 is its controller (not a disk): the disks are LUNs 1-3.
data_path 0 IET
tgt_param HeaderDigest CRC32C
tgt_param DataDigest CRC32C
digests 0

tgt_chap alice alice-secret-0123
echo alice > $ISCSI_ROOT/0/chap_user
echo wrong-secret-9999 > $ISCSI_ROOT/0/chap_secret
chap_fails 0 wrong-secret-9999
echo alice-secret-0123 > $ISCSI_ROOT/0/chap_secret
start_channel 0
ok "one-way CHAP"
stop_channel 0
tgtadm -C $TGT_CP --lld iscsi --op new --mode account --user target1 --password target-secret-456
tgtadm -C $TGT_CP --lld iscsi --op bind --mode account --tid 1 --user target1 --outgoing
echo target1 > $ISCSI_ROOT/0/chap_mutual_user
echo not-the-target-secret > $ISCSI_ROOT/0/chap_mutual_secret
chap_fails 0 not-the-target-secret
echo target-secret-456 > $ISCSI_ROOT/0/chap_mutual_secret
start_channel 0
ok "mutual CHAP"
stop_channel 0
rmdir $ISCSI_ROOT/0
unload_module
ok "module unloaded"
