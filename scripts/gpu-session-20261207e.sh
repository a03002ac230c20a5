#!/usr/bin/env bash
# Device call E of 2026-12-07 (evening session): the flash-attention instruction diet (running copy pointers,
# one-MUFU exp2, scale folded into an FFMA; encoder and decoder prefill) against the previous build packed
# beside it (ignis_base = 38c4cdc): GPU tests, sanitizers on the attention tests, BERT-base fp16 latencies and
# a 512-token Llama-2-7B prefill alternated, Nsight Compute warp stalls of the encoder attention kernel.
# Usage on the GPU machine: bash scripts/gpu-session-20261207e.sh (binaries from DEVPACK_EXTRA=ignis_base scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
F='CudaEncoderKernels.AttentionRagged:CudaEncoder.GenericAttentionMatchesFlash:CudaKernels.AttentionPrefill*:CudaKernels.AttentionCausalGqa'
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter="$F" > "$LOG/memcheck_attn.log" 2>&1; echo "memcheck attention: rc=$?"; tail -2 "$LOG/memcheck_attn.log"
timeout 120 scripts/racecheck-ours.sh $B/ignis_gpu_tests --gtest_filter="$F" > "$LOG/racecheck_attn.log" 2>&1; echo "racecheck attention: rc=$?"; tail -1 "$LOG/racecheck_attn.log"
R=16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352,368,384,400,416,432,448,464,480,496,512
for i in 1 2; do for bin in ignis ignis_base; do
  timeout 60 $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30 > "$LOG/bench_encoder_${bin}_$i.txt" 2>&1
  timeout 30 $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30 --ragged $R >> "$LOG/bench_encoder_${bin}_$i.txt" 2>&1
  echo "BERT-base fp16, $bin, run $i:"; grep -E "^ *([0-9]+x|ragged)" "$LOG/bench_encoder_${bin}_$i.txt" | head -14
done; done
for i in 1 2; do for bin in ignis ignis_base; do
  t=$(timeout 90 $B/$bin bench --synthetic llama-2-7b -p 512 -n 16 -r 3 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("b%d ttft %.2f ms" % (r["batch"], r["ttft_ms"]) for r in d["rows"]))')
  echo "Llama-2-7B bf16 prefill 512, $bin, run $i: $t"
done; done
for bin in ignis ignis_base; do
  timeout 150 ncu --clock-control none --kernel-name regex:enc_flash --launch-skip 12 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    $B/$bin bench-encoder --synthetic bert-base --dtype f16 --shapes 32x512 --no-graphs -r 1 > "$LOG/ncu_attn_$bin.txt" 2>&1
  echo "ncu enc_flash 32x512, $bin: rc=$?"; grep -E "Duration|Issue Slots Busy|Compute \(SM\) Throughput|No Eligible|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued" "$LOG/ncu_attn_$bin.txt" | head -12
done
