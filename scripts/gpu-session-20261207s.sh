#!/usr/bin/env bash
# (Since 418b711 the pipelined form is removed and IGNIS_ENC_ATTN_PIPE is ignored: rerun, its "pipelined" rows measure the plain form.)
# Device call S of 2026-12-07 (second session of the day): the encoder flash attention with row sums on the tensor pipe
# (P times a column of ones), a tree row max and the mask only on a sequence's last key tile (default), and its
# pipelined form (IGNIS_ENC_ATTN_PIPE=1: the next tile's scores computed beside the softmax). Encoder GPU tests (both
# forms), memcheck / racecheck on the attention test, BERT-base fp16 latencies alternated against the previous build
# (ignis_prev = 1e8d4d3), two runs each, then Nsight Compute durations of the attention kernel at 32x512.
# Usage on the GPU machine: bash scripts/gpu-session-20261207s.sh (binaries from DEVPACK_EXTRA=ignis_prev scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder*' > "$LOG/gpu_tests.log" 2>&1
echo "encoder GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
IGNIS_ENC_ATTN_PIPE=1 timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaEncoder.*' > "$LOG/gpu_tests_pipe.log" 2>&1
echo "encoder model tests, pipelined attention: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests_pipe.log" | tail -5
for tool in memcheck racecheck; do
  timeout 200 compute-sanitizer --tool $tool --error-exitcode 1 $B/ignis_gpu_tests \
    --gtest_filter='CudaEncoderKernels.AttentionRagged' > "$LOG/$tool.log" 2>&1
  echo "$tool AttentionRagged: rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOG/$tool.log" | tail -2
done
for i in 1 2; do
  ENC_BIN=$B/ignis_prev enc_bench "previous build (1e8d4d3), run $i" IGNIS_X=0
  enc_bench "row sums on the tensor pipe, run $i" IGNIS_X=0
  enc_bench "the same, pipelined, run $i" IGNIS_ENC_ATTN_PIPE=1
done
for v in prev new pipe; do
  bin=$B/ignis; [ $v = prev ] && bin=$B/ignis_prev
  env $([ $v = pipe ] && echo IGNIS_ENC_ATTN_PIPE=1 || echo IGNIS_X=0) timeout 120 ncu --clock-control none --graph-profiling node \
    --kernel-name regex:enc_flash --metrics gpu__time_duration.sum,smsp__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
    --csv $bin bench-encoder --synthetic bert-base --dtype f16 --shapes 32x512 -r 1 > "$LOG/attnncu_$v.csv" 2> "$LOG/attnncu_$v.err"
  echo "ncu attention 32x512 $v: exit $?"
  python3 - "$LOG/attnncu_$v.csv" <<'PY'
import csv, sys, statistics as st
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
h = rows[0]; data = rows[1:]
iname, ival = h.index("Metric Name"), h.index("Metric Value")
iunit = h.index("Metric Unit") if "Metric Unit" in h else None
by = {}
for r in data:
    try: by.setdefault(r[iname] + (" [" + r[iunit] + "]" if iunit is not None else ""), []).append(float(r[ival].replace(",", "")))
    except ValueError: pass
for k, v in by.items():
    print(f"  {k}: n={len(v)} median={st.median(v):.4g} (min {min(v):.4g}, max {max(v):.4g})")
PY
done
# On an H200 (issue 5's targets are H200 figures): decode tok/s of Llama-2-7B-shaped weights, bf16 and quantized
if grep -q H200 "$LOG/device.txt"; then
  decode_b1 "" "--quant int4 --group 128" "--quant int8" "--quant q4_k" "--quant q4_0"
fi
