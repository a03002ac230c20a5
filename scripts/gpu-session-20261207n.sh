#!/usr/bin/env bash
# Device call N of 2026-12-07: the streaming add + LayerNorm (encoder_norm.cu, add_ln_stream_kernel) and the
# residual fold from 4,096 rows. Encoder GPU tests (default; IGNIS_ENC_RESFOLD=1 too), memcheck / racecheck on
# the LayerNorm test, BERT-base fp16 latencies alternated: IGNIS_ENC_LN=warp (the plain warp form, as before) /
# default (streaming) / streaming from 512 rows, then Nsight Compute per-kernel durations at 32x512 and 8x128.
# Usage on the GPU machine: bash scripts/gpu-session-20261207n.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
IGNIS_ENC_RESFOLD=1 timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder.*' > "$LOG/gpu_tests_fold1.log" 2>&1
echo "encoder model tests, fold at every bucket: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests_fold1.log" | tail -5
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 1 $B/ignis_gpu_tests \
    --gtest_filter='CudaEncoderKernels.AddLayerNorm' > "$LOG/$tool.log" 2>&1
  echo "$tool AddLayerNorm: rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/$tool.log" | tail -2
done
for i in 1 2; do
  enc_bench "plain warp LayerNorm, run $i" IGNIS_ENC_LN=warp
  enc_bench "streaming LayerNorm, run $i" IGNIS_X=0
done
enc_bench "streaming LayerNorm from 512 rows" IGNIS_ENC_LN_STREAM_MIN=512
enc_bench "streaming LayerNorm, fold off" IGNIS_ENC_RESFOLD=0
for sh in 32x512 8x128; do
  timeout 120 ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv $B/ignis bench-encoder --synthetic bert-base --dtype f16 --shapes $sh -r 1 > "$LOG/bertncu_$sh.csv" 2> "$LOG/bertncu_$sh.err"
  echo "ncu $sh exit $?"; python3 scripts/ncu_summary.py "$LOG/bertncu_$sh.csv" | head -8
done
