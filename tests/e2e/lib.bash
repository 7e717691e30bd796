# Helpers for the end-to-end scripts that run inside the test VM (sourced, bash).
# Each check prints what it verified; the first failure prints why and exits non-zero.

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# The version every component must report: the workspace's.
expected_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1; }

module_loaded() { grep -q '^core_iscsi ' /proc/modules; }

load_module() {
    insmod "$CORE_ISCSI_KO" "$@" || fail "insmod $CORE_ISCSI_KO failed"
}

unload_module() {
    rmmod core_iscsi || fail "rmmod core_iscsi failed"
}

# Forget every leak suspect so far, so that a later kmemleak_check reports only ours.
kmemleak_clear() {
    [ -w /sys/kernel/debug/kmemleak ] || fail "kmemleak is not enabled (boot with kmemleak=on)"
    echo clear > /sys/kernel/debug/kmemleak
}

# Fails if kmemleak finds unreferenced objects allocated since kmemleak_clear.
kmemleak_check() {
    # An object must be seen unreferenced by two scans, some seconds apart, to be reported.
    echo scan > /sys/kernel/debug/kmemleak
    sleep 6
    echo scan > /sys/kernel/debug/kmemleak
    local leaks
    leaks=$(cat /sys/kernel/debug/kmemleak)
    if [ -n "$leaks" ]; then
        echo "$leaks" | head -60 >&2
        fail "kmemleak reports unreferenced objects"
    fi
    ok "kmemleak: no leaks"
}
