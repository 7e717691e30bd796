#!/bin/bash
# The data path against istgt (userspace target): as io-lio.sh.
# vm-args: --timeout 900
# vm-seconds: 40
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
BASE=iqn.2007-09.jp.ne.peach.istgt
istgt_target io 3260 None 128 32 16
istgt_target chap 3261 "CHAP alice alice-secret-0123" 16
istgt_target mutual 3262 "Mutual alice alice-secret-0123 target1 target-secret-456" 16
load_module

channel_create 0 $BASE:io 127.0.0.1:3260
data_path 0 FreeBSD
digests 0

channel_create 1 $BASE:chap 127.0.0.1:3261 chap_user=alice chap_secret=wrong-secret-9999
chap_fails 1 wrong-secret-9999
echo alice-secret-0123 > $ISCSI_ROOT/1/chap_secret
start_channel 1
ok "one-way CHAP"
channel_create 2 $BASE:mutual 127.0.0.1:3262 chap_user=alice chap_secret=alice-secret-0123 \
    chap_mutual_user=target1 chap_mutual_secret=not-the-target-secret
chap_fails 2 not-the-target-secret
echo target-secret-456 > $ISCSI_ROOT/2/chap_mutual_secret
start_channel 2
ok "mutual CHAP"
stop_channel 1
stop_channel 2
rmdir $ISCSI_ROOT/0 $ISCSI_ROOT/1 $ISCSI_ROOT/2
unload_module
ok "module unloaded"
