#!/usr/bin/env python3
"""Sums an `ncu --csv` report (gpu-check.sh ncu) by kernel and grid size: launches, total and mean duration,
DRAM bytes read and the achieved read bandwidth. Usage: ncu_summary.py ncu.csv"""
import csv
import sys
from collections import defaultdict


def main(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    hdr = next((i for i, r in enumerate(rows) if "Kernel Name" in r and "Metric Name" in r), None)
    if hdr is None:
        print("no ncu table in", path)
        return 1
    h = rows[hdr]
    ki, mi, ui, vi, idi = (h.index(c) for c in ("Kernel Name", "Metric Name", "Metric Unit", "Metric Value", "ID"))
    per = defaultdict(dict)
    names = {}
    for r in rows[hdr + 1:]:
        if len(r) <= max(ki, mi, vi):
            continue
        try:
            v = float(r[vi].replace(",", ""))
        except ValueError:
            continue
        # units as ncu spells them (older releases: nsecond / Kbyte, newer: ns / KB)
        scale = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
                 "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0,
                 "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9,
                 "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9}.get(r[ui], 1.0)
        per[r[idi]][r[mi]] = v * scale
        grid = r[h.index("Grid Size")] if "Grid Size" in h else ""
        names[r[idi]] = r[ki].split("(")[0].split("<")[0].replace("void ", "").replace("unnamed>::", "").strip() + \
            (" " + grid if grid else "")
    agg = defaultdict(lambda: [0, 0.0, 0.0])
    for i, m in per.items():
        a = agg[names[i]]
        a[0] += 1
        a[1] += m.get("gpu__time_duration.sum", 0.0)
        a[2] += m.get("dram__bytes_read.sum", 0.0)
    tot = sum(a[1] for a in agg.values())
    print(f"{'kernel, grid':<40} {'launches':>8} {'total ms':>9} {'mean us':>8} {'GB read':>8} {'GB/s':>7}")
    for k, (n, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"{k:<40} {n:>8} {t * 1e3:>9.3f} {t / n * 1e6:>8.2f} {b / 1e9:>8.3f} {b / t / 1e9 if t else 0:>7.0f}")
    print(f"{'all':<40} {sum(a[0] for a in agg.values()):>8} {tot * 1e3:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
