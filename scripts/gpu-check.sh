#!/usr/bin/env bash
# The GPU checks, on a machine with an NVIDIA Hopper GPU (rerunnable by anyone):
#   scripts/gpu-check.sh deps      unpack carried Debian packages (PCRE2, CLI11, utf8proc, GoogleTest) into /
#   scripts/gpu-check.sh prebuilt  use binaries built elsewhere (scripts/devpack.sh): unpack .devcarry/x/*.tar.xz
#                                  into /tmp/ignis-prebuilt, put its lib/ on LD_LIBRARY_PATH, IGNIS_BUILD there
#   scripts/gpu-check.sh build     configure + build the CLI and the GPU tests (sm_90a)
#   scripts/gpu-check.sh test      GPU kernel/model tests, HF parity (cpu, cuda f32, cuda bf16)
#   scripts/gpu-check.sh smollm2   CPU vs GPU greedy text on SmolLM2-135M-Instruct (needs $IGNIS_MODEL)
#   scripts/gpu-check.sh sanitize  compute-sanitizer memcheck + racecheck on the GPU tests ($SAN_SHARDS processes at once;
#                                  races inside cuBLASLt's nvjet kernels are not counted: scripts/racecheck-ours.sh)
#   scripts/gpu-check.sh bench     ignis synthetic benchmark table (llama-2-7b)
#   scripts/gpu-check.sh abfold    folded RMSNorm (batch 1): tests, memcheck, decode tok/s with IGNIS_NORM_FOLD=0 / 1
#   scripts/gpu-check.sh abattn    decode attention warp vs tile kernel: tests, memcheck, racecheck, tok/s IGNIS_ATTN_DECODE=tile / warp
#   scripts/gpu-check.sh abenv     decode tok/s of environment settings alternated ($AB_VARIANTS, $AB_ARGS)
#   scripts/gpu-check.sh abnorm    decode tok/s with each IGNIS_FUSED_NORM mode (0, 1, 2)
#   scripts/gpu-check.sh abring    decode chain ring engine: tests, sanitizers, layer-tail timing, tok/s chain off / registers / ring
#   scripts/gpu-check.sh abchain   persistent decode chain: its tests, memcheck, decode tok/s with IGNIS_DECODE_CHAIN=0 / 1
#   scripts/gpu-check.sh abgemv    decode tok/s with IGNIS_GEMV=auto / bulk / tc / simple, and each GEMV shape alone (GB/s)
#   scripts/gpu-check.sh quantbench  synthetic int8 / int4 g128 benchmark tables
#   scripts/gpu-check.sh abquant   int8 / int4 decode tok/s and GEMV GB/s with each quantized GEMV (bulk / tc / simple)
#   scripts/gpu-check.sh quantsplit  int4 tensor-core GEMV with and without split-K (GB/s alone, decode tok/s)
#   scripts/gpu-check.sh ncuint4   Nsight Compute sections (SOL, occupancy, stalls) of one layer's int4 GEMVs in decode
#   scripts/gpu-check.sh ncu       per-kernel durations of batch-1 decode steps (Nsight Compute), summed by kernel
#   scripts/gpu-check.sh abtiled   int4 tiled nibble order vs row-major: tests, load patterns, GEMV GB/s, decode tok/s
#   scripts/gpu-check.sh abrms     decode tok/s with the float4 RMSNorm kernel or the scalar one
#   scripts/gpu-check.sh int4var   int4 GEMV register variants from a cold L2 and in the decoder; int8 kernels at b1
#   scripts/gpu-check.sh chaintrace  decode chain tests and its per-block trace timing only
#   scripts/gpu-check.sh abbert    ignis BERT-base fp16 latencies with the encoder kernel variants (A/B)
#   scripts/gpu-check.sh abquantbin decode tok/s (int4 g128, Q4_0, Q4_K, bf16) of the CLI against $ALT_BIN, alternated
#   scripts/gpu-check.sh gptqtime  GPTQ on the GPU: tests (vs the CPU GPTQ) and the solve time of 7B-sized layers
#   scripts/gpu-check.sh bertncu   Nsight Compute per-kernel durations of the BERT-base encoder pass ($BERT_SHAPES)
#   scripts/gpu-check.sh abbertbin BERT-base fp16 latencies of builds / settings alternated ($BERT_VARIANTS, $ALT_BIN)
#   scripts/gpu-check.sh bertquick ignis BERT-base fp16 latencies alone (no peers)
#   scripts/gpu-check.sh peers     bench/peers.py: ignis vs HF eager vs torch.compile, same GPU, same run
#   scripts/gpu-check.sh tune      decode tok/s of llama-2-7b over GEMV settings: fused RMSNorm
#                                  ($TUNE_NORM), blocks per SM ($TUNE_BPS), L2::256B load hint ($TUNE_L2)
#   scripts/gpu-check.sh bert      encoder (BERT family): GPU tests, compute-sanitizer memcheck on its kernels,
#                                  bench/peers_bert.py (BERT-base fp16: ignis vs HF eager / sdpa / torch.compile + parity)
#   scripts/gpu-check.sh bertcheck the encoder's GPU tests and memcheck alone (no peers; BERT_RACECHECK=1: racecheck too)
# Several stages may be given. Logs go to $OUT (or ./gpu-logs). Data: $IGNIS_DATA (stories260K.bin,
# tok512.bin), default ../shared/data.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-gpu-logs}"; mkdir -p "$LOG"
export IGNIS_DATA="${IGNIS_DATA:-$PWD/../shared/data}"
B="${IGNIS_BUILD:-build-gpu}"  # build directory (IGNIS_BUILD to put it elsewhere)
status=0
run() {  # run NAME CMD...: logs to $LOG/NAME.log, records pass/fail
  local name="$1"; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@" > "$LOG/$name.log" 2>&1; local rc=$?
  tail -n "${TAIL:-25}" "$LOG/$name.log"
  echo "=== $name: exit $rc in $((SECONDS - t0)) s"
  echo "$name $rc $((SECONDS - t0))" >> "$LOG/summary.txt"
  [ $rc = 0 ] || status=1
}
run_sharded() {  # run_sharded NAME N CMD...: a gtest binary under CMD in N processes at once (GTEST_TOTAL_SHARDS;
                 # compute-sanitizer is mostly CPU-bound), logs NAME_i.log, one pass/fail line for all
  local name="$1" n="$2"; shift 2
  [ "$n" -le 1 ] && { run "$name" "$@"; return; }
  echo "=== $name ($n shards): $*"
  local t0=$SECONDS rc=0 i
  for ((i = 0; i < n; i++)); do
    ( GTEST_TOTAL_SHARDS=$n GTEST_SHARD_INDEX=$i "$@" > "$LOG/${name}_$i.log" 2>&1; echo $? > "$LOG/${name}_$i.rc" ) &
  done
  wait
  for ((i = 0; i < n; i++)); do
    local r; r=$(cat "$LOG/${name}_$i.rc"); tail -n 4 "$LOG/${name}_$i.log"; [ "$r" = 0 ] || rc=$r
  done
  echo "=== $name: exit $rc in $((SECONDS - t0)) s"
  echo "$name $rc $((SECONDS - t0))" >> "$LOG/summary.txt"
  [ $rc = 0 ] || status=1
}
source scripts/gpu-lib.sh  # decode_rows, enc_bench
for stage in "$@"; do
  case "$stage" in
    prebuilt)  # binaries + the shared libraries the image lacks, built and packed by scripts/devpack.sh
      P=/tmp/ignis-prebuilt; mkdir -p $P
      for f in .devcarry/x/*.tar.xz; do tar -xJf "$f" -C $P; done
      for f in $P/lib/*.xz; do [ -e "$f" ] && xz -d -f "$f"; done
      export LD_LIBRARY_PATH="$P/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; B=$P/build-gpu
      ldd $B/ignis | grep -i "not found" && status=1
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG/device.txt" ;;
    abfold)  # the folded RMSNorm (batch 1): its tests + memcheck, then decode tok/s IGNIS_NORM_FOLD=0 / 1 alternated
      TAIL=6 run fold_tests $B/ignis_gpu_tests --gtest_filter='*Folded*:CudaKernels.Gemv:CudaQuant.Gemv*:CudaLlama.*'
      TAIL=6 run fold_memcheck compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests \
        --gtest_filter='*Folded*:CudaLlama.DecodeFusions*'
      for sh in ${FOLD_SHAPES:-llama-2-7b llama-3-8b smollm2-135m}; do
        for i in 1 2; do
          for fo in 0 1; do
            v=$(IGNIS_NORM_FOLD=$fo $B/ignis bench --synthetic "$sh" -p 8 -n 128 -r 2 --json 2>/dev/null | decode_rows)
            echo "$sh bf16 IGNIS_NORM_FOLD=$fo $v" | tee -a "$LOG/abfold.txt"
          done
        done
      done
      for q in ${FOLD_QUANT:-"int4 --group 128" q4_0 q4_k int8}; do
        for fo in 0 1 0 1; do
          v=$(IGNIS_NORM_FOLD=$fo $B/ignis bench --synthetic llama-2-7b --quant $q -p 8 -n 128 -r 2 --batch 1 --json 2>/dev/null | decode_rows)
          echo "llama-2-7b $q IGNIS_NORM_FOLD=$fo $v" | tee -a "$LOG/abfold.txt"
        done
      done ;;
    abattn)  # decode attention: warp kernel vs tile kernel: tests, memcheck + racecheck, decode tok/s alternated
      TAIL=6 run attn_tests $B/ignis_gpu_tests --gtest_filter='CudaKernels.Attention*:CudaLlama.*'
      TAIL=6 run attn_memcheck compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests \
        --gtest_filter='CudaKernels.AttentionDecode*'
      TAIL=6 run attn_racecheck timeout 300 compute-sanitizer --tool racecheck --error-exitcode 1 $B/ignis_gpu_tests \
        --gtest_filter='CudaKernels.AttentionDecode*'
      for sh in ${ATTN_SHAPES:-llama-2-7b llama-3-8b}; do
        for at in tile warp tile warp; do
          v=$(IGNIS_ATTN_DECODE=$at $B/ignis bench --synthetic "$sh" -p ${ATTN_PROMPT:-2048} -n 128 -r 2 --json 2>/dev/null | decode_rows)
          echo "$sh bf16 IGNIS_ATTN_DECODE=$at $v" | tee -a "$LOG/abattn.txt"
        done
      done
      for at in tile warp tile warp; do
        v=$(IGNIS_ATTN_DECODE=$at $B/ignis bench --synthetic llama-2-7b --quant int4 --group 128 -p 8 -n 128 -r 2 --batch 1 --json 2>/dev/null | decode_rows)
        echo "llama-2-7b int4 g128 IGNIS_ATTN_DECODE=$at $v" | tee -a "$LOG/abattn.txt"
      done ;;
    abenv)  # decode tok/s of settings alternated, twice: AB_VARIANTS="A B ..." (each VAR=VAL[,VAR=VAL...]; "-" none),
            # AB_ARGS (ignis bench arguments), e.g. AB_VARIANTS="- IGNIS_GEMV_U=8" AB_ARGS="--synthetic llama-2-7b -p 8"
      for i in 1 2; do
        for var in ${AB_VARIANTS:--}; do
          envs=(); [ "$var" = - ] || IFS=, read -ra envs <<< "$var"
          v=$(env "${envs[@]}" $B/ignis bench ${AB_ARGS:---synthetic llama-2-7b -p 8} -n 128 -r 2 --json 2>/dev/null | decode_rows)
          echo "${AB_ARGS:---synthetic llama-2-7b -p 8} | $var | $v" | tee -a "$LOG/abenv.txt"
        done
      done ;;
    abnorm)  # decode tok/s with the RMSNorm separate (0), fused self-summing (1), fused from partial sums (2)
      for fn in 0 1 2 0 2; do
        v=$(IGNIS_FUSED_NORM=$fn $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" -p 8 -n 128 --json 2>/dev/null \
            | decode_rows)
        echo "IGNIS_FUSED_NORM=$fn $v" | tee -a "$LOG/abnorm.txt"
      done ;;
    abgemv)  # decode tok/s with each GEMV kernel (bulk-copy, register tensor-core) and the GEMV shapes alone
      for impl in auto bulk tc simple auto; do
        v=$(IGNIS_GEMV=$impl $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" -p 8 -n 128 --json 2>/dev/null \
            | decode_rows)
        echo "IGNIS_GEMV=$impl $v" | tee -a "$LOG/abgemv.txt"
      done
      TAIL=40 run gemv_bw $B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='CudaKernels.DISABLED_GemvBandwidth' ;;
    gemvbw)  # the bf16 GEMV kernels alone on the 7B / 8B shapes (GB/s, % of copy), B = 1 and 8
      TAIL=40 run gemv_bw $B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='CudaKernels.DISABLED_GemvBandwidth' ;;
    ring)  # can a persistent kernel stream the 7B weights through a bulk-copy ring across grid barriers? (load_probe.cu)
      TAIL=6 run ring_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.RingProbe*'
      TAIL=24 run ring_streaming $B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='CudaQuant.DISABLED_RingStreaming' ;;
    abring)  # the decode chain's bulk-copy ring engine (decode_ring.cu): tests, sanitizers, layer-tail timing of both
             # engines, decode tok/s b1 with no chain / the register chain / the ring chain, alternated (each under a timeout)
      TAIL=6 run ring_chain_tests timeout 120 $B/ignis_gpu_tests --gtest_filter='CudaChain*:*CudaChainEngine*:CudaLlama.DecodeChain*'
      TAIL=4 run ring_racecheck timeout 120 compute-sanitizer --tool racecheck $B/ignis_gpu_tests --gtest_filter='*CudaChainEngine.*/Ring'
      for r in 0 1; do
        IGNIS_CHAIN_RING=$r TAIL=16 run "ring_tail$r" timeout 60 $B/ignis_gpu_tests --gtest_also_run_disabled_tests \
          --gtest_filter='CudaChain.DISABLED_LayerTailTiming'
      done
      for i in 1 2; do
        for c in 0 1 ring; do
          v=$(IGNIS_DECODE_CHAIN=$c timeout 90 $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" -p 8 -n 128 -r 2 --batch 1 \
              --json 2>/dev/null | decode_rows)
          echo "${SHAPE:-llama-2-7b} IGNIS_DECODE_CHAIN=$c $v" | tee -a "$LOG/abring.txt"
        done
      done ;;
    abchain)  # the persistent batch-1 decode chain (decode_chain.cu): tests, memcheck, decode tok/s off / on
      TAIL=6 run chain_tests $B/ignis_gpu_tests --gtest_filter='CudaChain.*:CudaLlama.DecodeChain*:CudaLlama.Stories*'
      TAIL=6 run chain_memcheck compute-sanitizer --tool memcheck $B/ignis_gpu_tests --gtest_filter='CudaChain.*'
      TAIL=6 run chain_racecheck compute-sanitizer --tool racecheck $B/ignis_gpu_tests --gtest_filter='CudaChain.*'
      TAIL=8 run chain_timing $B/ignis_gpu_tests --gtest_also_run_disabled_tests \
        --gtest_filter='CudaChain.DISABLED_LayerTailTiming'
      for c in 0 1 0 1; do
        v=$(IGNIS_DECODE_CHAIN=$c $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" -p 8 -n 128 -r 2 --json 2>/dev/null \
            | decode_rows)
        echo "IGNIS_DECODE_CHAIN=$c $v" | tee -a "$LOG/abchain.txt"
      done
      for c in 0 1; do
        v=$(IGNIS_DECODE_CHAIN=$c $B/ignis bench --synthetic llama-3-8b -p 8 -n 128 -r 2 --json 2>/dev/null | decode_rows)
        echo "llama-3-8b IGNIS_DECODE_CHAIN=$c $v" | tee -a "$LOG/abchain.txt"
      done ;;
    abrope)  # decode tok/s (b1, b8) with RoPE + KV write separate (0) or inside the attention kernel (1, default)
      for r in 0 1 0 1; do
        v=$(IGNIS_FUSED_ROPE=$r $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" -p 8 -n 128 -r 2 --json 2>/dev/null \
            | decode_rows)
        echo "IGNIS_FUSED_ROPE=$r $v" | tee -a "$LOG/abrope.txt"
      done ;;
    abpdl)  # decode tok/s (b1, b8) with and without Programmatic Dependent Launch
      for p in 1 0 1 0; do
        v=$(IGNIS_PDL=$p $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" -p 8 -n 128 -r 2 --json 2>/dev/null \
            | decode_rows)
        echo "IGNIS_PDL=$p $v" | tee -a "$LOG/abpdl.txt"
      done ;;
    breakdown8)  # where the kernels of a batch-8 decode step go (one by one), beside the b1 / b8 rows
      TAIL=4 run breakdown_b8 $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --batch 8 -p 8 -n 128 -r 1 ;;
    quanttest)  # the quantized GEMV tests, and GB/s of int8 / int4 on the 7B shapes, B = 1 and 8 (int4: tensor-core
                # kernel variants a / b / c, see gemv_int4_tc.cu, then the CUDA-core kernel); QUANT_ALL=1: every format
      TAIL=6 run quant_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.*:CudaLlama.*'
      BW="$B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter=CudaQuant.DISABLED_QuantGemvBandwidth"
      for b in 1 8; do
        for v in ${QVARIANTS:-a b c}; do
          IGNIS_BW_BATCH=$b IGNIS_BW_FORMATS=int4 IGNIS_QGEMV_VARIANT=$v TAIL=9 run quant_gemv_bw_${v}_b$b $BW
        done
        IGNIS_BW_BATCH=$b IGNIS_BW_FORMATS=int8,int4 IGNIS_QGEMV=simple TAIL=13 run quant_gemv_bw_cudacore_b$b $BW
      done
      [ -n "${QUANT_ALL:-}" ] && TAIL=40 run quant_gemv_bw_all $BW ;;
    abquant)  # int8 / int4 decode with each quantized GEMV (bulk-copy: the sm_90 default; tc; simple), and the 7B
              # shapes alone (GB/s of packed bytes), B = 1 and 8
      TAIL=8 run quant_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.*:CudaKernels.Gemv*:CudaLlama.*'
      BW="$B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter=CudaQuant.DISABLED_QuantGemvBandwidth"
      for b in 1 8; do
        for impl in bulk tc simple; do
          IGNIS_BW_BATCH=$b IGNIS_BW_FORMATS=int8,int4 IGNIS_QGEMV=$impl TAIL=13 run qbw_${impl}_b$b $BW
        done
      done
      for q in "int8" "int4 --group 128" "int4 --group 32"; do
        for impl in bulk tc simple; do
          v=$(IGNIS_QGEMV=$impl $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant $q -p 8 -n 128 -r 2 --json \
              2>/dev/null | decode_rows)
          echo "--quant $q IGNIS_QGEMV=$impl $v" | tee -a "$LOG/abquant.txt"
        done
      done ;;
    quantsplit)  # int4 g128: the tensor-core GEMV with split-K (default, given a workspace) vs one block per tile
      TAIL=8 run quant_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.*:CudaKernels.Gemv*:CudaLlama.*'
      BW="$B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter=CudaQuant.DISABLED_QuantGemvBandwidth"
      for sp in 0 1; do
        IGNIS_QGEMV_SPLITS=$sp IGNIS_BW_FORMATS=int4 TAIL=9 run qbw_split${sp}_b1 $BW
      done
      for q in "int4 --group 128" "int8" "int4 --group 32"; do
        for sp in 0 1; do
          v=$(IGNIS_QGEMV_SPLITS=$sp $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant $q -p 8 -n 128 -r 2 --json \
              2>/dev/null | decode_rows)
          echo "--quant $q IGNIS_QGEMV_SPLITS=$sp $v" | tee -a "$LOG/quantsplit.txt"
        done
      done ;;
    abg1)  # the G1 form of the int4 tensor-core GEMV (batch 1, groups of 32 / 64, mins): its tests, memcheck +
           # racecheck, then b1 / b8 decode of Q4_0 / Q4_K / int4 g32 with IGNIS_INT4_G1=0 / 1 alternated, bf16 beside
      TAIL=8 run g1_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.*:CudaLlama.*Gguf*:CudaLlama.*Quant*'
      IGNIS_INT4_G1=1 TAIL=4 run g1_model_tests $B/ignis_gpu_tests --gtest_filter='CudaLlama.*Gguf*:CudaLlama.*Quant*'
      run g1_memcheck compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter='CudaQuant.Int4Batch1Fp16Form*'
      run g1_racecheck compute-sanitizer --tool racecheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter='CudaQuant.Int4Batch1Fp16FormMins'
      for i in $(seq ${AB_ROUNDS:-2}); do
        for q in ${G1_FORMATS:-q4_k q4_0 "int4 --group 32" bf16}; do
          for h in 0 1; do
            [ "$q" = bf16 ] && [ $h = 0 ] && continue
            qa="--quant $q"; [ "$q" = bf16 ] && qa=
            v=$(IGNIS_INT4_G1=$h $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" $qa -p 8 -n 128 -r 2 --json 2>/dev/null | decode_rows)
            echo "$q IGNIS_INT4_G1=$h $v" | tee -a "$LOG/abg1.txt"
          done
        done
      done ;;
    ggufbench)  # issue 5's GGUF target: a synthetic 7B in Q4_0 / Q4_K / Q8_0 blocks (random) beside bf16, decode only
      # (q4_0 / q4_k run repacked into int4 group 32 on the tensor-core GEMV; q4_0n / q4_kn: IGNIS_Q4_0_NATIVE=1 /
      # IGNIS_Q4_K_NATIVE=1, their own blocks and kernels)
      for q in ${GGUF_TYPES:-bf16 q4_0 q4_0n q4_k q4_kn q8_0}; do
        nat=$([ "${q%n}" != "$q" ] && echo 1 || echo 0); t=${q%n}; [ "$t" = bf16 ] && t=""
        v=$(IGNIS_Q4_0_NATIVE=$nat IGNIS_Q4_K_NATIVE=$nat $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" \
            ${t:+--quant $t} -p 8 -n 128 -r 2 --json 2>/dev/null | decode_rows)
        echo "$q $v" | tee -a "$LOG/ggufbench.txt"
      done ;;
    ncuquant)  # Nsight Compute: occupancy and warp stalls of the int4 tensor-core and the int8 GEMV on 7B shapes
      for k in gemv_int4_tc gemv_int_kernel; do
        timeout 200 ncu --section LaunchStats --section Occupancy --section WarpStateStats --section SpeedOfLight -k "regex:$k" \
          --launch-skip 20 --launch-count 1 $B/ignis_gpu_tests --gtest_also_run_disabled_tests \
          --gtest_filter='CudaQuant.DISABLED_QuantGemvBandwidth' > "$LOG/ncu_$k.txt" 2>&1
        grep -E "^  [a-z_]+|Registers Per|Achieved Occ|Theoretical Occ|Block Limit Reg|Warp Cycles Per Issued|Memory Throughput|DRAM Throughput|Duration|stalled" "$LOG/ncu_$k.txt" | cut -c1-160 | head -24
      done ;;
    ncuint4)  # Nsight Compute on the int4 tensor-core GEMVs inside batch-1 decode (graph nodes one by one): one layer's
              # 4 products (q/k/v, o, gate/up, down), SOL, occupancy, warp stalls; NCU_Q: --quant arguments
      timeout 240 ncu --graph-profiling node --section LaunchStats --section Occupancy --section WarpStateStats \
        --section SpeedOfLight --section MemoryWorkloadAnalysis -k 'regex:gemv_int4_tc' --launch-skip 400 --launch-count 4 \
        $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant ${NCU_Q:-int4 --group 128} -p 8 -n 8 -r 1 --batch 1 \
        > "$LOG/ncuint4.txt" 2>&1
      echo "ncu exit $?"
      grep -E "gemv_int4_tc_kernel|Grid Size|Registers Per|Achieved Occ|Theoretical Occ|Block Limit|Warp Cycles Per Issued|Memory Throughput|DRAM Throughput|Duration|Stall|stall|L2 Hit|Issued Ipc|Executed Ipc" \
        "$LOG/ncuint4.txt" | sed 's/(anonymous namespace):://; s/ignis::cuda:://' | cut -c1-150 | head -90 ;;
    quantbench)  # synthetic weight-only quantized models (issue 5); int4 also with the CUDA-core GEMV
      TAIL=6 run bench_int8 $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant int8
      TAIL=6 run bench_int4 $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant int4 --group 128
      IGNIS_QGEMV=tc TAIL=6 run bench_int8_tc $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant int8 -p 8 -n 128 -r 2
      IGNIS_QGEMV=simple TAIL=6 run bench_int4_cudacore $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant int4 --group 128 -p 8 -n 128 ;;
    ncu)  # Nsight Compute: duration of every kernel of a few batch-1 decode steps (graph nodes one by one);
          # BENCH_ARGS adds bench flags (e.g. "--quant int4 --group 128"), NCU_TAG suffixes the log names
      NCU_TAG="${NCU_TAG:-}"
      timeout 240 ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,dram__bytes_read.sum \
        --csv -k 'regex:gemv|attn|rope|rmsnorm|embed|sample|argmax' --launch-skip 600 --launch-count 400 \
        $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" ${BENCH_ARGS:-} -p 8 -n 8 -r 1 --batch 1 > "$LOG/ncu$NCU_TAG.csv" 2> "$LOG/ncu$NCU_TAG.err"
      echo "ncu exit $?"
      python3 scripts/ncu_summary.py "$LOG/ncu$NCU_TAG.csv" | tee "$LOG/ncu_summary$NCU_TAG.txt" ;;
    abtiled)  # int4 nibbles tiled (IGNIS_INT4_TILED=1) or row-major: tests, load patterns, GEMV GB/s from a cold L2, tok/s
      TAIL=6 run tiled_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.*'
      TAIL=6 run tiled_model_tests env IGNIS_INT4_TILED=1 $B/ignis_gpu_tests --gtest_filter='CudaLlama.*:CudaGptq*'
      TAIL=8 run load_patterns $B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='CudaQuant.DISABLED_LoadPatterns'
      for t in 0 1; do
        TAIL=12 run "qbw_tiled$t" env IGNIS_BW_TILED=$t IGNIS_BW_FORMATS=int8,int4 $B/ignis_gpu_tests \
          --gtest_also_run_disabled_tests --gtest_filter='CudaQuant.DISABLED_QuantGemvBandwidth'
      done
      for q in "int4 --group 128" "q4_0" "q4_k" "int4 --group 128"; do
        for t in 0 1; do
          v=$(IGNIS_INT4_TILED=$t $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant $q -p 8 -n 128 -r 2 --json \
              2>/dev/null | decode_rows)
          echo "--quant $q IGNIS_INT4_TILED=$t $v" | tee -a "$LOG/abtiled.txt"
        done
      done ;;
    abrms)  # decode tok/s with the float4 RMSNorm kernel (default) or the scalar one (IGNIS_RMSNORM=scalar)
      for q in "" "--quant int4 --group 128"; do
        for k in scalar vec scalar vec; do
          v=$(IGNIS_RMSNORM=$k $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" $q -p 8 -n 128 -r 2 --json 2>/dev/null | decode_rows)
          echo "${q:-bf16} IGNIS_RMSNORM=$k $v" | tee -a "$LOG/abrms.txt"
        done
      done ;;
    int4var)  # int4 tensor-core GEMV register variants (IGNIS_QGEMV_VARIANT) from a cold L2, and in the decoder; int8 kernels at b1
      TAIL=6 run quant_tests $B/ignis_gpu_tests --gtest_filter='CudaQuant.*:CudaLlama.*Quant*:CudaLlama.*Gguf*:CudaGptq*'
      for v in a b c; do
        TAIL=12 run "qbw_var_$v" env IGNIS_QGEMV_VARIANT=$v IGNIS_BW_TILED=1 IGNIS_BW_FORMATS=int4 $B/ignis_gpu_tests \
          --gtest_also_run_disabled_tests --gtest_filter='CudaQuant.DISABLED_QuantGemvBandwidth'
      done
      for q in "int4 --group 128" "q4_0"; do
        for v in auto a b c; do
          v2=$v; [ $v = auto ] && v2=
          r=$(IGNIS_QGEMV_VARIANT=$v2 $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant $q -p 8 -n 128 -r 2 --json \
              2>/dev/null | decode_rows)
          echo "--quant $q IGNIS_QGEMV_VARIANT=$v $r" | tee -a "$LOG/int4var.txt"
        done
      done
      for g in auto tc; do
        g2=$g; [ $g = auto ] && g2=
        r=$(IGNIS_QGEMV=$g2 $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --quant int8 -p 8 -n 128 -r 2 --json \
            2>/dev/null | decode_rows)
        echo "--quant int8 IGNIS_QGEMV=$g $r" | tee -a "$LOG/int4var.txt"
      done ;;
    chaintrace)  # the decode chain's tests and its per-block trace timing only (no sanitizers, no A/B)
      TAIL=6 run chain_tests $B/ignis_gpu_tests --gtest_filter='CudaChain.*:CudaLlama.DecodeChain*'
      TAIL=40 run chain_timing $B/ignis_gpu_tests --gtest_also_run_disabled_tests \
        --gtest_filter='CudaChain.DISABLED_LayerTailTiming' ;;
    abbert)  # ignis encoder latencies: default, and with a block per LayerNorm row at every size (IGNIS_ENC_LN=block)
      i=0
      for v in "X=0" IGNIS_ENC_LN=block "X=0" IGNIS_ENC_LN=block; do
        i=$((i + 1))
        ( export "$v"; TAIL=14 run "bert_bench_${i}_${v%%=*}" $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 )
      done ;;
    abbertbin)  # encoder latencies of builds / settings alternated: $BERT_VARIANTS = "bin[:VAR=value] ..." (bins in $B,
      # packed beside the CLI), default "ignis ${ALT_BIN:-ignis_alt}"
      for i in 1 2; do
        for v in ${BERT_VARIANTS:-ignis ${ALT_BIN:-ignis_alt}}; do
          bin=${v%%:*}; env=X=0; [ "$bin" != "$v" ] && env=${v#*:}
          ( export "$env"; TAIL=14 run "bert_${bin}_${env%%=*}_$i" $B/$bin bench-encoder --synthetic bert-base --dtype f16 -r 30 )
        done
      done ;;
    abquantbin)  # decode tok/s of the CLI against $ALT_BIN (another build packed beside it) per weight format ($QFORMATS), alternated;
                 # prompt lengths 8 and $AB_PROMPT (default 8)
      for q in ${QFORMATS:-"int4 --group 128" q4_0 q4_k bf16}; do
        qa="--quant $q"; [ "$q" = bf16 ] && qa=
        for i in 1 2; do
          for bin in ignis "${ALT_BIN:-ignis_alt}"; do
            r=$($B/$bin bench --synthetic "${SHAPE:-llama-2-7b}" $qa -p ${AB_PROMPT:-8} -n 128 -r 2 --json 2>/dev/null | decode_rows)
            echo "$bin ${q} $r" | tee -a "$LOG/abquantbin.txt"
          done
        done
      done ;;
    gptqtime)  # GPTQ on the GPU: the tests, then the solve time of Llama-2-7B-sized layers
      TAIL=12 run gptq_tests $B/ignis_gpu_tests --gtest_filter='CudaGptq.*'
      TAIL=6 run gptq_time $B/ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='CudaGptq.DISABLED_SolveTime7BLayers' ;;
    bertncu)  # Nsight Compute: every kernel of the BERT-base fp16 encoder pass (graph nodes one by one), by shape
      for sh in ${BERT_SHAPES:-1x16 1x128 32x128}; do
        timeout 240 ncu --clock-control none --graph-profiling node --metrics gpu__time_duration.sum,dram__bytes_read.sum \
          --csv $B/ignis bench-encoder --synthetic bert-base --dtype f16 --shapes $sh -r 2 > "$LOG/bertncu_$sh.csv" 2> "$LOG/bertncu_$sh.err"
        echo "ncu $sh exit $?"
        python3 scripts/ncu_summary.py "$LOG/bertncu_$sh.csv" | tee "$LOG/bertncu_summary_$sh.txt"
      done
      TAIL=20 run bert_eager $B/ignis bench-encoder --synthetic bert-base --dtype f16 --no-graphs -r 30 --shapes 1x16,1x128,8x128,32x128 ;;
    bertquick)  # ignis encoder latencies only (no peers): BERT-base fp16, the issue's shapes (PDLQ=1: also with PDL)
      TAIL=30 run bert_bench $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30
      [ -n "${PDLQ:-}" ] && IGNIS_ENC_PDL=1 TAIL=30 run bert_bench_pdl $B/ignis bench-encoder --synthetic bert-base --dtype f16 -r 30 ;;
    deps)  # GPU images without the -dev packages: unpack carried .debs ($IGNIS_DEBS) into /
      for f in "${IGNIS_DEBS:-.devcarry/debs}"/*.deb; do dpkg -x "$f" /; done; ldconfig ;;
    build)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG/device.txt"
      run configure cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DIGNIS_CUDA=ON -DIGNIS_CUDA_ARCHS=90a -DIGNIS_BENCH=OFF
      run build ninja -C $B ignis_cli ignis_gpu_tests ignis_tests ;;
    test)
      TAIL=40 run gpu_tests $B/ignis_gpu_tests
      run cpu_tests $B/ignis_tests --gtest_filter='LlamaRef*:Ops*:Quant*'
      run hf_parity python3 tests/reference/hf_parity.py --ignis $B/ignis --modes cpu cuda-f32 cuda-bf16 ;;
    smollm2)
      M="${IGNIS_MODEL:?set IGNIS_MODEL to the SmolLM2 GGUF}"
      for dev in cpu cuda; do
        run "greedy_$dev" $B/ignis generate -m "$M" --device $dev -p "The capital of France is" --temp 0 -n 40 --ignore-eos -q
      done
      # The CPU's x8 kernels sum in another order than the file-layout tiles; greedy text can part
      # at a near-tie (SmolLM2 after "Paris.\n\nThe": " United" 14.380 vs " answer" 14.335), so both are shown.
      IGNIS_NO_REPACK=1 run greedy_cpu_file_layout $B/ignis generate -m "$M" --device cpu -p "The capital of France is" --temp 0 -n 40 --ignore-eos -q
      # --cpu-activations f32: the CPU without the 8-bit rounding of the activations (the exact model's products)
      run greedy_cpu_f32 $B/ignis generate -m "$M" --device cpu --cpu-activations f32 -p "The capital of France is" --temp 0 -n 40 --ignore-eos -q
      run greedy_stories_cuda $B/ignis generate -m "$IGNIS_DATA/stories260K.bin" --tokenizer "$IGNIS_DATA/tok512.bin" --device cuda -p "Once upon a time" --temp 0 -n 60 -q
      run chat_cuda $B/ignis generate -m "$M" --device cuda --chat -p "What is the capital of France?" --temp 0 -n 60 -q
      run chat_cpu $B/ignis generate -m "$M" --device cpu --chat -p "What is the capital of France?" --temp 0 -n 60 -q
      same() {  # same LABEL A.log B.log: the generated text (notes dropped), first 400 bytes
        if cmp -s <(grep -v '^note:' "$LOG/$2" | head -c 400) <(grep -v '^note:' "$LOG/$3" | head -c 400); then
          echo "SmolLM2 greedy, $1: CPU == GPU"; else echo "SmolLM2 greedy, $1: CPU != GPU"; fi
      }
      same "capital prompt" greedy_cpu.log greedy_cuda.log
      same "capital prompt, CPU file layout" greedy_cpu_file_layout.log greedy_cuda.log
      same "capital prompt, CPU f32 activations" greedy_cpu_f32.log greedy_cuda.log
      same "chat" chat_cpu.log chat_cuda.log
      # the float64 NumPy reference decides near-ties (needs the pure-Python gguf package; on a host without
      # network: pip download gguf here, carry the wheel, pip install --target it there and set PYTHONPATH)
      if python3 -c 'import gguf' 2>/dev/null; then
        ids=$($B/ignis tokenize -m "$M" -p "The capital of France is" 2>/dev/null | tail -1)
        run greedy_reference python3 tests/reference/gguf_greedy.py "$M" 24 $ids
        ref=$(head -c 60 "$LOG/greedy_reference.log")
        for d in cpu cuda; do
          if [ "$(grep -v '^note:' "$LOG/greedy_$d.log" | head -c ${#ref})" = "$ref" ]; then echo "SmolLM2 greedy: $d == float64 reference (24 tokens)"
          else echo "SmolLM2 greedy: $d != float64 reference"; fi
        done
      else echo "SmolLM2 greedy: no gguf package here, float64 reference skipped"; fi ;;
    sanitize)
      # SAN_SHARDS=N: each tool over N test shards at once (the tools are CPU-bound; the GPU has room)
      run_sharded memcheck ${SAN_SHARDS:-1} timeout ${SAN_TIMEOUT:-1200} compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter='CudaKernels.*:CudaQuant.*:CudaChain.*:CudaGptqCalibKernels.*:CudaLlama.Stories*'
      run_sharded racecheck ${SAN_SHARDS:-1} timeout ${SAN_TIMEOUT:-1200} scripts/racecheck-ours.sh $B/ignis_gpu_tests --gtest_filter='CudaKernels.*:CudaQuant.*:CudaChain.*:CudaGptqCalibKernels.*:CudaLlama.Stories260KBf16GreedyMatchesCpu' ;;
    bench)
      TAIL=60 run bench_7b $B/ignis bench --synthetic llama-2-7b ;;
    tune)
      echo "fused_norm blocks_per_sm l2_256B_hint decode_tok/s" > "$LOG/tune.txt"
      for fn in ${TUNE_NORM:-0}; do for bps in ${TUNE_BPS:-4 8 16}; do for u in ${TUNE_L2:-0 1}; do
        v=$(IGNIS_GEMV_L2_256=$u IGNIS_FUSED_NORM=$fn IGNIS_GEMV_BLOCKS_PER_SM=$bps $B/ignis bench --synthetic "${SHAPE:-llama-2-7b}" --json 2>/dev/null \
            | decode_rows)
        echo "$fn $bps $u $v" | tee -a "$LOG/tune.txt"
      done; done; done ;;
    peers)
      TAIL=40 run peers python3 bench/peers.py --shape "${SHAPE:-llama-2-7b}" --ignis $B/ignis --out "$LOG" ;;
    bert|bertcheck)
      TAIL=40 run bert_tests $B/ignis_gpu_tests --gtest_filter='CudaEncoder*'
      run bert_memcheck compute-sanitizer --tool memcheck --error-exitcode 1 $B/ignis_gpu_tests --gtest_filter='CudaEncoderKernels.*:CudaEncoder.BucketReplay*'
      [ -n "${BERT_RACECHECK:-}" ] && run bert_racecheck scripts/racecheck-ours.sh $B/ignis_gpu_tests --gtest_filter='CudaEncoderKernels.*'
      [ "$stage" = bertcheck ] && continue
      TAIL=45 run peers_bert python3 bench/peers_bert.py --ignis $B/ignis --out "$LOG" ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo; echo "=== summary (stage exit seconds)"; cat "$LOG/summary.txt"
exit $status
