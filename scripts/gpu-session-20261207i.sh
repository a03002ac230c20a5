#!/usr/bin/env bash
# Device call I of 2026-12-07: the encoder's L2 prefetch of the next layer's weights (l2_prefetch.cu,
# bert_cuda.cpp): GPU tests, memcheck on the prefetch tests, BERT-base fp16 latencies with the prefetch
# off (IGNIS_ENC_PREFETCH=0) and on, alternated, and once on with PDL (IGNIS_ENC_PDL=1).
# Usage on the GPU machine: bash scripts/gpu-session-20261207i.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
ENC_REPS=30
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
F='CudaKernels.PrefetchListChunks:CudaKernels.L2PrefetchLeavesMemory:CudaEncoder.L2PrefetchChangesNothing'
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter="$F" > "$LOG/memcheck_prefetch.log" 2>&1
echo "memcheck prefetch: rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$LOG/memcheck_prefetch.log" | tail -3
grep -m1 -i "prefetch\|attention," "$LOG/enc_tmp.txt" 2>/dev/null
for i in 1 2; do enc_bench "prefetch off, run $i" IGNIS_ENC_PREFETCH=0; enc_bench "prefetch on, run $i" IGNIS_ENC_PREFETCH=1000000; done
enc_bench "prefetch on + PDL" IGNIS_ENC_PDL=1
grep -m2 -i "prefetch" "$LOG/enc_tmp.txt"
# split-K of the attention output projection too (IGNIS_ENC_SPLITK=ffn2,wo,max_rows), prefetch on, small buckets
S=1x16,1x128,1x256,1x512,8x16,8x64,8x128,32x16
for sk in 4,0,512 4,2,512 4,4,512 2,0,512; do
  IGNIS_ENC_SPLITK=$sk timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 --shapes $S > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, prefetch on, IGNIS_ENC_SPLITK=$sk:" | tee -a "$LOG/bench_encoder.txt"
  grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt"
done
