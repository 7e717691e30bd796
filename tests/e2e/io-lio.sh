#!/bin/bash
# The data path against LIO (the in-kernel target): three LUNs with the right sizes, ext4 and a
# 16 MiB file read back, fio verify, digests, writes without immediate data, inline sends that find the socket full (4 KiB
# socket buffers), one-way and mutual CHAP, a wrong secret, two channels at once, stop.
# vm-kernel: debug
# vm-args: --timeout 900
# vm-seconds: 115
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"
. "$REPO/tests/e2e/scenario.bash"
IQN=iqn.2003-01.org.linux-iscsi.vm:io
IQN2=iqn.2003-01.org.linux-iscsi.vm:second
lio_target $IQN 3260 128 32 16
load_module

channel_create 0 $IQN 127.0.0.1:3260
data_path 0 LIO-ORG
digests 0
no_immediate_data 0
small_buffers 0

lio_chap $IQN alice alice-secret-0123
echo alice > $ISCSI_ROOT/0/chap_user
echo wrong-secret-9999 > $ISCSI_ROOT/0/chap_secret
chap_fails 0 wrong-secret-9999
echo alice-secret-0123 > $ISCSI_ROOT/0/chap_secret
start_channel 0
ok "one-way CHAP"
stop_channel 0
lio_chap $IQN alice alice-secret-0123 target1 target-secret-456
echo target1 > $ISCSI_ROOT/0/chap_mutual_user
echo not-the-target-secret > $ISCSI_ROOT/0/chap_mutual_secret
chap_fails 0 not-the-target-secret
echo target-secret-456 > $ISCSI_ROOT/0/chap_mutual_secret
start_channel 0
ok "mutual CHAP"
[ "$(stat -c %A $ISCSI_ROOT/0/chap_secret)" = "--w-------" ] || fail "chap_secret is readable"
! cat $ISCSI_ROOT/0/chap_secret 2>/dev/null || fail "chap_secret can be read back"
ok "secrets are write-only"

lio_target $IQN2 3261 16
channel_create 1 $IQN2 127.0.0.1:3261
start_channel 1
check_disks 1 LIO-ORG 16
d0=($(channel_disks 0)); d1=($(channel_disks 1))
fio_verify ${d0[2]} 4m &
p0=$!
fio_verify ${d1[0]} 4m
wait $p0 || fail "I/O on channel 0 failed while channel 1 ran"
ok "two channels at once"
stop_channel 0
stop_channel 1
rmdir $ISCSI_ROOT/0 $ISCSI_ROOT/1
unload_module
ok "module unloaded"
