#!/usr/bin/env python3
"""The benchmark's table: tests/bench/report.py RESULTS-DIR [--rounds]

Reads the fio JSON files tests/bench/guest.sh wrote (RESULTS-DIR/r<round>-<side>-<job>.json) and
prints one Markdown table: per job and side the median over rounds of MB/s, IOPS and mean
total latency (fio's lat_ns: submission to completion), and the ratio core-iscsi/open-iscsi of
IOPS (for the latency column: open-iscsi/core-iscsi, so > 1 is better for us too). With
--rounds, also every round's IOPS, to show the spread.
"""
import json
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
            row = (io["bw_bytes"] / 1e6, io["iops"], io["lat_ns"]["mean"] / 1e3)
            if name not in order:
                order.append(name)
            data.setdefault(name, {}).setdefault(m.group(2), []).append((int(m.group(1)), row))
    return data, order


def median(rows, i):
    return statistics.median(r[i] for _, r in rows)


def fmt(x, digits=1):
    return f"{x:,.{digits}f}" if x < 100 else f"{x:,.0f}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        sys.exit(__doc__)
    data, found = load(Path(args[0]))
    order = [j for j in JOB_TITLES if j in data] + [j for j in found if j not in JOB_TITLES]
    if not data:
        sys.exit(f"report.py: no fio results in {args[0]}")
    print("| job | device | MB/s | IOPS | mean lat (µs) | vs open-iscsi (IOPS) |")
    print("|---|---|---:|---:|---:|---:|")
    worst = None
    for job in order:
        sides = data[job]
        base = sides.get("open-iscsi")
        for side in SIDES:
            rows = sides.get(side)
            if not rows:
                continue
            mbs, iops, lat = median(rows, 0), median(rows, 1), median(rows, 2)
            ratio = ""
            if base and side != "open-iscsi":
                r = iops / median(base, 1)
                ratio = f"{r:.2f}"
                if side == "core-iscsi" and (worst is None or r < worst[0]):
                    worst = (r, job)
            elif base:
                ratio = "1.00"
            print(f"| {JOB_TITLES.get(job, job)} | {side} | {fmt(mbs)} | {fmt(iops, 0)} | {fmt(lat)} | {ratio} |")
    nrounds = max(len(r) for s in data.values() for r in s.values())
    print()
    print(f"Medians over {nrounds} round(s). Ratio: IOPS (= MB/s) of the device over open-iscsi's in the same boot.")
    if worst:
        print(f"Lowest core-iscsi/open-iscsi ratio: {worst[0]:.2f} ({JOB_TITLES.get(worst[1], worst[1])}).")
    if "--rounds" in sys.argv:
        print()
        print("| job | device | IOPS per round |")
        print("|---|---|---|")
        for job in order:
            for side in SIDES:
                rows = data[job].get(side)
                if rows:
                    per = ", ".join(f"r{n}: {fmt(r[1], 0)}" for n, r in sorted(rows))
                    print(f"| {JOB_TITLES.get(job, job)} | {side} | {per} |")


if __name__ == "__main__":
    main()
