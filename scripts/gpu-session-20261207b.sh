#!/usr/bin/env bash
# Device call A of the 2026-12-07 afternoon session (rerunnable): is PDL worth turning on by default?
# BERT-base fp16 latencies with IGNIS_PDL=0 / 1 alternated, all GPU tests with PDL on, then int4 g128 decode with
# PDL on and the split-K / register-variant knobs of the int4 tensor-core GEMV (the wo / down shapes' split).
# Usage on the GPU machine: bash scripts/gpu-session-20261207b.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
for i in 1 2; do for p in 0 1; do
  IGNIS_PDL=$p timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 > "$LOG/bert_pdl${p}_$i.txt" 2>&1
  echo "bert PDL=$p run $i"; grep -E "^ *[0-9]+ *x|ragged" "$LOG/bert_pdl${p}_$i.txt" | head -14
done; done
IGNIS_PDL=1 timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests_pdl1.log" 2>&1; echo "all GPU tests, PDL on: rc=$?"; tail -3 "$LOG/gpu_tests_pdl1.log"
AB_VARIANTS="IGNIS_PDL=1 IGNIS_PDL=1,IGNIS_QGEMV_SPLITS=1 IGNIS_PDL=1,IGNIS_QGEMV_SPLITS=2 IGNIS_PDL=1,IGNIS_QGEMV_SPLITS=4 IGNIS_PDL=1,IGNIS_QGEMV_SPLITS=6 IGNIS_PDL=1,IGNIS_QGEMV_VARIANT=a" \
  AB_ARGS="--synthetic llama-2-7b -p 8 --quant int4 --group 128" timeout 200 scripts/gpu-check.sh abenv 2>&1 | grep synthetic
