#!/bin/bash
# Profiles the guest while fio runs one benchmark job through one initiator (run by
# tests/bench/run --profile; see Documentation/benchmarks.md). perf samples the software clock
# (cpu-clock: TCG has no PMU) on every CPU with call graphs; the reports go to
# $VM_ARTIFACTS/bench/profile-<side>-<job>.*.txt (by symbol, by thread, by both, callers), next
# to the perf.data and the guest's kallsyms.
#
# Environment: BENCH_PROFILE="side:job side:job ..." (sides as in guest.sh; default: core-iscsi
# and open-iscsi on rand-read-4k-qd32 and seq-read-1m-qd8), BENCH_RUNTIME (default 10), and the
# placement of guest.sh (BENCH_TARGET_CPUS, BENCH_FIO_CPUS).
set -euo pipefail
export BENCH_SETUP_ONLY=1
# Reuse the target and initiator setup of guest.sh without running its rounds.
. "$REPO/tests/bench/guest.sh"

echo 0 > /proc/sys/kernel/kptr_restrict
echo -1 > /proc/sys/kernel/perf_event_paranoid

# profile_job SIDE DEV JOB
profile_job() {
    local side=$1 dev=$2 job=$3 f=$OUT/profile-$1-$3
    tune "$dev"
    DEV=/dev/$dev perf record -q -e cpu-clock -F 2000 -a -g -o "$f.data" -- \
        ${BENCH_FIO_CPUS:+taskset -c "$BENCH_FIO_CPUS"} fio --eta=never --output-format=json --output="$f.json" --section="$job" "$JOBS" \
        || fail "perf/fio failed on $side $job"
    jq -r '.jobs[] | "  \(.jobname): " + (if .read.io_bytes > 0 then .read else .write end |
        "\(.bw_bytes / 1e6 | floor) MB/s \(.iops | floor) IOPS")' "$f.json"
    perf report -i "$f.data" --stdio --no-children --sort sym --percent-limit 0.7 -g none \
        > "$f.txt" 2>/dev/null || true
    perf report -i "$f.data" --stdio --no-children --sort comm --percent-limit 0.5 -g none \
        > "$f.comm.txt" 2>/dev/null || true
    perf report -i "$f.data" --stdio --no-children --sort comm,sym --percent-limit 0.3 -g none \
        > "$f.commsym.txt" 2>/dev/null || true
    perf report -i "$f.data" --stdio --children --sort sym --percent-limit 2 -g caller,0.5,callee,function,percent --max-stack 24 \
        > "$f.callers.txt" 2>/dev/null || true
    # Kept with the guest's symbols, for other views on the host:
    # perf report -i $f.data --kallsyms=$f.kallsyms ...
    cp /proc/kallsyms "$f.kallsyms"
    head -60 "$f.txt"
    cat "$f.comm.txt" | grep -v '^#' | head -20
    [ "$side" != core-iscsi ] || cat $ISCSI_ROOT/0/stats
    [ "$side" != core-iscsi-2c ] || cat $ISCSI_ROOT/1/stats
}

for item in ${BENCH_PROFILE:-core-iscsi:rand-read-4k-qd32 open-iscsi:rand-read-4k-qd32 core-iscsi:seq-read-1m-qd8 open-iscsi:seq-read-1m-qd8}; do
    side=${item%%:*} job=${item#*:}
    case $side in
        core-iscsi)
            d=$(core_iscsi_login)
            profile_job core-iscsi "$d" "$job"
            core_iscsi_logout
            ;;
        open-iscsi)
            d=$(open_iscsi_login)
            profile_job open-iscsi "$d" "$job"
            open_iscsi_logout
            ;;
        core-iscsi-2c)
            echo 2 > "$tpg/param/MaxConnections"
            d=$(core_iscsi_2c_login)
            profile_job core-iscsi-2c "$d" "$job"
            core_iscsi_logout 1
            ;;
        open-iscsi-mp)
            d=$(open_iscsi_mp_login)
            profile_job open-iscsi-mp "$d" "$job"
            open_iscsi_mp_logout "$d"
            ;;
        ramdisk) profile_job ramdisk ram1 "$job" ;;
        *) fail "BENCH_PROFILE: unknown side '$side' in '$item'" ;;
    esac
done
ok "profiles in $OUT"
