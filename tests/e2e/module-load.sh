#!/bin/bash
# The module loads, creates its configfs root, reports its version, and unloads cleanly; 20
# load/unload cycles leave no trace (no module, no configfs directory, no leak, no warning).
# vm-args: --append kmemleak=on --timeout 600
# vm-seconds: 24
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"

version=$(expected_version)
root=/sys/kernel/config/core_iscsi
kmemleak_clear
dmesg -C

for i in $(seq 1 20); do
    load_module
    [ -d $root ] || fail "cycle $i: $root missing after insmod"
    got=$(cat $root/version)
    [ "$got" = "$version" ] || fail "cycle $i: $root/version is '$got', expected '$version'"
    unload_module
    [ ! -e $root ] || fail "cycle $i: $root still there after rmmod"
    ! module_loaded || fail "cycle $i: core_iscsi still in /proc/modules after rmmod"
done
ok "20 load/unload cycles, version $version each time"

loaded=$(dmesg | grep -c "core-iscsi $version loaded" || true)
unloaded=$(dmesg | grep -c "core-iscsi $version unloaded" || true)
[ "$loaded" = 20 ] && [ "$unloaded" = 20 ] || fail "kernel log shows $loaded loads and $unloaded unloads, expected 20 each"
ok "kernel log reports the version at each load and unload"

kmemleak_check
