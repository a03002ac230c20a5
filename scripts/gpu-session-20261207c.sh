#!/usr/bin/env bash
# Device call B of the 2026-12-07 afternoon session (rerunnable): PDL on by default (encoder off) and the
# unsplit wo / down int4 GEMVs. All GPU tests; decode tok/s of int4 g128 / Q4_K / Q4_0 with the unsplit
# shapes on variant a (default) or c; int8 / bf16 with PDL on / off; TTFT of a 512-token bf16 prompt with PDL
# on / off; BERT-base fp16 latencies (the encoder keeps PDL off).
# Usage on the GPU machine: bash scripts/gpu-session-20261207c.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
for q in "int4 --group 128" q4_k q4_0; do
  AB_VARIANTS="- IGNIS_QGEMV_VARIANT=c" AB_ARGS="--synthetic llama-2-7b -p 8 --quant $q" timeout 100 scripts/gpu-check.sh abenv 2>&1 | grep synthetic
done
for q in "--quant int8" ""; do
  AB_VARIANTS="- IGNIS_PDL=0" AB_ARGS="--synthetic llama-2-7b -p 8 $q" timeout 100 scripts/gpu-check.sh abenv 2>&1 | grep synthetic
done
for i in 1 2; do for p in 1 0; do
  IGNIS_PDL=$p timeout 60 $B/ignis bench --synthetic llama-2-7b -p 512 -n 8 -r 3 --json 2>/dev/null > "$LOG/ttft_pdl${p}_$i.json"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("PDL='$p' run '$i': " + " ".join("b%d TTFT %.2f ms (%.0f tok/s)" % (r["batch"], r["ttft_ms"], r["prefill_tok_s"]) for r in d["rows"] if "ttft_ms" in r))' "$LOG/ttft_pdl${p}_$i.json"
done; done
timeout 60 $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 > "$LOG/bench_encoder.txt" 2>&1; grep -E "^[0-9]+x" "$LOG/bench_encoder.txt" | head -12
