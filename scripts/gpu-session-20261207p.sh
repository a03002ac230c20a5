#!/usr/bin/env bash
# Device call P of 2026-12-07 (an unrun call O, the same without peers, widened): the streaming add + LayerNorm with gamma / beta laid out by lane (no bank conflicts), from
# 512 rows, and the residual fold from 4,096 rows. Encoder GPU tests (default; IGNIS_ENC_RESFOLD=1 too), memcheck / racecheck on
# the LayerNorm test, BERT-base fp16 latencies alternated: IGNIS_ENC_LN=warp (the plain warp form, as before) /
# default (streaming) / streaming with the fold off, two runs each, then Nsight Compute per-kernel durations at 32x512.
# Then the BERT-base peers and, on an H200, the quantized decode speeds (issue 5).
# Usage on the GPU machine: bash scripts/gpu-session-20261207p.sh (binaries from scripts/devpack.sh).
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
  enc_bench "streaming LayerNorm, fold off, run $i" IGNIS_ENC_RESFOLD=0
done
for sh in 32x512; do
  timeout 120 ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --csv $B/ignis bench-encoder --synthetic bert-base --dtype f16 --shapes $sh -r 1 > "$LOG/bertncu_$sh.csv" 2> "$LOG/bertncu_$sh.err"
  echo "ncu $sh exit $?"; python3 scripts/ncu_summary.py "$LOG/bertncu_$sh.csv" > "$LOG/ncu_$sh.txt"; head -8 "$LOG/ncu_$sh.txt"
done
# the BERT-base peers with this code (ignis vs HF eager / sdpa / torch.compile, same GPU, same call)
timeout 230 python3 bench/peers_bert.py --ignis $B/ignis --out "$LOG" --budget 150 > "$LOG/peers_bert.log" 2>&1; echo "peers_bert: rc=$?"; tail -40 "$LOG/peers_bert.log"
# On an H200 (issue 5's targets are H200 figures): decode tok/s of Llama-2-7B-shaped weights, bf16 and quantized
if grep -q H200 "$LOG/device.txt"; then
  decode_b1 "" "--quant int4 --group 128" "--quant int8" "--quant q4_k"
fi
