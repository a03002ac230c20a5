#!/usr/bin/env bash
# Device call Q of 2026-12-07, the final build: on an H200 (issue 5's targets are H200 figures) first the decode
# tok/s of Llama-2-7B-shaped random weights at batch 1, bf16 and the quantized formats, then every GPU test; on an
# H100 (quantized figures of this build's code measured earlier the same day) every GPU test first, then bf16 / int4.
# Usage on the GPU machine: bash scripts/gpu-session-20261207q.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
decode() {  # decode tok/s at batch 1 for each format given
  for q in "$@"; do
    v=$(timeout 60 $B/ignis bench --synthetic llama-2-7b -p 8 -n 128 -r 2 --batch 1 $q --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("b%d: %.1f tok/s (%.0f%% of copy)" % (r["batch"], r["decode_tok_s"], 100*r["decode_frac_copy"]) for r in d["rows"]))')
    echo "llama-2-7b ${q:-bf16}: $v"
  done
}
all_tests() {
  timeout 200 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -8
}
if grep -q H200 "$LOG/device.txt"; then
  decode "" "--quant int4 --group 128" "--quant int8" "--quant q4_k" "--quant q4_0"
  all_tests
else
  all_tests
  decode "" "--quant int4 --group 128"
fi
