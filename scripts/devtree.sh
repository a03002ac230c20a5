#!/usr/bin/env bash
# Exports the committed tree (HEAD, without uncommitted work of others sharing this checkout) to
# .devcarry/tree, for GPU runs that carry .devcarry/{tree,data,debs} to a machine without network:
#   there: cd .devcarry/tree && IGNIS_DATA=$PWD/../data IGNIS_DEBS=$PWD/../debs \
#          IGNIS_BUILD=/tmp/build-gpu scripts/gpu-check.sh deps build test ...
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .devcarry/tree && mkdir -p .devcarry/tree
git archive HEAD | tar -x -C .devcarry/tree
echo "exported $(git rev-parse --short HEAD) to .devcarry/tree"
