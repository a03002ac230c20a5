#!/usr/bin/env bash
# Device call A of 2026-12-08: the encoder flash attention after the pipelined form's removal (only the plain form
# with row sums on the tensor pipe is left). Encoder GPU tests, memcheck / racecheck on the attention test, BERT-base
# fp16 latencies (one run), then decode b1 of Llama-2-7B-shaped weights, bf16 and quantized (issue 5; its targets
# are H200 figures, so this part matters most on an H200).
# Usage on the GPU machine: bash scripts/gpu-session-20261208a.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
for tool in memcheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 $B/ignis_gpu_tests \
    --gtest_filter='CudaEncoderKernels.AttentionRagged' > "$LOG/$tool.log" 2>&1
  echo "$tool AttentionRagged: rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/$tool.log" | tail -2
done
enc_bench "plain form only (pipelined form removed)" IGNIS_X=0
decode_b1 "" "--quant int4 --group 128" "--quant int8" "--quant q4_k" "--quant q4_0"
timeout 100 compute-sanitizer --tool racecheck --error-exitcode 1 $B/ignis_gpu_tests \
  --gtest_filter='CudaEncoderKernels.AttentionRagged' > "$LOG/racecheck.log" 2>&1
echo "racecheck AttentionRagged: rc=$?"; grep -E "RACECHECK SUMMARY" "$LOG/racecheck.log" | tail -1
