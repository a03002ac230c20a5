#!/usr/bin/env bash
# Release build of the library, the CLI, the tests and the benchmarks into ./build.
# The CUDA backend is built when nvcc is found (PATH or /usr/local/cuda/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"
BUILD="${BUILD_DIR:-build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C "$BUILD"
