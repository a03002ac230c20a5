#!/usr/bin/env bash
# Device call Q of 2026-12-07: decode tok/s of Llama-2-7B-shaped random weights at batch 1, bf16 and the quantized
# formats of issue 5 (its targets are H200 figures: run it where the device is an H200), with the final build.
# Usage on the GPU machine: bash scripts/gpu-session-20261207q.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
for q in "" "--quant int4 --group 128" "--quant int8" "--quant q4_k" "--quant q4_0"; do
  v=$(timeout 60 $B/ignis bench --synthetic llama-2-7b -p 8 -n 128 -r 2 --batch 1 $q --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("b%d: %.1f tok/s (%.0f%% of copy)" % (r["batch"], r["decode_tok_s"], 100*r["decode_frac_copy"]) for r in d["rows"]))')
  echo "llama-2-7b ${q:-bf16}: $v"
done
