#!/usr/bin/env bash
# Packs binaries built on this machine (a CUDA build for sm_90a, e.g.
#   cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGNIS_CUDA=ON -DIGNIS_CUDA_ARCHS=90a -DIGNIS_BENCH=OFF
# ) for a GPU machine whose image has no -dev packages and no network: the stripped binaries and
# the shared libraries they need that such an image lacks (OpenBLAS, utf8proc, libzip, ...) go,
# xz-compressed, to .devcarry/x/prebuilt.tar.xz, with stories260K / tok512 in .devcarry/data.
# There: scripts/gpu-check.sh prebuilt test ... (IGNIS_DATA=$PWD/.devcarry/data).
# The image must have a CUDA 13 driver, cuBLAS 13 (libcublas.so.13) and cuSOLVER 12 (libcusolver.so.12, with
# the libcusparse / libnvJitLink it needs; ignis_gpu_tests links them for GPTQ) of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${1:-build-gpu}"
S=$(mktemp -d); trap 'rm -rf "$S"' EXIT
mkdir -p "$S/build-gpu" "$S/lib" .devcarry/x .devcarry/data
for t in ignis ignis_gpu_tests ignis_tests ${DEVPACK_EXTRA:-}; do  # DEVPACK_EXTRA: more binaries of $B (e.g. a build to A/B against)
  [ -x "$B/$t" ] && strip -o "$S/build-gpu/$t" "$B/$t"
done
# every non-system library the CLI links, except the CUDA ones (the image has those)
ldd "$B/ignis" | awk '$3 ~ /^\// {print $3}' | while read -r l; do
  case "$(basename "$l")" in
    libc.so*|libm.so*|libstdc++*|libgcc_s*|libpthread*|libdl*|librt*|libcrypto*|libz.so*|libcuda*|libcublas*|libcusolver*|libcusparse*|libnvJitLink*) ;;
    *) cp -L "$l" "$S/lib/" ;;
  esac
done
cp ../shared/data/stories260K.bin ../shared/data/tok512.bin .devcarry/data/
# wikitext-2 text for the GPTQ model-path test (its first 400 KB is all it reads)
head -c 400000 ../shared/data/wikitext2_valid.txt > .devcarry/data/wikitext2_valid.txt
# With a second build beside the CLI, -9 (a 64 MB window) stores its near-copy almost for free.
lvl=-6; [ -n "${DEVPACK_EXTRA:-}" ] && lvl=-9
tar -C "$S" -cf - build-gpu lib | xz -T2 $lvl > .devcarry/x/prebuilt.tar.xz
ls -la .devcarry/x/prebuilt.tar.xz
