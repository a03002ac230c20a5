#!/usr/bin/env bash
# Device call H of 2026-12-07 (evening), the final code: all GPU tests, the BERT-base peers
# (bench/peers_bert.py: ignis vs HF eager / sdpa / torch.compile, parity, plot) and the Llama-2-7B peers
# (bench/peers.py), same GPU, same call.
# Usage on the GPU machine: bash scripts/gpu-session-20261207h.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 200 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
timeout 270 python3 bench/peers_bert.py --ignis $B/ignis --out "$LOG" --budget 170 > "$LOG/peers_bert.log" 2>&1; echo "peers_bert: rc=$?"; tail -45 "$LOG/peers_bert.log"
timeout 200 python3 bench/peers.py --shape llama-2-7b --ignis $B/ignis --reps 3 --hf-reps 1 --ttft-reps 2 --out "$LOG" > "$LOG/peers.log" 2>&1; echo "peers llama: rc=$?"; tail -25 "$LOG/peers.log"
