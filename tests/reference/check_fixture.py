#!/usr/bin/env python3
"""Compares a logits file written by the engine with a reference fixture.

  python3 tests/reference/check_fixture.py FIXTURE.json LOGITS.bin [--atol A] [--rtol R]
                                           [--greedy-ids 1,2,3]

LOGITS.bin: little-endian float32, row-major, either the fixture's full shape
[rows, vocab] (same positions, same order: see "logits.positions" in the JSON) or a single
row of vocab floats, which is compared with the fixture's last row.

Prints per-row and overall max abs error, max relative error (|d| / max|ref| of the row),
whether each row's argmax agrees, and (with --greedy-ids) how many leading greedy ids agree.
Exit status: 0 when within --atol (absolute, default: no limit) and --rtol (relative to the
row's max |ref|, default: no limit) and all argmaxes agree; 1 otherwise; 2 on bad input.
"""
import argparse
import json
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixture")
    ap.add_argument("logits")
    ap.add_argument("--atol", type=float, default=None)
    ap.add_argument("--rtol", type=float, default=None)
    ap.add_argument("--greedy-ids", default=None,
                    help="comma-separated greedy ids produced by the engine after the prompt")
    a = ap.parse_args()

    try:
        meta = json.load(open(a.fixture, encoding="utf-8"))
        lg = meta["logits"]
        rows, vocab = lg["shape"]
        ref_path = os.path.join(os.path.dirname(os.path.abspath(a.fixture)), lg["file"])
        ref = np.fromfile(ref_path, dtype="<f4")
        if ref.size != rows * vocab:
            raise ValueError(f"{ref_path}: {ref.size} floats, fixture says {rows}x{vocab}")
        ref = ref.reshape(rows, vocab).astype(np.float64)
        got = np.fromfile(a.logits, dtype="<f4").astype(np.float64)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    positions = list(lg.get("positions", range(rows)))
    if got.size == rows * vocab:
        got = got.reshape(rows, vocab)
    elif got.size == vocab:
        ref, positions = ref[-1:], positions[-1:]
        got = got.reshape(1, vocab)
    else:
        print(f"error: {a.logits}: {got.size} floats; expected {rows}x{vocab} = {rows * vocab} "
              f"or one row of {vocab}", file=sys.stderr)
        return 2
    if not np.all(np.isfinite(got)):
        print(f"error: {a.logits}: {int((~np.isfinite(got)).sum())} non-finite values", file=sys.stderr)
        return 1

    print(f"fixture {meta.get('name', a.fixture)}: {ref.shape[0]} rows x {vocab}")
    print(f"{'pos':>5} {'max|ref|':>10} {'max abs err':>12} {'rel err':>10} {'mean abs':>10} "
          f"{'argmax ref':>10} {'argmax got':>10}")
    ok = True
    worst_abs = worst_rel = 0.0
    for r in range(ref.shape[0]):
        d = np.abs(got[r] - ref[r])
        scale = max(np.abs(ref[r]).max(), 1e-30)
        ea, er = float(d.max()), float(d.max() / scale)
        am_r, am_g = int(ref[r].argmax()), int(got[r].argmax())
        worst_abs, worst_rel = max(worst_abs, ea), max(worst_rel, er)
        flag = "" if am_r == am_g else "  <-- argmax differs"
        ok &= am_r == am_g
        print(f"{positions[r]:>5} {scale:>10.4f} {ea:>12.4e} {er:>10.3e} {float(d.mean()):>10.3e} "
              f"{am_r:>10} {am_g:>10}{flag}")
    print(f"overall: max abs err {worst_abs:.4e}, max rel err {worst_rel:.3e}")
    if a.atol is not None and worst_abs > a.atol:
        print(f"FAIL: max abs err {worst_abs:.4e} > atol {a.atol}")
        ok = False
    if a.rtol is not None and worst_rel > a.rtol:
        print(f"FAIL: max rel err {worst_rel:.3e} > rtol {a.rtol}")
        ok = False
    if a.greedy_ids:
        mine = [int(x) for x in a.greedy_ids.replace(" ", ",").split(",") if x]
        want = meta["greedy"]["ids"]
        n = 0
        while n < min(len(mine), len(want)) and mine[n] == want[n]:
            n += 1
        print(f"greedy: {n} of {len(want)} leading ids agree")
        if n < min(len(mine), len(want)):
            margins = meta["greedy"].get("top2_margins")
            note = f" (reference top-2 margin there: {margins[n]})" if margins else ""
            print(f"  first difference at step {n}: got {mine[n]}, want {want[n]}{note}")
            ok = False
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
