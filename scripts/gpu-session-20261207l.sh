#!/usr/bin/env bash
# Device call L of 2026-12-07: the residual add before each encoder LayerNorm moved into the cuBLASLt epilogue
# (beta = 1, C = x; the LayerNorm then reads one tensor): the encoder GPU tests, memcheck on the changed kernels'
# tests, BERT-base fp16 latencies with IGNIS_ENC_RESFOLD=0 (the add in the LayerNorm, as before) / 1, alternated.
# (The packed binaries were built from 615fbf0, where the fold is on by default, so the tests run it.)
# Usage on the GPU machine: bash scripts/gpu-session-20261207l.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests \
  --gtest_filter='CudaEncoderKernels.AddLayerNorm:CudaEncoderKernels.GemmEpilogues:CudaEncoder.SplitKMatchesPlainProducts' > "$LOG/memcheck.log" 2>&1
echo "memcheck: rc=$?"; grep -E "ERROR SUMMARY" "$LOG/memcheck.log"
R=16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352,368,384,400,416,432,448,464,480,496,512
bench() {  # $1 = label, the rest: environment assignments
  local label=$1; shift
  { env "$@" timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 20
    env "$@" timeout 30 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 20 --ragged $R; } > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, $label:" | tee -a "$LOG/bench_encoder.txt"
  grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms|ragged32 +[0-9.]+ ms)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt"
}
for i in 1 2; do bench "residual in the LayerNorm, run $i" IGNIS_ENC_RESFOLD=0; bench "residual in the GEMM, run $i" IGNIS_ENC_RESFOLD=1; done
