#!/usr/bin/env bash
# Device call R of 2026-12-07, after the review (residual fold removed, IGNIS_ENC_LN parsed once): the encoder
# GPU tests, memcheck on the LayerNorm test, and BERT-base fp16 latencies, default / IGNIS_ENC_LN=warp / =block.
# Usage on the GPU machine: bash scripts/gpu-session-20261207r.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests \
  --gtest_filter='CudaEncoderKernels.AddLayerNorm' > "$LOG/memcheck.log" 2>&1
echo "memcheck AddLayerNorm: rc=$?"; grep -E "ERROR SUMMARY" "$LOG/memcheck.log" | tail -1
enc_bench "default (streaming LayerNorm)" IGNIS_X=0
enc_bench "IGNIS_ENC_LN=warp" IGNIS_ENC_LN=warp
enc_bench "IGNIS_ENC_LN=block" IGNIS_ENC_LN=block
enc_bench "default again" IGNIS_X=0
