#!/usr/bin/env bash
# Device call M of 2026-12-07 (second session): the residual fold A/B (the never-run call L, widened) with the
# encoder GPU tests run twice (IGNIS_ENC_RESFOLD=0 / 1: the whole-model parity tests then take the folded path),
# memcheck, BERT-base fp16 latencies alternated, and Nsight Compute per-kernel durations at 1x128 and 32x512
# (fold on) for the current H100 breakdown.
# Usage on the GPU machine: bash scripts/gpu-session-20261207m.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
for f in 0 1; do
  IGNIS_ENC_RESFOLD=$f timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests_fold$f.log" 2>&1
  echo "encoder GPU tests, IGNIS_ENC_RESFOLD=$f: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests_fold$f.log" | tail -5
done
IGNIS_ENC_RESFOLD=1 timeout 90 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests \
  --gtest_filter='CudaEncoderKernels.AddLayerNorm:CudaEncoderKernels.GemmEpilogues:CudaEncoder.HiddenStatesMatchReference' > "$LOG/memcheck.log" 2>&1
echo "memcheck (fold on): rc=$?"; grep -E "ERROR SUMMARY" "$LOG/memcheck.log"
for i in 1 2; do enc_bench "residual in the LayerNorm, run $i" IGNIS_ENC_RESFOLD=0; enc_bench "residual in the GEMM, run $i" IGNIS_ENC_RESFOLD=1; done
for sh in 1x128 32x512; do
  IGNIS_ENC_RESFOLD=1 timeout 150 ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv $B/ignis bench-encoder --synthetic bert-base --dtype f16 --shapes $sh -r 1 > "$LOG/bertncu_$sh.csv" 2> "$LOG/bertncu_$sh.err"
  echo "ncu $sh (fold on) exit $?"; python3 scripts/ncu_summary.py "$LOG/bertncu_$sh.csv"
done
