#!/usr/bin/env bash
# Device call J of 2026-12-07: the encoder's L2 prefetch of the weights issued inside the embedding and
# attention kernels (l2_prefetch.h, bert_cuda.cpp): GPU tests, memcheck on the prefetch tests, BERT-base
# fp16 latencies with the prefetch off (IGNIS_ENC_PREFETCH=0) / on, each without / with PDL
# (IGNIS_ENC_PDL=1), alternated. (Call I ran the same A/B with the first form, a prefetch kernel on a side
# branch of the graph, and split-K variants: docs/results/prefetch-H100-20261207.txt.)
# Usage on the GPU machine: bash scripts/gpu-session-20261207i.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
F='CudaKernels.PrefetchListChunks:CudaEncoder.L2PrefetchChangesNothing:CudaEncoderKernels.AttentionRagged'
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter="$F" > "$LOG/memcheck_prefetch.log" 2>&1
echo "memcheck prefetch: rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$LOG/memcheck_prefetch.log" | tail -3
R=16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352,368,384,400,416,432,448,464,480,496,512
bench() {  # $1 = label, the rest: environment assignments
  local label=$1; shift
  { env "$@" timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30
    env "$@" timeout 30 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 --ragged $R; } > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, $label:" | tee -a "$LOG/bench_encoder.txt"
  grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms|ragged)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt"
}
grep -m1 -i "prefetch\|attention," "$LOG/enc_tmp.txt" 2>/dev/null
for i in 1 2; do
  bench "prefetch off, run $i" IGNIS_ENC_PREFETCH=0; bench "prefetch on, run $i" IGNIS_ENC_PREFETCH=1000000
  bench "prefetch off + PDL, run $i" IGNIS_ENC_PREFETCH=0 IGNIS_ENC_PDL=1; bench "prefetch on + PDL, run $i" IGNIS_ENC_PDL=1
done
grep -m1 -i "prefetch" "$LOG/enc_tmp.txt"
# Decode tok/s, Llama-2-7B shape, batch 1 (issue 3 / 5 figures on this device; the encoder change does not touch them)
for q in "" "--quant int4 --group 128" "--quant int8"; do
  AB_VARIANTS="-" AB_ARGS="--synthetic llama-2-7b -p 8 $q" timeout 100 scripts/gpu-check.sh abenv 2>&1 | grep synthetic
done
