#!/usr/bin/env python3
"""Logits parity of ignis with Hugging Face transformers on randomly initialised Llama models.

Builds LlamaForCausalLM models (GQA with an untied head; a tied head; llama3 rope scaling),
saves them with save_pretrained (safetensors), runs HF in fp32 on a random 64-token prompt,
then `ignis logits` on each device/precision given, and compares every position:
relative error ||ignis - hf|| / ||hf|| per position must stay under the tolerance
(fp32: 1e-4) and fp32 argmaxes must agree at every position. For bf16 the yardstick is HF
itself run in bf16: ignis bf16 may be at most 1.5x HF-bf16's own error against HF fp32
(bf16 keeps 8 mantissa bits; with these weights that alone is ~2% on the logits).

    python3 tests/reference/hf_parity.py --ignis build/ignis --modes cpu            # here
    python3 tests/reference/hf_parity.py --ignis build/ignis --modes cpu cuda-f32 cuda-bf16   # GPU machine
Exit status 1 if any check fails.
"""
import argparse, json, os, subprocess, sys, tempfile

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

CASES = {
    "gqa-untied": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=8,
                       num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=False, rope_theta=10000.0),
    "tied": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=2, num_attention_heads=6,
                 num_key_value_heads=6, vocab_size=777, tie_word_embeddings=True, rope_theta=500000.0),
    "llama3-scaling": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=640, tie_word_embeddings=False, rope_theta=500000.0,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
}
TOL = {"cpu": 1e-4, "cuda-f32": 1e-4, "cuda-bf16": 1e-2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ignis", default="build/ignis")
    ap.add_argument("--modes", nargs="+", default=["cpu"])
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    failures, rows = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in CASES.items():
            cfg = LlamaConfig(max_position_embeddings=256, rms_norm_eps=1e-5, **kw)
            model = LlamaForCausalLM(cfg).float().eval()
            # Larger-than-default weights so the logits are far from uniform and argmax is meaningful.
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() == 2:
                        p.normal_(0, 0.08)
            folder = os.path.join(tmp, name)
            model.save_pretrained(folder, safe_serialization=True)
            ids = torch.randint(0, cfg.vocab_size, (1, args.tokens))
            with torch.no_grad():
                ref = model(ids).logits[0].numpy().astype(np.float64)
                hf_bf16 = model.to(torch.bfloat16)(ids).logits[0].float().numpy().astype(np.float64)
                model.float()
            bf16_yard = float((np.linalg.norm(hf_bf16 - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())
            print(f"{name}: HF bf16 vs HF fp32 max relative error {bf16_yard:.2e}")
            for mode in args.modes:
                out = os.path.join(tmp, f"{name}-{mode}.bin")
                cmd = [args.ignis, "logits", "-m", folder, "--tokens", " ".join(map(str, ids[0].tolist())), "-o", out]
                if mode.startswith("cuda"):
                    cmd += ["--device", "cuda", "--dtype", mode.split("-")[1]]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"{name:15s} {mode:10s} FAILED to run: {r.stderr.strip()}")
                    failures += 1
                    continue
                got = np.fromfile(out, dtype="<f4").reshape(ref.shape).astype(np.float64)
                rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
                agree = int((got.argmax(1) == ref.argmax(1)).sum())
                tol = max(TOL.get(mode, 0), 1.5 * bf16_yard) if mode == "cuda-bf16" else TOL[mode]
                ok = rel.max() < tol and (mode == "cuda-bf16" or agree == len(rel))
                failures += 0 if ok else 1
                rows.append((name, mode, rel.max(), rel.mean(), agree, len(rel), ok))
    print(f"\n{'model':15s} {'mode':10s} {'max rel err':>12s} {'mean rel err':>13s} {'argmax agree':>13s}  result")
    for name, mode, mx, mean, agree, n, ok in rows:
        print(f"{name:15s} {mode:10s} {mx:12.2e} {mean:13.2e} {agree:>6d}/{n:<6d}  {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
