#!/usr/bin/env bash
# Device call F of 2026-12-07 (evening): the flash-attention kernels with one barrier per key tile (ignis) against
# the instruction diet alone (ignis_diet = call E's build) and 38c4cdc (ignis_base), all packed beside each other:
# GPU tests, sanitizers on the attention tests, BERT-base fp16 latencies and a 512-token Llama-2-7B prefill
# alternated, Nsight Compute warp-stall reasons of the encoder attention kernel at 32x512.
# Usage on the GPU machine: bash scripts/gpu-session-20261207f.sh
#   (binaries from DEVPACK_EXTRA="ignis_diet ignis_base" scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
F='CudaEncoderKernels.AttentionRagged:CudaEncoder.GenericAttentionMatchesFlash:CudaKernels.AttentionPrefill*:CudaKernels.AttentionCausalGqa'
{ timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter="$F"; echo "memcheck attention: rc=$?"
  timeout 120 scripts/racecheck-ours.sh $B/ignis_gpu_tests --gtest_filter="$F"; echo "racecheck attention: rc=$?"; } > "$LOG/sanitizers_attn.log" 2>&1
grep -E "ERROR SUMMARY|rc=|racecheck-ours" "$LOG/sanitizers_attn.log"
R=16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352,368,384,400,416,432,448,464,480,496,512
for i in 1 2; do for bin in ignis ignis_diet ignis_base; do
  { timeout 60 $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30
    timeout 30 $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30 --ragged $R; } > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, $bin, run $i:" | tee -a "$LOG/bench_encoder.txt"; grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms|ragged)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt"
done; done
for i in 1 2; do for bin in ignis ignis_base; do
  t=$(timeout 90 $B/$bin bench --synthetic llama-2-7b -p 512 -n 16 -r 3 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("ttft %.2f ms, prefill %.0f tok/s" % (r["ttft_ms"], r["prefill_tok_s"]) for r in d["rows"] if "ttft_ms" in r))')
  echo "Llama-2-7B bf16 prefill 512, $bin, run $i: $t"
done; done
for bin in ignis ignis_base; do
  timeout 150 ncu --clock-control none --kernel-name regex:enc_flash --launch-skip 12 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section Occupancy \
    --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active' \
    $B/$bin bench-encoder --synthetic bert-base --dtype f16 --shapes 32x512 --no-graphs -r 1 > "$LOG/ncu_attn_$bin.txt" 2>&1
  echo "ncu enc_flash 32x512, $bin: rc=$?"
  grep -E "Duration|Warp Cycles Per Issued|inst_executed.sum|hmma" "$LOG/ncu_attn_$bin.txt" | head -5
  grep -E "issue_stalled" "$LOG/ncu_attn_$bin.txt" | awk '$NF+0 > 0.15 {print}' | sed 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -12
done
