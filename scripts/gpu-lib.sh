# Shell helpers for the GPU-machine scripts (sourced by scripts/gpu-check.sh and scripts/gpu-session-setup.sh).
# They use $B (the build folder of the binaries) and $LOG (the log folder), set by the caller.

# `ignis bench --json` on stdin -> "b1:253.3(80%) b8:..." (decode tok/s, % of copy per row)
decode_rows() {
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("b%d:%.1f(%.0f%%)" % (r["batch"], r["decode_tok_s"], 100*r["decode_frac_copy"]) for r in d["rows"]))'
}

# enc_bench LABEL [VAR=VAL ...]: BERT-base fp16 latencies of the shapes and of the ragged mix (32
# sequences of 16, 32, ..., 512 tokens) under the given environment, -r ${ENC_REPS:-20}, with the CLI
# ${ENC_BIN:-$B/ignis} (e.g. a build to A/B against): the label and one line of "shape ms |" on stdout, the
# tool's lines appended to $LOG/bench_encoder.txt.
enc_bench() {
  local label=$1; shift
  local r=${ENC_REPS:-20} ragged bin=${ENC_BIN:-$B/ignis}; ragged=$(seq -s, 16 16 512)
  { env "$@" timeout 60 $bin bench-encoder --synthetic bert-base --dtype f16 -r $r
    env "$@" timeout 30 $bin bench-encoder --synthetic bert-base --dtype f16 -r $r --ragged $ragged; } > "$LOG/enc_tmp.txt" 2>&1
  echo "BERT-base fp16, $label:" | tee -a "$LOG/bench_encoder.txt"
  grep -E "^ *([0-9]+x[0-9]+ +[0-9.]+ ms|ragged32 +[0-9.]+ ms)" "$LOG/enc_tmp.txt" | tee -a "$LOG/bench_encoder.txt" |
    awk '{printf "%s %s | ", $1, $2} END {print ""}'
}

# decode_b1 [FLAGS ...]: for each string of `ignis bench` flags ("" = bf16), the decode tok/s of Llama-2-7B-shaped
# random weights at batch 1 (8-token prompt, 128 tokens, 2 runs), one line each
decode_b1() {
  local q
  for q in "$@"; do
    echo "llama-2-7b ${q:-bf16}: $(timeout 60 $B/ignis bench --synthetic llama-2-7b -p 8 -n 128 -r 2 --batch 1 $q --json 2>/dev/null | decode_rows)"
  done
}
