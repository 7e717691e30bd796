#!/usr/bin/env python3
"""The benchmark's table: tests/bench/report.py RESULTS-DIR [--rounds] [--threads]
                          tests/bench/report.py --pool RESULTS-DIR...

Reads the fio JSON files tests/bench/guest.sh wrote (RESULTS-DIR/r<round>-<side>-<job>.json) and
prints one Markdown table: per job and side the median over rounds of MB/s, IOPS, mean total
latency (fio's lat_ns: submission to completion) and CPU µs per I/O, the ratios of the side's
median IOPS and CPU µs/IO to open-iscsi's, and the median of the per-round IOPS ratios of each
side to its counterpart: core-iscsi to open-iscsi, core-iscsi-2c (one session of 2 connections)
to open-iscsi-mp (2 sessions under dm-multipath). Each round runs every side back to back, so a
round's ratio is the least disturbed by the host's drifting load.

CPU µs per I/O: the busy time of all the guest's CPUs (user, nice, system, irq, softirq, steal
from /proc/stat, read by guest.sh before and after each fio run: fio, the initiator, the LIO
target and the network stack together), scaled to fio's measured window (job_runtime: without
the ramp, fio's start and its exit) by the share of the run's wall time that window is, over
the I/Os fio completed in it (read + write total_ios). Results without the .cpu files (older
runs) leave the column empty.

Host CPU µs per I/O: QEMU's CPU time on the host over the same run (the .cpu file's host_*
lines, from the samples tests/vm/run keeps when VM_HOST_CPU=1), scaled the same way by the
host's clock: the emulation's work and QEMU's own overhead, including its cost with the
guest idle (bench/devices gives it once a boot), without the time a vCPU thread waited for a
host CPU. Runs without host samples leave it empty.

With --rounds, also every round's IOPS and ratios, to show the spread, and fio's own CPU use,
the CPU µs per I/O and the TCP segments per I/O (from the nstat files guest.sh writes next to
fio's JSON).

With --threads, also where each side's CPU µs per I/O went, by group of threads (guest.sh's
.threads files: LIO's iscsi_trx and iscsi_ttx, the kworkers, ...; fio from its own report, as
it has exited when guest.sh looks), medians over rounds, scaled as CPU µs per I/O is: the
scheduler's runtime of each thread where the files have it (a third column, in ns), else its
clock ticks (older files). Either way the kernel (without CONFIG_IRQ_TIME_ACCOUNTING) charges
an interrupt or a softirq (the network stack's receive on lo) to the thread it interrupted;
the rest of the busy time is "unattributed".

With --pool, one line per job and ratio over several boots (one RESULTS-DIR each): each pair's
(and two connections' against open-iscsi's single session) per-round ratios of IOPS, of CPU µs
per I/O and of host CPU µs per I/O pooled, their geometric mean, and a 95 % interval for it
from resampling the boots and, within each, its rounds (the spread between boots is larger than
within one, so rounds alone would claim too much). The resampling is seeded: the same
directories print the same interval.
"""
import json
import math
import random
import re
import statistics
import sys
from pathlib import Path

SIDES = ["ramdisk", "core-iscsi", "open-iscsi", "core-iscsi-2c", "open-iscsi-mp"]
BASE = "open-iscsi"
# Each side of ours and the open-iscsi setup it is measured against round by round.
PAIRS = [("core-iscsi", "open-iscsi"), ("core-iscsi-2c", "open-iscsi-mp")]
# ... and, in --pool only, the pairs issue 14's bars also name: two connections against
# open-iscsi's single session.
POOL_PAIRS = PAIRS + [("core-iscsi-2c", "open-iscsi")]
JOB_TITLES = {
    "seq-read-1m-qd8": "1 MiB seq read, QD8",
    "seq-write-1m-qd8": "1 MiB seq write, QD8",
    "rand-read-4k-qd1": "4 KiB rand read, QD1",
    "rand-read-4k-qd32": "4 KiB rand read, QD32",
    "rand-write-4k-qd1": "4 KiB rand write, QD1",
    "rand-write-4k-qd32": "4 KiB rand write, QD32",
}
# A row: (MB/s, IOPS, mean latency µs, fio's CPU %, TCP segments per I/O, CPU µs per I/O, the
# host's CPU µs per I/O).
MBS, IOPS, LAT, FIO_CPU, SEGS, CPU_IO, HOST_IO = range(7)
# Longest names first: "core-iscsi-2c" is not "core-iscsi" with a job called "2c-...".
FILE_RE = re.compile(r"r(\d+)-(%s)(-.+)?\.json" % "|".join(
    re.escape(s) for s in sorted(SIDES, key=len, reverse=True)))


def load(results):
    """{job: {side: [(round, row), ...]}} plus the job order."""
    data, order = {}, []
    files = sorted(results.glob("r*.json"), key=lambda p: p.name)
    for f in files:
        # r<round>-<side>.json (all jobs) or r<round>-<side>-<job>.json (one job).
        m = FILE_RE.fullmatch(f.name)
        if not m:
            continue
        text = f.read_text()
        # fio may print notes before the JSON document.
        doc = json.loads(text[text.index("{"):])
        cpu = read_cpu(f.with_suffix(".cpu"))
        one = len(doc["jobs"]) == 1
        for job in doc["jobs"]:
            name = job["jobname"]
            io = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
            ios = job["read"]["total_ios"] + job["write"]["total_ios"]
            row = (io["bw_bytes"] / 1e6, io["iops"], io["lat_ns"]["mean"] / 1e3,
                   job["usr_cpu"] + job["sys_cpu"], segments(f.with_suffix(".nstat"), ios),
                   cpu_per_io(cpu, job.get("job_runtime", 0), ios) if one else None,
                   host_cpu_per_io(cpu, job.get("job_runtime", 0), ios) if one else None)
            if name not in order:
                order.append(name)
            data.setdefault(name, {}).setdefault(m.group(2), []).append((int(m.group(1)), row))
    return data, order


def read_cpu(path):
    """guest.sh's .cpu file ({clk_tck, wall_ns, busy_ticks, idle_ticks, cpus}), or None."""
    if not path.exists():
        return None
    out = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) == 2:
            out[f[0]] = int(f[1])
    return out if {"clk_tck", "wall_ns", "busy_ticks"} <= out.keys() else None


def cpu_per_io(cpu, runtime_ms, ios):
    """The guest's busy CPU µs per I/O in fio's measured window, or None."""
    if not cpu or ios <= 0 or cpu["wall_ns"] <= 0 or cpu["clk_tck"] <= 0:
        return None
    busy_us = cpu["busy_ticks"] * 1e6 / cpu["clk_tck"]
    return busy_us * window_share(cpu, runtime_ms) / ios


def window_share(cpu, runtime_ms, wall="wall_ns"):
    """The share of the run's wall time fio measured in (the rest: ramp, start, exit)."""
    return min(1.0, runtime_ms * 1e6 / cpu[wall]) if runtime_ms > 0 else 1.0


def host_cpu_per_io(cpu, runtime_ms, ios):
    """QEMU's CPU µs on the host per I/O in fio's measured window (scaled as cpu_per_io, by the
    host's clock), or None when the run has no host samples."""
    if (not cpu or ios <= 0 or cpu.get("host_wall_ns", 0) <= 0 or cpu.get("host_clk_tck", 0) <= 0
            or "host_busy_ticks" not in cpu):
        return None
    busy_us = cpu["host_busy_ticks"] * 1e6 / cpu["host_clk_tck"]
    return busy_us * window_share(cpu, runtime_ms, "host_wall_ns") / ios


def thread_us(path, cpu, runtime_ms, ios):
    """{group: CPU µs per I/O} from guest.sh's .threads file, scaled as cpu_per_io, or None."""
    if not path.exists() or cpu_per_io(cpu, runtime_ms, 1) is None or ios <= 0:
        return None
    share = window_share(cpu, runtime_ms)
    out = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) in (2, 3):
            # Older files named kworkers by the workqueue they were running: one group.
            group = "kworkers" if f[0].startswith("kworker") else f[0]
            if len(f) == 3:
                # The scheduler's runtime in ns: measured, where ticks are a sample.
                us = int(f[2]) / 1e3 * share / ios
            else:
                us = cpu_per_io(dict(cpu, busy_ticks=int(f[1])), runtime_ms, ios)
            out[group] = out.get(group, 0.0) + us
    return out


def load_threads(results):
    """{job: {side: [{group: µs per I/O}, ...]}} over the rounds that have .threads files."""
    out = {}
    for f in sorted(results.glob("r*.json"), key=lambda p: p.name):
        m = FILE_RE.fullmatch(f.name)
        if not m:
            continue
        text = f.read_text()
        doc = json.loads(text[text.index("{"):])
        if len(doc["jobs"]) != 1:
            continue
        job = doc["jobs"][0]
        ios = job["read"]["total_ios"] + job["write"]["total_ios"]
        t = thread_us(f.with_suffix(".threads"), read_cpu(f.with_suffix(".cpu")),
                      job.get("job_runtime", 0), ios)
        if t is not None and ios > 0:
            # fio's own figure: usr + sys, % of one CPU over its measured window.
            t["fio"] = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job.get("job_runtime", 0) * 1e3 / ios
            out.setdefault(job["jobname"], {}).setdefault(m.group(2), []).append(t)
    return out


def segments(nstat, ios):
    """TCP segments sent per I/O over the run (guest.sh's nstat: both ends share lo), or None."""
    if not nstat.exists() or ios <= 0:
        return None
    for line in nstat.read_text().splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] == "TcpOutSegs":
            return int(f[1]) / ios
    return 0.0


def median(rows, i):
    """The median of column i over the rounds that have it, or None."""
    xs = [r[i] for _, r in rows if r[i] is not None]
    return statistics.median(xs) if xs else None


def paired(rows, base, i=IOPS):
    """Column i of each round over the base's in the same round, by round."""
    theirs = dict(base)
    return {n: r[i] / theirs[n][i] for n, r in rows
            if n in theirs and r[i] is not None and theirs[n][i]}


def by_job(data, order):
    """(job's title, its sides' rounds, [(side, rounds)] in SIDES order for the sides it ran on)."""
    for job in order:
        sides = data[job]
        yield JOB_TITLES.get(job, job), sides, [(s, sides[s]) for s in SIDES if sides.get(s)]


def fmt(x, digits=1):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}" if x < 100 else f"{x:,.0f}"


def ratio(x, y):
    return f"{x / y:.2f}" if x is not None and y else ""


def pool(dirs):
    """The --pool report: per job and pair, the per-round ratios of every boot (IOPS, CPU/IO)."""
    boots = {}
    for d in dirs:
        data, _ = load(Path(d))
        for job, sides in data.items():
            for ours, theirs in POOL_PAIRS:
                if not (sides.get(ours) and sides.get(theirs)):
                    continue
                for what, i in (("IOPS", IOPS), ("CPU µs/IO", CPU_IO), ("host CPU µs/IO", HOST_IO)):
                    r = list(paired(sides[ours], sides[theirs], i).values())
                    if r:
                        boots.setdefault((job, f"{ours} / {theirs} {what}"), []).append(r)
    if not boots:
        sys.exit("report.py: no round with both sides of a pair in " + " ".join(dirs))
    rng = random.Random(7143)

    def geomean(xs):
        return math.exp(statistics.fmean(math.log(x) for x in xs))

    jobs = {j for j, _ in boots}
    order = [j for j in JOB_TITLES if j in jobs] + sorted(j for j in jobs if j not in JOB_TITLES)
    keys = [k for j in order for k in boots if k[0] == j]
    # The resampling draws for the first pair's IOPS ratios first, job after job, then the
    # others, the host CPU ratios after them and the pool-only pairs' ratios last: the
    # directories of runs before the other ratios existed print what they did, and so do the
    # older ratios of runs with host CPU figures or a pool-only pair.
    first = f"{PAIRS[0][0]} / {PAIRS[0][1]} IOPS"
    pool_only = tuple(f"{a} / {b} " for a, b in POOL_PAIRS[len(PAIRS):])
    interval = {}
    def draw_order(key):
        return key[1].startswith(pool_only), key[1] != first, "host CPU" in key[1]

    for key in sorted(keys, key=draw_order):
        groups = boots[key]
        means = sorted(
            geomean([rng.choice(g) for g in (rng.choice(groups) for _ in groups) for _ in g])
            for _ in range(10000))
        interval[key] = (means[250], means[9749])
    print("| job | ratio | boots | rounds | median of the boots' medians | geometric mean | 95 % interval |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in keys:
        groups, (lo, hi) = boots[key], interval[key]
        print(f"| {JOB_TITLES.get(key[0], key[0])} | {key[1]} | {len(groups)} | {sum(map(len, groups))} | "
              f"{statistics.median(statistics.median(g) for g in groups):.2f} | "
              f"{geomean([x for g in groups for x in g]):.3f} | {lo:.3f}-{hi:.3f} |")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--pool" in sys.argv:
        return pool(args) if args else sys.exit(__doc__)
    if len(args) != 1:
        sys.exit(__doc__)
    data, found = load(Path(args[0]))
    order = [j for j in JOB_TITLES if j in data] + [j for j in found if j not in JOB_TITLES]
    if not data:
        sys.exit(f"report.py: no fio results in {args[0]}")
    counterpart = dict(PAIRS)
    print("| job | device | MB/s | IOPS | mean lat (µs) | CPU µs/IO | host CPU µs/IO "
          "| vs open-iscsi (IOPS) | vs open-iscsi (CPU µs/IO) | vs open-iscsi (host CPU µs/IO) "
          "| per-round ratio to counterpart (median) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst = {}
    for title, sides, ran in by_job(data, order):
        base = sides.get(BASE)
        for side, rows in ran:
            mbs, iops, lat, cpu, host = (median(rows, i) for i in (MBS, IOPS, LAT, CPU_IO, HOST_IO))
            vs_iops = ratio(iops, median(base, IOPS)) if base else ""
            vs_cpu = ratio(cpu, median(base, CPU_IO)) if base else ""
            vs_host = ratio(host, median(base, HOST_IO)) if base else ""
            per_round = ""
            theirs = sides.get(counterpart.get(side, ""))
            if theirs:
                pr = paired(rows, theirs)
                if pr:
                    p = statistics.median(pr.values())
                    per_round = f"{p:.2f}"
                    r = iops / median(theirs, IOPS)
                    if side not in worst or min(r, p) < min(worst[side][0], worst[side][1]):
                        worst[side] = (r, p, title)
            print(f"| {title} | {side} | {fmt(mbs)} | {fmt(iops, 0)} | {fmt(lat)} | {fmt(cpu)} "
                  f"| {fmt(host)} | {vs_iops} | {vs_cpu} | {vs_host} | {per_round} |")
    nrounds = max(len(r) for s in data.values() for r in s.values())
    print()
    print(f"Medians over {nrounds} round(s). Ratios: the device's IOPS (= MB/s), CPU µs and host CPU µs per I/O over "
          f"open-iscsi's in the same boot; per round, IOPS over the counterpart's: "
          + ", ".join(f"{a} over {b}" for a, b in PAIRS) + ".")
    print("CPU µs/IO: the whole guest's busy CPU time (fio, initiator, LIO target, network) per I/O "
          "in fio's measured window. Host CPU µs/IO: QEMU's CPU time on the host per I/O in the "
          "same window (under TCG a vCPU that waits for a host CPU still looks busy to the guest).")
    for side, (r, p, title) in worst.items():
        print(f"Lowest {side}/{counterpart[side]} ratio: {r:.2f} of the medians, {p:.2f} per round "
              f"({title}).")
    if "--rounds" in sys.argv:
        print()
        print("| job | device | IOPS per round |")
        print("|---|---|---|")
        for title, sides, ran in by_job(data, order):
            for side, rows in ran:
                per = ", ".join(f"r{n}: {fmt(r[IOPS], 0)}" for n, r in sorted(rows))
                print(f"| {title} | {side} | {per} |")
            for ours, theirs in PAIRS:
                if sides.get(ours) and sides.get(theirs):
                    for what, i in (("IOPS", IOPS), ("CPU µs/IO", CPU_IO), ("host CPU µs/IO", HOST_IO)):
                        pr = paired(sides[ours], sides[theirs], i)
                        if pr:
                            per = ", ".join(f"r{n}: {x:.2f}" for n, x in sorted(pr.items()))
                            print(f"| {title} | {ours} / {theirs} {what} | {per} |")
        print()
        print("Where the time goes (medians): fio's CPU use (usr + sys, % of one CPU), the whole")
        print("guest's busy CPU µs per I/O, and TCP segments on lo per I/O (both directions: pure")
        print("ACKs included).")
        print()
        print("| job | device | fio CPU % | CPU µs/IO | TCP segments per I/O |")
        print("|---|---|---:|---:|---:|")
        for title, _, ran in by_job(data, order):
            for side, rows in ran:
                if side == "ramdisk":
                    continue
                seg = median(rows, SEGS)
                print(f"| {title} | {side} | {median(rows, FIO_CPU):.0f} | {fmt(median(rows, CPU_IO))} "
                      f"| {'-' if seg is None else f'{seg:.2f}'} |")
    if "--threads" in sys.argv:
        threads = load_threads(Path(args[0]))
        print()
        print("Where the CPU µs per I/O went, by group of threads (medians over rounds; groups under")
        print("3 % of the side's total left out; unattributed: busy time charged to no thread).")
        print()
        print("| job | device | CPU µs/IO | by thread (µs/IO) |")
        print("|---|---|---:|---|")
        for job in order:
            for side in SIDES:
                rounds = threads.get(job, {}).get(side)
                rows = data.get(job, {}).get(side)
                if not rounds or not rows or side == "ramdisk":
                    continue
                total = median(rows, CPU_IO)
                groups = {g for r in rounds for g in r}
                med = {g: statistics.median(r.get(g, 0.0) for r in rounds) for g in groups}
                shown = sorted(((v, g) for g, v in med.items() if total and v >= 0.03 * total),
                               reverse=True)
                parts = [f"{g} {v:.0f}" for v, g in shown]
                if total is not None:
                    parts.append(f"unattributed {max(0.0, total - sum(med.values())):.0f}")
                print(f"| {JOB_TITLES.get(job, job)} | {side} | {fmt(total)} | {', '.join(parts)} |")


if __name__ == "__main__":
    main()
