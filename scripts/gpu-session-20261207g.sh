#!/usr/bin/env bash
# Device call G of 2026-12-07 (evening): encoder flash attention with 1- / 2-warp blocks for small buckets
# (more SMs share the few tiles of a short batch): the attention tests with every block shape, sanitizers on
# them, then BERT-base fp16 latencies with the default rule (1 warp up to 256 rows) against each shape forced
# everywhere (IGNIS_ENC_ATTN_NW), alternated, twice (NW=4 everywhere = 6165d0d).
# Usage on the GPU machine: bash scripts/gpu-session-20261207g.sh
#   (binaries from scripts/devpack.sh).
source "$(dirname "$0")/gpu-session-setup.sh"
timeout 240 $B/ignis_gpu_tests > "$LOG/gpu_tests.log" 2>&1; echo "all GPU tests: rc=$?"; grep -E "PASSED|FAILED" "$LOG/gpu_tests.log" | tail -5
F='CudaEncoderKernels.AttentionRagged:CudaEncoder.*'
{ timeout 150 compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter="$F"; echo "memcheck encoder: rc=$?"
  timeout 150 scripts/racecheck-ours.sh $B/ignis_gpu_tests --gtest_filter='CudaEncoderKernels.AttentionRagged'; echo "racecheck attention: rc=$?"; } > "$LOG/sanitizers.log" 2>&1
grep -E "ERROR SUMMARY|rc=|racecheck-ours" "$LOG/sanitizers.log"
R=16,32,48,64,80,96,112,128,144,160,176,192,208,224,240,256,272,288,304,320,336,352,368,384,400,416,432,448,464,480,496,512
for i in 1 2; do for v in ignis:X=0 ignis:IGNIS_ENC_ATTN_NW=4 ignis:IGNIS_ENC_ATTN_NW=2 ignis:IGNIS_ENC_ATTN_NW=1; do
  bin=${v%%:*}; env=${v#*:}
  ( export "$env"
    { timeout 60 $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30
      timeout 30 $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30 --ragged $R; } > "$LOG/enc_tmp.txt" 2>&1 )
  echo "BERT-base fp16, $bin $env, run $i:" | tee -a "$LOG/bench_encoder.txt"; grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms|ragged32 +[0-9.]+ ms)" "$LOG/enc_tmp.txt" >> "$LOG/bench_encoder.txt"
done; done
python3 - "$LOG/bench_encoder.txt" <<'PY'
import re, sys, collections
d = collections.defaultdict(lambda: collections.defaultdict(list)); order = []
cur = None
for l in open(sys.argv[1]):
    m = re.match(r'BERT-base fp16, (\S+ \S+), run', l)
    if m:
        cur = m.group(1); order.append(cur) if cur not in order else None; continue
    m = re.match(r'^\s*(\S+)\s+([0-9.]+) ms', l)
    if m: d[m.group(1)][cur].append(m.group(2))
print('%-9s' % 'shape' + ''.join('%26s' % v.replace('IGNIS_ENC_ATTN_', '') for v in order))
for s in d: print('%-9s' % s + ''.join('%26s' % ' / '.join(d[s][v]) for v in order))
PY
