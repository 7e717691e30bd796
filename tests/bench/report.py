#!/usr/bin/env python3
"""The benchmark's table: tests/bench/report.py RESULTS-DIR [--rounds]
                          tests/bench/report.py --pool RESULTS-DIR...

Reads the fio JSON files tests/bench/guest.sh wrote (RESULTS-DIR/r<round>-<side>-<job>.json) and
prints one Markdown table: per job and side the median over rounds of MB/s, IOPS and mean
total latency (fio's lat_ns: submission to completion), the ratio of the device's median IOPS
to open-iscsi's, and for core-iscsi the median of the per-round ratios (each round runs the two
initiators back to back, so a round's ratio is the least disturbed by the host's drifting load).
With --rounds, also every round's IOPS and ratio, to show the spread, and fio's CPU use and the
TCP segments per I/O (from the nstat files guest.sh writes next to fio's JSON).

With --pool, one line per job over several boots (one RESULTS-DIR each): the rounds' ratios
pooled, their geometric mean, and a 95 % interval for it from resampling the boots and, within
each, its rounds (the spread between boots is larger than within one, so rounds alone would
claim too much). The resampling is seeded: the same directories print the same interval.
"""
import json
import math
import random
import re
import statistics
import sys
from pathlib import Path

SIDES = ["ramdisk", "core-iscsi", "open-iscsi"]
JOB_TITLES = {
    "seq-read-1m-qd8": "1 MiB seq read, QD8",
    "seq-write-1m-qd8": "1 MiB seq write, QD8",
    "rand-read-4k-qd1": "4 KiB rand read, QD1",
    "rand-read-4k-qd32": "4 KiB rand read, QD32",
    "rand-write-4k-qd1": "4 KiB rand write, QD1",
    "rand-write-4k-qd32": "4 KiB rand write, QD32",
}


def load(results):
    """{job: {side: [(MB/s, IOPS, lat_us), ...per round]}} plus the job order."""
    data, order = {}, []
    files = sorted(results.glob("r*.json"), key=lambda p: p.name)
    for f in files:
        # r<round>-<side>.json (all jobs) or r<round>-<side>-<job>.json (one job).
        m = re.fullmatch(r"r(\d+)-(ramdisk|core-iscsi|open-iscsi)(-.+)?\.json", f.name)
        if not m:
            continue
        text = f.read_text()
        # fio may print notes before the JSON document.
        doc = json.loads(text[text.index("{"):])
        for job in doc["jobs"]:
            name = job["jobname"]
            io = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
            ios = job["read"]["total_ios"] + job["write"]["total_ios"]
            row = (io["bw_bytes"] / 1e6, io["iops"], io["lat_ns"]["mean"] / 1e3,
                   job["usr_cpu"] + job["sys_cpu"], segments(f.with_suffix(".nstat"), ios))
            if name not in order:
                order.append(name)
            data.setdefault(name, {}).setdefault(m.group(2), []).append((int(m.group(1)), row))
    return data, order


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
    return statistics.median(r[i] for _, r in rows)


def paired(rows, base):
    """core-iscsi/open-iscsi IOPS of each round both ran, by round."""
    theirs = dict(base)
    return {n: r[1] / theirs[n][1] for n, r in rows if n in theirs and theirs[n][1] > 0}


def by_job(data, order):
    """(job's title, its sides' rounds, [(side, rounds)] in SIDES order for the sides it ran on)."""
    for job in order:
        sides = data[job]
        yield JOB_TITLES.get(job, job), sides, [(s, sides[s]) for s in SIDES if sides.get(s)]


def fmt(x, digits=1):
    return f"{x:,.{digits}f}" if x < 100 else f"{x:,.0f}"


def pool(dirs):
    """The --pool report: per job, the core-iscsi/open-iscsi ratios of every round of every boot."""
    boots = {}
    for d in dirs:
        data, _ = load(Path(d))
        for job, sides in data.items():
            if sides.get("core-iscsi") and sides.get("open-iscsi"):
                r = list(paired(sides["core-iscsi"], sides["open-iscsi"]).values())
                if r:
                    boots.setdefault(job, []).append(r)
    if not boots:
        sys.exit("report.py: no round with both initiators in " + " ".join(dirs))
    rng = random.Random(7143)

    def geomean(xs):
        return math.exp(statistics.fmean(math.log(x) for x in xs))

    print("| job | boots | rounds | median of the boots' medians | geometric mean | 95 % interval |")
    print("|---|---:|---:|---:|---:|---:|")
    order = [j for j in JOB_TITLES if j in boots] + [j for j in boots if j not in JOB_TITLES]
    for job in order:
        groups = boots[job]
        means = sorted(
            geomean([rng.choice(g) for g in (rng.choice(groups) for _ in groups) for _ in g])
            for _ in range(10000))
        print(f"| {JOB_TITLES.get(job, job)} | {len(groups)} | {sum(map(len, groups))} | "
              f"{statistics.median(statistics.median(g) for g in groups):.2f} | "
              f"{geomean([x for g in groups for x in g]):.3f} | {means[250]:.3f}-{means[9749]:.3f} |")


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
    print("| job | device | MB/s | IOPS | mean lat (µs) | vs open-iscsi (IOPS) | per-round ratio (median) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    worst = None
    for title, sides, ran in by_job(data, order):
        base = sides.get("open-iscsi")
        for side, rows in ran:
            mbs, iops, lat = median(rows, 0), median(rows, 1), median(rows, 2)
            ratio, per_round = "", ""
            if base and side != "open-iscsi":
                r = iops / median(base, 1)
                ratio = f"{r:.2f}"
                if side == "core-iscsi":
                    pr = paired(rows, base)
                    p = statistics.median(pr.values()) if pr else r
                    per_round = f"{p:.2f}"
                    if worst is None or min(r, p) < min(worst[0], worst[1]):
                        worst = (r, p, title)
            elif base:
                ratio = "1.00"
            print(f"| {title} | {side} | {fmt(mbs)} | {fmt(iops, 0)} | {fmt(lat)} | {ratio} | {per_round} |")
    nrounds = max(len(r) for s in data.values() for r in s.values())
    print()
    print(f"Medians over {nrounds} round(s). Ratio: IOPS (= MB/s) of the device over open-iscsi's in the same boot.")
    if worst:
        print(f"Lowest core-iscsi/open-iscsi ratio: {worst[0]:.2f} of the medians, {worst[1]:.2f} per round "
              f"({worst[2]}).")
    if "--rounds" in sys.argv:
        print()
        print("| job | device | IOPS per round |")
        print("|---|---|---|")
        for title, sides, ran in by_job(data, order):
            for side, rows in ran:
                per = ", ".join(f"r{n}: {fmt(r[1], 0)}" for n, r in sorted(rows))
                print(f"| {title} | {side} | {per} |")
            base, ours = sides.get("open-iscsi"), sides.get("core-iscsi")
            if base and ours:
                per = ", ".join(f"r{n}: {x:.2f}" for n, x in sorted(paired(ours, base).items()))
                print(f"| {title} | core-iscsi / open-iscsi | {per} |")
        print()
        print("Where the time goes (medians): fio's CPU use (usr + sys, % of one CPU) and TCP")
        print("segments on lo per I/O (both directions: pure ACKs included).")
        print()
        print("| job | device | fio CPU % | TCP segments per I/O |")
        print("|---|---|---:|---:|")
        for title, _, ran in by_job(data, order):
            for side, rows in ran:
                if side == "ramdisk":
                    continue
                segs = [r[4] for _, r in rows if r[4] is not None]
                seg = f"{statistics.median(segs):.2f}" if segs else "-"
                print(f"| {title} | {side} | {median(rows, 3):.0f} | {seg} |")


if __name__ == "__main__":
    main()
