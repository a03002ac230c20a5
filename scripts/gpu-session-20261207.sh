#!/usr/bin/env bash
# One device call of 2026-12-07 (rerunnable): quant / model tests with the G1 default, the encoder racecheck
# without cuBLASLt's kernels, decode tok/s of bf16 / int4 g128 / int8 / Q4_K with PDL off / on, BERT-base fp16
# latencies, then Nsight Compute on the int4 decode step (per-kernel durations and one layer's GEMV sections).
# Usage on the GPU machine: bash scripts/gpu-session-20261207.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
$B/ignis_gpu_tests --gtest_filter='CudaLlama.*:CudaQuant.*:CudaGptq*' > "$LOG/quant_tests.log" 2>&1; echo "quant/model tests rc=$?"; tail -3 "$LOG/quant_tests.log"
scripts/racecheck-ours.sh $B/ignis_gpu_tests \
  --gtest_filter='CudaEncoderKernels.*' > "$LOG/bert_racecheck.log" 2>&1; echo "bert racecheck rc=$?"; tail -1 "$LOG/bert_racecheck.log"
for q in "" "--quant int4 --group 128" "--quant int8" "--quant q4_k"; do
  AB_VARIANTS="IGNIS_PDL=0 IGNIS_PDL=1" AB_ARGS="--synthetic llama-2-7b -p 8 $q" timeout 100 scripts/gpu-check.sh abenv 2>&1 | grep synthetic
done
timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 > "$LOG/bench_encoder.txt" 2>&1; tail -16 "$LOG/bench_encoder.txt"
NCU_Q="int4 --group 128" timeout 150 scripts/gpu-check.sh ncuint4 2>&1 | tail -92
BENCH_ARGS="--quant int4 --group 128" NCU_TAG=_int4 timeout 200 scripts/gpu-check.sh ncu 2>&1 | tail -30
