#!/usr/bin/env bash
# Device call K of 2026-12-07 (call J trimmed to fit the device time left): the encoder's L2 prefetch of the
# weights issued inside the embedding and attention kernels (l2_prefetch.h, bert_cuda.cpp): the encoder GPU
# tests, memcheck on the prefetch test, BERT-base fp16 latencies with the prefetch off (IGNIS_ENC_PREFETCH=0)
# / on, without / with PDL (IGNIS_ENC_PDL=1), alternated.
# Usage on the GPU machine: bash scripts/gpu-session-20261207k.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*:CudaKernels.PrefetchListChunks' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter='CudaEncoder.L2PrefetchChangesNothing' > "$LOG/memcheck_prefetch.log" 2>&1
echo "memcheck prefetch: rc=$?"; grep -E "ERROR SUMMARY" "$LOG/memcheck_prefetch.log"
S=1x16,1x128,1x512,8x128,32x16,32x128,32x512
bench() {  # $1 = label, the rest: environment assignments
  local label=$1; shift
  env "$@" timeout 40 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 20 --shapes $S > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, $label:" | tee -a "$LOG/bench_encoder.txt"
  grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt"
}
for i in 1 2; do
  bench "prefetch off, run $i" IGNIS_ENC_PREFETCH=0; bench "prefetch on, run $i" IGNIS_ENC_PREFETCH=1000000
done
bench "prefetch off + PDL" IGNIS_ENC_PREFETCH=0 IGNIS_ENC_PDL=1; bench "prefetch on + PDL" IGNIS_ENC_PREFETCH=1000000 IGNIS_ENC_PDL=1
grep -m1 -i "prefetch" "$LOG/enc_tmp.txt"
