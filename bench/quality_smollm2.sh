#!/usr/bin/env bash
# Quantization quality on a real model (issue 5): perplexity of SmolLM2-135M-Instruct on
# wikitext-2 (test split) for the float baseline and int8 / int4 RTN / int4 GPTQ, on the CPU.
#
#   bench/quality_smollm2.sh [TOKENS] [BUILD_DIR]      # defaults: 8192 tokens, build
#
# The model file is Q4_1; its float baseline is every tensor dequantized to bf16 (and to f32).
# int4 uses groups of 64: SmolLM2's hidden size 576 is not a multiple of 128, so group 128
# could quantize only ffn_down (30 of 210 layers) and would say little.
# int8 / int4 RTN quantize that baseline at load time (`--weights bf16 --quant ...`); the GPTQ
# and RTN folders are written by `ignis quantize` (calibrated on wikitext-2 *valid*, disjoint
# from the evaluation text) and read back like any GPTQ checkpoint. Windows of 512 tokens,
# stride 256. Prints one table; logs go to $LOG_DIR (default /tmp/ignis-quality).
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENS=${1:-8192}
BUILD=${2:-build}
IGNIS="$BUILD/ignis"
DATA=${IGNIS_DATA:-../shared/data}
LOG_DIR=${LOG_DIR:-/tmp/ignis-quality}
CALIB_TOKENS=${CALIB_TOKENS:-16384}
mkdir -p "$LOG_DIR"
MODEL=$(scripts/fetch-model.sh)
TEST="$DATA/wikitext2_test.txt"
CALIB="$DATA/wikitext2_valid.txt"
[ -x "$IGNIS" ] || { echo "build first: scripts/build.sh (or pass the build folder)" >&2; exit 1; }

ppl() {  # name, then ignis perplexity arguments; prints "name ppl"
  local name=$1; shift
  "$IGNIS" perplexity -f "$TEST" --max-tokens "$TOKENS" --ctx 512 --stride 256 "$@" >"$LOG_DIR/$name.log" 2>&1
  echo "$name $(grep -o 'perplexity [0-9.]*' "$LOG_DIR/$name.log" | awk '{print $2}')"
}

echo "quantizing (GPTQ calibration on $CALIB_TOKENS tokens of wikitext-2 valid)..." >&2
for m in rtn gptq; do
  rm -rf "$LOG_DIR/int4-g64-$m"
  "$IGNIS" quantize -m "$MODEL" --to int4 --group 64 --method "$m" --calib "$CALIB" --calib-tokens "$CALIB_TOKENS" \
    -o "$LOG_DIR/int4-g64-$m" >"$LOG_DIR/quantize-$m.log" 2>&1
done
# GPTQ with zero points and activation order (the best int4 grid on this model, 2026-12-08)
rm -rf "$LOG_DIR/int4-g64-gptq-asym-ao"
"$IGNIS" quantize -m "$MODEL" --to int4 --group 64 --method gptq --asym --act-order --calib "$CALIB" \
  --calib-tokens "$CALIB_TOKENS" -o "$LOG_DIR/int4-g64-gptq-asym-ao" >"$LOG_DIR/quantize-gptq-asym-ao.log" 2>&1

echo "perplexities over $TOKENS tokens..." >&2
{
  ppl bf16 -m "$MODEL" --weights bf16
  ppl f32 -m "$MODEL" --weights f32
  ppl q4_1-file -m "$MODEL"
  ppl int8-rtn -m "$MODEL" --weights bf16 --quant int8
  ppl int4-g64-rtn -m "$MODEL" --weights bf16 --quant int4 --group 64
  ppl int4-g64-rtn-folder -m "$LOG_DIR/int4-g64-rtn" --tokenizer "$MODEL"
  ppl int4-g64-gptq-folder -m "$LOG_DIR/int4-g64-gptq" --tokenizer "$MODEL"
  ppl int4-g64-gptq-asym-ao -m "$LOG_DIR/int4-g64-gptq-asym-ao" --tokenizer "$MODEL"
} | tee "$LOG_DIR/results.txt" >&2

awk 'NR == FNR { p[$1] = $2; next } END {
  base = p["bf16"];
  printf "%-24s %12s %10s\n", "weights", "perplexity", "vs bf16";
  n = split("bf16 f32 q4_1-file int8-rtn int4-g64-rtn int4-g64-rtn-folder int4-g64-gptq-folder int4-g64-gptq-asym-ao", k, " ");
  for (i = 1; i <= n; ++i) printf "%-24s %12.4f %+9.2f%%\n", k[i], p[k[i]], 100 * (p[k[i]] / base - 1);
}' "$LOG_DIR/results.txt" /dev/null
