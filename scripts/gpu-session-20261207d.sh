#!/usr/bin/env bash
# Device call C of the 2026-12-07 afternoon session (rerunnable; it ran on an H100): the new
# defaults (PDL on for the decoder, unsplit int4 wo / down) against IGNIS_PDL=0 for every weight format, BERT-base
# fp16 latencies with the attention grid of a block per 16 bucket rows (new) or per row (IGNIS_ENC_ATTN_GRID=rows),
# all GPU tests.
# Usage on the GPU machine: bash scripts/gpu-session-20261207d.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
for q in "" "--quant int4 --group 128" "--quant int8" "--quant q4_k" "--quant q4_0"; do
  AB_VARIANTS="- IGNIS_PDL=0" AB_ARGS="--synthetic llama-2-7b -p 8 $q" timeout 100 scripts/gpu-check.sh abenv 2>&1 | grep synthetic
done
for i in 1 2; do for g in new rows; do
  IGNIS_ENC_ATTN_GRID=$g timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 > "$LOG/bench_encoder_${g}_$i.txt" 2>&1
  echo "BERT-base fp16, IGNIS_ENC_ATTN_GRID=$g, run $i:"; grep -E "^[0-9]+x" "$LOG/bench_encoder_${g}_$i.txt" | head -12
done; done
IGNIS_ENC_PDL=1 timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 --shapes 1x16,1x128,8x128,32x512 > "$LOG/bench_encoder_pdl.txt" 2>&1; echo "IGNIS_ENC_PDL=1:"; grep -E "^[0-9]+x" "$LOG/bench_encoder_pdl.txt" | head -4
