#!/bin/bash
# The kernel's CRC32C and CHAP hashes give the published known answers through the module:
# checked at every load (the module would refuse to load otherwise) and on demand through
# core_iscsi/selftest; portal address parsing is checked the same way.
# vm-args: --timeout 300
# vm-seconds: 6
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"

root=/sys/kernel/config/core_iscsi
dmesg -C
load_module
dmesg | grep -q "selftest: crypto: ok" || fail "no crypto known-answer report at load: $(dmesg | tail -5)"
! dmesg | grep -q "refusing to load" || fail "crypto known-answer test failed at load"
ok "known answers checked at load (CRC32C RFC 3720 B.4, MD5, SHA-1, SHA-256, SHA3-256)"

[ -f $root/selftest ] || fail "$root/selftest missing"
[ "$(stat -c %A $root/selftest)" = "--w-------" ] || fail "$root/selftest is not write-only: $(stat -c %A $root/selftest)"
dmesg -C
echo crypto > $root/selftest || fail "echo crypto > selftest failed: $(dmesg | grep selftest)"
dmesg | grep -q "selftest: crypto: ok" || fail "selftest crypto wrote no report"
ok "echo crypto > $root/selftest passes"

echo parse > $root/selftest || fail "echo parse > selftest failed: $(dmesg | grep selftest)"
ok "echo parse > $root/selftest passes (IPv4, IPv6, scopes, default port, malformed portals refused)"

if err=$( { echo no-such-test > $root/selftest; } 2>&1 ); then fail "an unknown self-test was accepted"; fi
case $err in *"Invalid argument"*) ;; *) fail "unknown self-test: expected 'Invalid argument', got '$err'" ;; esac
ok "an unknown self-test is refused with EINVAL"

unload_module
ok "module unloads"
