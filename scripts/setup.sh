#!/usr/bin/env bash
# Installs the system packages ignis builds with (Debian/Ubuntu). Safe to rerun: it only
# calls apt-get when something is missing. The CUDA toolkit is optional: when nvcc is on
# PATH (or in /usr/local/cuda/bin) the CUDA backend is built too.
set -euo pipefail
PKGS=(cmake ninja-build g++ clang libclang-rt-14-dev pkg-config python3 python3-pip unzip
      libgtest-dev libbenchmark-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libutf8proc-dev
      libopenblas-dev libzip-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
