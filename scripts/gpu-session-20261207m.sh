#!/usr/bin/env bash
# Device call M of 2026-12-07 (second session): the residual fold A/B (see gpu-session-20261207l.sh) with the
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
R=16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352,368,384,400,416,432,448,464,480,496,512
bench() {  # $1 = label, the rest: environment assignments
  local label=$1; shift
  { env "$@" timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 20
    env "$@" timeout 30 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 20 --ragged $R; } > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, $label:" | tee -a "$LOG/bench_encoder.txt"
  grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms|ragged32 +[0-9.]+ ms)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt"
}
for i in 1 2; do bench "residual in the LayerNorm, run $i" IGNIS_ENC_RESFOLD=0; bench "residual in the GEMM, run $i" IGNIS_ENC_RESFOLD=1; done
for sh in 1x128 32x512; do
  IGNIS_ENC_RESFOLD=1 timeout 150 ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv $B/ignis bench-encoder --synthetic bert-base --dtype f16 --shapes $sh -r 1 > "$LOG/bertncu_$sh.csv" 2> "$LOG/bertncu_$sh.err"
  echo "ncu $sh (fold on) exit $?"; python3 scripts/ncu_summary.py "$LOG/bertncu_$sh.csv"
done
