#!/bin/bash
# `make demo`, inside the test VM: load the module and show its control interface.
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"

echo "### insmod core_iscsi.ko"
load_module
dmesg | grep core-iscsi | tail -1
echo "### the control interface: /sys/kernel/config/core_iscsi"
find /sys/kernel/config/core_iscsi | sort
echo "version: $(cat /sys/kernel/config/core_iscsi/version)"
echo "### rmmod core_iscsi"
unload_module
echo "demo done"
