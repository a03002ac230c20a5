#!/usr/bin/env python3
"""Peer benchmark for BERT-family encoders on one GPU: ignis vs Hugging Face eager vs HF with
SDPA attention vs torch.compile(mode="reduce-overhead"), fp16, same model, same run.

  python3 bench/peers_bert.py --ignis build-gpu/ignis --out bench-out
  python3 bench/peers_bert.py --ignis build-gpu/ignis --out bench-out --engines ignis sdpa --reps 10

No network: a random-initialised BertModel(BertConfig()) (bert-base shape) is saved with
save_pretrained(safe_serialization=True) into a temporary folder, with a synthetic vocab.txt
(ignis' loader wants a tokenizer; the ids are random anyway). Every engine runs that folder.

Workloads: batch {1, 8, 32} x seq {16, 128, 256, 512}, plus a ragged batch of 32 sequences with
lengths drawn uniformly from 16..512 (fixed seed). HF/torch get the ragged batch padded to its
longest sequence with an attention mask (that is how they run it); ignis packs it without padding,
and also runs a uniform batch with the same number of tokens ("uniform-eq") to show that the
padding costs it nothing.

Timing: CUDA events around one forward call (inputs already on the GPU, outputs left there),
median of --reps calls after warm-up. torch.compile is compiled afresh for each shape
(torch._dynamo.reset(), dynamic=False) and its warm-up (the first 3 calls: compilation and CUDA
graph recording) is reported per shape; ignis reports its first call per shape (an eager pass plus
the capture of a CUDA graph when the token bucket is new). Peak memory: torch.cuda.max_memory_allocated
per shape for the torch engines, ignis' own allocations (weights + activations for the largest
shape + cuBLASLt workspace) for ignis.

Parity: ignis' last hidden states against HF fp32 (eager) on a padded batch of mixed lengths,
real tokens only: ignis f32 (1e-4 relative) and f16 (1e-2), with HF fp16's own error for scale.

Output: one aligned table on stdout, and in --out: peers_bert.json, peers_bert.png (speed-ups by
shape, if matplotlib is importable).
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

SEQS = [16, 128, 256, 512]
BATCHES = [1, 8, 32]
ENGINES = ["eager", "sdpa", "compile", "ignis"]
NAMES = {"eager": "HF eager", "sdpa": "HF sdpa", "compile": "torch.compile", "ignis": "ignis"}
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def ragged_lengths(n=32, lo=16, hi=512, seed=0):
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


def make_model_folder(folder, seed):
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig()  # bert-base: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522, 512 positions
    model = BertModel(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # A WordPiece vocabulary with BERT's special ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103).
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"tok{i}" for i in range(cfg.vocab_size - len(vocab))]
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    return cfg


def load_hf(folder, attn, dtype, dev):
    from transformers import BertModel
    try:
        m = BertModel.from_pretrained(folder, attn_implementation=attn, dtype=dtype)
    except TypeError:
        m = BertModel.from_pretrained(folder, attn_implementation=attn, torch_dtype=dtype)
    return m.to(dev).eval()


def batch_inputs(lengths, vocab, dev, seed):
    """input_ids / attention_mask padded to the longest sequence (HF's layout)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    S = max(lengths)
    ids = torch.zeros(len(lengths), S, dtype=torch.long)
    mask = torch.zeros(len(lengths), S, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1000, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return ids.to(dev), mask.to(dev)


def time_calls(fn, reps):
    import torch
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(reps):
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ms.append(e0.elapsed_time(e1))
    return ms


def bench_torch(engine, model, shapes, reps, vocab, dev, budget_s):
    import torch
    rows = {}
    for name, lengths in shapes:
        if time.time() > budget_s:
            rows[name] = {"error": "skipped: time budget"}
            continue
        try:
            ids, mask = batch_inputs(lengths, vocab, dev, seed=len(name))
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            fn_model = model
            warm = None
            with torch.no_grad():
                if engine == "compile":
                    torch._dynamo.reset()
                    fn_model = torch.compile(model, mode="reduce-overhead", dynamic=False)
                t = time.perf_counter()
                for _ in range(3):  # compile + CUDA graph warm-up / recording
                    fn_model(input_ids=ids, attention_mask=mask)
                torch.cuda.synchronize()
                warm = time.perf_counter() - t
                for _ in range(2):
                    fn_model(input_ids=ids, attention_mask=mask)
                ms = time_calls(lambda: fn_model(input_ids=ids, attention_mask=mask), reps)
            rows[name] = {"ms": statistics.median(ms), "min_ms": min(ms), "warmup_s": warm,
                          "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
            log(f"{NAMES[engine]:14s} {name:10s} {rows[name]['ms']:8.3f} ms  (warm-up {warm:.2f} s)")
        except Exception as e:  # noqa: BLE001 -- one failing shape must not stop the others
            rows[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            log(f"{NAMES[engine]} {name}: FAILED {rows[name]['error']}")
            traceback.print_exc(limit=3)
        finally:
            if engine == "compile":
                torch._dynamo.reset()
            torch.cuda.empty_cache()
    return rows


def bench_ignis(exe, folder, shapes, ragged, reps, timeout):
    uniform = [n for n, _ in shapes if not n.startswith("ragged")]
    eq = round(sum(ragged) / len(ragged))
    cmd = [exe, "bench-encoder", "-m", folder, "--dtype", "f16", "--json", "--reps", str(reps),
           "--shapes", ",".join(uniform + [f"{len(ragged)}x{eq}"]), "--ragged", ",".join(map(str, ragged))]
    log("ignis: " + " ".join(cmd[:8]) + " ...")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"ignis exited {p.returncode}: {p.stderr[-2000:]}")
    j = json.loads(p.stdout)
    rows = {}
    for r in j["rows"]:
        name = r["name"]
        if name.startswith("ragged"):
            name = "ragged"
        elif name == f"{len(ragged)}x{eq}" and name not in uniform:
            name = "uniform-eq"
        rows[name] = {"ms": r["ms"], "min_ms": r["min_ms"], "first_ms": r["first_ms"], "new_graph": r["new_graph"],
                      "capture_ms": r["capture_ms"], "tokens": r["tokens"], "bucket": r["bucket"],
                      "tflops": r["tflops"], "peak_gib": j["peak_alloc_bytes"] / 2**30}
    return rows, j


def parity(exe, folder, cfg, dev, out_dir):
    """ignis hidden states (f32 and f16) vs HF fp32 on a padded batch of mixed lengths."""
    import numpy as np
    import torch
    lengths = [5, 17, 64, 128, 300, 1]
    ids, mask = batch_inputs(lengths, cfg.vocab_size, dev, seed=7)
    ids[:, 0] = 101  # [CLS] first, as real inputs
    with torch.no_grad():
        ref32 = load_hf(folder, "eager", torch.float32, dev)(input_ids=ids, attention_mask=mask).last_hidden_state
        ref16 = load_hf(folder, "sdpa", torch.float16, dev)(input_ids=ids, attention_mask=mask).last_hidden_state
    want = torch.cat([ref32[i, :n] for i, n in enumerate(lengths)]).double().cpu().numpy()
    hf16 = torch.cat([ref16[i, :n] for i, n in enumerate(lengths)]).double().cpu().numpy()
    ids_file = os.path.join(out_dir, "parity_ids.json")
    with open(ids_file, "w") as f:
        json.dump({"ids": [ids[i, :n].tolist() for i, n in enumerate(lengths)]}, f)

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    res = {"lengths": lengths, "hf_f16_vs_hf_f32": rel(hf16, want)}
    for dt, tol in (("f32", 1e-4), ("f16", 1e-2)):
        h = os.path.join(out_dir, f"parity_hidden_{dt}.bin")
        p = subprocess.run([exe, "bench-encoder", "-m", folder, "--dtype", dt, "--ids", ids_file, "--hidden-out", h],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            res[f"ignis_{dt}"] = {"error": p.stderr[-1000:]}
            continue
        got = np.fromfile(h, dtype=np.float32).astype(np.float64)
        if got.size != want.size:
            res[f"ignis_{dt}"] = {"error": f"{got.size} values, expected {want.size}"}
            continue
        got = got.reshape(want.shape)
        e = rel(got, want)
        res[f"ignis_{dt}"] = {"rel_err": e, "max_abs": float(np.abs(got - want).max()), "tol": tol, "ok": e <= tol}
    return res


def fmt(v, w=9, p=3):
    return f"{v:{w}.{p}f}" if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else f"{'-':>{w}}"


def table(names, results, engines):
    hdr = f"{'shape':10s}" + "".join(f"{NAMES[e][:13]:>14s}" for e in engines)
    others = [e for e in engines if e != "ignis"]
    hdr += "".join(f"{'x ' + NAMES[e][:9]:>12s}" for e in others) if "ignis" in engines else ""
    hdr += f"{'compile warm s':>15s}{'ignis 1st ms':>13s}"
    lines = [hdr, "-" * len(hdr)]
    for n in names:
        row = f"{n:10s}"
        ms = {e: results.get(e, {}).get(n, {}).get("ms") for e in engines}
        for e in engines:
            row += f"{fmt(ms[e], 14)}"
        if "ignis" in engines:
            for e in others:
                s = ms[e] / ms["ignis"] if ms.get(e) and ms.get("ignis") else None
                row += f"{fmt(s, 11, 2)}x" if s else f"{'-':>12s}"
        row += fmt(results.get("compile", {}).get(n, {}).get("warmup_s"), 15, 2)
        row += fmt(results.get("ignis", {}).get(n, {}).get("first_ms"), 13, 1)
        lines.append(row)
    return "\n".join(lines)


def plot(names, results, engines, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001
        return "matplotlib is not importable: no plot"
    others = [e for e in engines if e != "ignis"]
    names = [n for n in names if results.get("ignis", {}).get(n, {}).get("ms")
             and any(results.get(e, {}).get(n, {}).get("ms") for e in others)]
    fig, ax = plt.subplots(figsize=(max(8, len(names) * 0.9), 4.5))
    w = 0.8 / max(1, len(others))
    for k, e in enumerate(others):
        ys = []
        for n in names:
            a, b = results.get(e, {}).get(n, {}).get("ms"), results["ignis"][n]["ms"]
            ys.append(a / b if a else 0)
        ax.bar([i + (k - (len(others) - 1) / 2) * w for i in range(len(names))], ys, w, label=f"vs {NAMES[e]}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("ignis speed-up (x)")
    ax.set_title("BERT-base fp16 latency: ignis speed-up by shape (batch x seq)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot: {path}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ignis", default="build-gpu/ignis", help="the ignis binary")
    ap.add_argument("--out", default="bench-out", help="output folder (JSON, PNG, parity files)")
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--budget", type=float, default=1500, help="seconds for the torch engines in all")
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    import torch
    assert torch.cuda.is_available(), "no CUDA device visible to torch"
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    log(f"{gpu}, torch {torch.__version__}")
    ragged = ragged_lengths(seed=args.seed)
    shapes = [(f"{b}x{s}", [s] * b) for b in BATCHES for s in SEQS] + [("ragged", ragged)]
    names = [n for n, _ in shapes] + ["uniform-eq"]
    out = {"device": gpu, "torch": torch.__version__, "ragged_lengths": ragged, "ragged_tokens": sum(ragged),
           "reps": args.reps, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": {}, "errors": []}
    try:
        import transformers
        out["transformers"] = transformers.__version__
    except Exception:  # noqa: BLE001
        pass

    with tempfile.TemporaryDirectory(prefix="ignis-bert-") as folder:
        cfg = make_model_folder(folder, args.seed)
        log(f"random BertModel saved to {folder}")
        if not args.no_parity and "ignis" in args.engines:
            try:
                out["parity"] = parity(args.ignis, folder, cfg, dev, args.out)
                log("parity: " + json.dumps(out["parity"]))
            except Exception as e:  # noqa: BLE001
                out["errors"].append(f"parity: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3)
        if "ignis" in args.engines:
            try:
                out["results"]["ignis"], out["ignis_raw"] = bench_ignis(args.ignis, folder, shapes, ragged, args.reps, 900)
            except Exception as e:  # noqa: BLE001
                out["errors"].append(f"ignis: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3)
        budget_end = time.time() + args.budget
        for engine in [e for e in args.engines if e != "ignis"]:
            try:
                attn = "eager" if engine == "eager" else "sdpa"
                model = load_hf(folder, attn, torch.float16, dev)
                out["results"][engine] = bench_torch(engine, model, shapes, args.reps, cfg.vocab_size, dev, budget_end)
                del model
                torch.cuda.empty_cache()
            except Exception as e:  # noqa: BLE001
                out["errors"].append(f"{engine}: {type(e).__name__}: {e}")
                traceback.print_exc(limit=3)

    engines = [e for e in args.engines if e in out["results"]]
    print()
    print(f"BERT-base fp16 latency (ms, median of {args.reps}) on {gpu}; ignis speed-up = peer ms / ignis ms")
    print(table(names, out["results"], engines))
    ig = out["results"].get("ignis", {})
    if "ragged" in ig and "uniform-eq" in ig:
        print(f"\nragged ({sum(ragged)} tokens in {len(ragged)} sequences): ignis {ig['ragged']['ms']:.3f} ms packed vs "
              f"{ig['uniform-eq']['ms']:.3f} ms for a uniform batch of {ig['uniform-eq']['tokens']} tokens")
    if "parity" in out:
        p = out["parity"]
        print(f"\nparity vs HF fp32 (lengths {p['lengths']}): HF fp16 {p['hf_f16_vs_hf_f32']:.2e}", end="")
        for dt in ("f32", "f16"):
            r = p.get(f"ignis_{dt}", {})
            print(f" | ignis {dt} " + (f"{r['rel_err']:.2e} ({'ok' if r['ok'] else 'FAIL'}, tol {r['tol']:g})"
                                     if "rel_err" in r else f"error {r.get('error', '?')[:200]}"), end="")
        print()
    if ig:
        print("\npeak memory (GiB): " + ", ".join(
            f"{NAMES[e]} {max((r.get('peak_gib') or 0) for r in out['results'][e].values()):.2f}" for e in engines))
    print(plot(names, out["results"], engines, os.path.join(args.out, "peers_bert.png")))
    for e in out["errors"]:
        print("error:", e)
    with open(os.path.join(args.out, "peers_bert.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(f"results: {os.path.join(args.out, 'peers_bert.json')}")
    parity_ok = all(v.get("ok", False) for k, v in out.get("parity", {}).items() if k.startswith("ignis_"))
    return 0 if (not out["errors"] and parity_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
