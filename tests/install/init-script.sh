#!/usr/bin/env bash
# The init script's LSB exit codes and messages, on the host, without the module: not root
# (exit 4, said before any file is read), status as any user (no secrets read, "not loaded",
# exit 3), usage (2 and 3), nothing configured (start succeeds), a configuration error (6),
# pause or reload with nothing running (7).
# Usage: tests/install/init-script.sh INITIATOR-CTL INIT-SCRIPT  (tests/install/run calls it)
set -euo pipefail
ctl=$1 script=$2
fail() { echo "init-script: FAIL: $*" >&2; exit 1; }
ok() { echo "init-script: ok: $*"; }
[ "$(id -u)" = 0 ] || fail "run as root (it switches to nobody for the unprivileged cases)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
bin=$tmp/bin; mkdir "$bin"; install -m 755 "$ctl" "$bin/initiator-ctl"
conf=$tmp/etc; mkdir -p "$conf/sysconfig"
echo 'InitiatorName=iqn.2005-03.org.core-iscsi:01:0123456789ab' > "$conf/initiatorname.iscsi"
echo 'CHANNEL="0 1 127.0.0.1 3260 0 AuthMethod=CHAP iqn.2003-01.org.example:t"' > "$conf/sysconfig/initiator"
echo 'AUTH="0 0 user secret-never-shown"' > "$conf/sysconfig/initiator_auth"
chmod 600 "$conf/sysconfig/initiator_auth"
: > "$conf/sysconfig/iscsi_device_maps"

run() { # [nobody] ARGS... -> sets rc, out, err
    local as=()
    if [ "${1:-}" = nobody ]; then as=(setpriv --reuid=65534 --regid=65534 --clear-groups); shift; fi
    set +e
    out=$(env INITIATOR_CTL="$bin/initiator-ctl" CORE_ISCSI_CONFIG_DIR="$conf" "${as[@]}" "$script" "$@" 2>"$tmp/err")
    rc=$?
    set -e
    err=$(cat "$tmp/err")
}

for a in start stop restart force-reload reload pause; do
    run nobody $a
    [ "$rc" = 4 ] || fail "$a as nobody: exit $rc, want 4 (err: $err)"
    [ "$err" = "$script: $a needs root" ] || fail "$a as nobody said: $err"
done
ok "every action that changes something exits 4 for a non-root user, before reading a file"

run nobody status
[ "$rc" = 3 ] || fail "status as nobody: exit $rc, want 3 (err: $err)"
grep -q '^the core_iscsi module is not loaded' <<<"$out" || fail "status does not say the module is not loaded: $out"
grep -q '^channel 0: stopped' <<<"$out" || fail "status: $out"
[ -z "$err" ] || fail "status as nobody wrote to stderr: $err"
grep -q secret-never-shown <<<"$out$err" && fail "a secret in status output"
ok "status works for nobody without the secrets file, says the module is not loaded, exits 3"

run
[ "$rc" = 2 ] || fail "no action: exit $rc, want 2"
grep -q 'start|stop|restart|force-reload|reload|pause|status' <<<"$err" || fail "usage line: $err"
run frobnicate
[ "$rc" = 3 ] || fail "unknown action: exit $rc, want 3"
run start 0 1
[ "$rc" = 2 ] || fail "excess arguments: exit $rc, want 2"
ok "usage: 2 for no action or excess arguments, 3 for an unknown action, every action listed"

echo 'CHANNEL="0 1 127.0.0.1 3260x 0"' > "$conf/sysconfig/initiator"
run start
[ "$rc" = 6 ] || fail "configuration error: exit $rc, want 6 (err: $err)"
grep -q 'initiator:1: field 5 (port)' <<<"$err" || fail "config error not named: $err"
ok "a configuration error exits 6 and names file, line and field"

echo '# nothing configured yet' > "$conf/sysconfig/initiator"
: > "$conf/sysconfig/initiator_auth"
run start
[ "$rc" = 0 ] || fail "start with no channel: exit $rc, want 0 (err: $err)"
grep -q 'nothing to start' <<<"$out" || fail "start with no channel said: $out"
run stop
[ "$rc" = 0 ] || fail "stop with nothing running: exit $rc, want 0 (err: $err)"
ok "start and stop succeed with no channel configured"
for a in pause reload; do
    run $a
    [ "$rc" = 7 ] || fail "$a without the module: exit $rc, want 7 (err: $err)"
    grep -q "module is not loaded" <<<"$err" || fail "$a without the module said: $err"
done
ok "pause and reload without the module exit 7 (not running)"

PATH=/usr/bin:/bin INITIATOR_CTL=/nonexistent/initiator-ctl "$script" start 2>/dev/null && fail "start without initiator-ctl succeeded" || rc=$?
[ "$rc" = 5 ] || fail "start without initiator-ctl: exit $rc, want 5"
ok "start without initiator-ctl exits 5"
