#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, fetch the default model
# (SmolLM2-135M-Instruct, Q4_1) and answer a prompt with it on the CPU.
#   scripts/quickstart.sh                      # answers a default question
#   scripts/quickstart.sh "Your question"      # answers yours
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "building (first time: a few minutes)..." >&2
BUILD_DIR=build scripts/build.sh -DIGNIS_TESTS=OFF -DIGNIS_BENCH=OFF >/dev/null
MODEL=$(scripts/fetch-model.sh)
exec build/ignis generate --chat -m "$MODEL" -p "${1:-What is the capital of France, and what is it famous for?}" \
  --temp 0.2 --seed 1 -n 200
