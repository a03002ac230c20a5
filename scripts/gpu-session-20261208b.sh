#!/usr/bin/env bash
# Device call B of 2026-12-08 (short: the last ~4 minutes of the session's device time): the encoder GPU tests and
# BERT-base fp16 latencies after the pipelined attention form's removal.
# Usage on the GPU machine: bash scripts/gpu-session-20261208b.sh (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 60 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
enc_bench "plain form only (pipelined form removed)" IGNIS_X=0
