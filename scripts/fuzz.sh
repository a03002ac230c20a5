#!/usr/bin/env bash
# Runs every built libFuzzer target for N seconds each over its seed corpus.
#
#   scripts/fuzz.sh [SECONDS] [BUILD_DIR]      # defaults: 30, build-fuzz
#
# Build the fuzzers first:
#   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DIGNIS_FUZZ=ON -DIGNIS_SANITIZE=ON \
#         -DIGNIS_CUDA=OFF -DIGNIS_BENCH=OFF
#   ninja -C build-fuzz fuzz_gguf fuzz_safetensors fuzz_llama2c fuzz_hf_config
#
# Each corpus (fuzz/corpus/NAME for fuzz_NAME) is copied to a temporary directory, so the run
# never writes into the repository. Exits non-zero if any fuzzer crashes, leaks, times out or
# lets an exception other than ignis::Error escape; the reproducer is kept and its path printed.
set -u
SECONDS_EACH=${1:-30}
BUILD=${2:-build-fuzz}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if ! [[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || [ "$SECONDS_EACH" -le 0 ]; then
  echo "usage: $0 [SECONDS>0] [BUILD_DIR]" >&2
  exit 2
fi
shopt -s nullglob
fuzzers=()
for f in "$BUILD"/fuzz_*; do
  [ -x "$f" ] && [ -f "$f" ] && fuzzers+=("$f")
done
if [ ${#fuzzers[@]} -eq 0 ]; then
  echo "no fuzzers in $BUILD; build them first (see the top of $0)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ignis-fuzz.XXXXXX")
failed=()
for bin in "${fuzzers[@]}"; do
  name=$(basename "$bin")
  short=${name#fuzz_}
  corpus="$WORK/$short/corpus"
  artifacts="$WORK/$short/artifacts"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "fuzz/corpus/$short" ]; then
    cp -r "fuzz/corpus/$short/." "$corpus/"
  else
    echo "warning: no seed corpus fuzz/corpus/$short; starting empty" >&2
  fi
  echo "== $name: ${SECONDS_EACH}s over $(ls "$corpus" | wc -l) seeds"
  "$bin" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$WORK/$short/log" 2>&1
  rc=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ *DONE" "$WORK/$short/log" | sed 's/^/   /'
  if [ $rc -ne 0 ] || [ -n "$(ls "$artifacts")" ]; then
    echo "   FAILED (exit $rc); log: $WORK/$short/log"
    for a in "$artifacts"/*; do echo "   reproducer: $a   (run: $bin $a)"; done
    grep -E "ERROR: |SUMMARY: |runtime error|uncaught|terminate called" "$WORK/$short/log" | head -5 | sed 's/^/   /'
    failed+=("$name")
  else
    rm -rf "$WORK/$short"
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzzers that failed: ${failed[*]} (kept in $WORK)"
  exit 1
fi
rmdir "$WORK" 2>/dev/null
echo "all ${#fuzzers[@]} fuzzers ran ${SECONDS_EACH}s each without a finding"
