#!/usr/bin/env bash
# Builds everything once (CUDA code included when nvcc is present) with clang under
# AddressSanitizer + UndefinedBehaviorSanitizer, runs the test suite, then fuzzes every
# parser briefly. This is what CI runs (.ci/run). FUZZ_SECONDS sets the time per fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
BUILD="${BUILD_DIR:-build-test}"
# The default model and all-MiniLM-L6-v2 are needed by the model tests; they skip (and say so) if it cannot be fetched.
scripts/fetch-model.sh >/dev/null || echo "warning: could not fetch the default model; its tests will be skipped" >&2
scripts/fetch-minilm.sh >/dev/null || echo "warning: could not fetch all-MiniLM-L6-v2; its tests will be skipped" >&2
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
  -DIGNIS_SANITIZE=ON -DIGNIS_FUZZ=ON -DIGNIS_BENCH=OFF >/dev/null
echo "building in $BUILD..." >&2
ninja -C "$BUILD"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$BUILD" && ctest --output-on-failure -j2 --timeout 900)
scripts/fuzz.sh "${FUZZ_SECONDS:-30}" "$BUILD"
