#!/usr/bin/env bash
# Device call Q of 2026-12-07, the final build: on an H200 (issue 5's targets are H200 figures) first the decode
# tok/s of Llama-2-7B-shaped random weights at batch 1, bf16 and the quantized formats, then every GPU test; on an
# H100 (quantized figures of this build's code measured earlier the same day) every GPU test first, then bf16 / int4.
# Usage on the GPU machine: bash scripts/gpu-session-20261207q.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
all_tests() {
  timeout 200 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -8
}
if grep -q H200 "$LOG/device.txt"; then
  decode_b1 "" "--quant int4 --group 128" "--quant int8" "--quant q4_k" "--quant q4_0"
  all_tests
else
  all_tests
  decode_b1 "" "--quant int4 --group 128"
fi
