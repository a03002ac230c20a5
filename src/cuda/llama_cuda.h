// The CUDA backend of the Llama-family decoder (see models/llama.h for the model).
//
// Weights live on the GPU in the compute dtype (bf16, or fp32 for parity tests), laid out for the
// kernels: q/k/v fused into one [q; k; v] matrix, gate/up fused into one matrix interleaved in
// blocks of 8 rows (so the decode GEMV's epilogue produces silu(gate) * up directly), the hidden
// size padded to a multiple of 8. The KV cache is allocated once for `max_batch` sequences
// ("slots") of `context` positions.
//
// Decode (one token for each of B <= max_batch sequences at the same position) is captured once
// per batch size as a CUDA graph and replayed: token ids and positions live in device memory and
// are copied in before each replay, the attention reads the KV length from there. Prefill runs
// eagerly: cuBLASLt GEMMs, tensor-core flash attention, chunks of `prefill_chunk` tokens.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "models/llama.h"

namespace ignis {

struct CudaOptions {
  DType dtype = DType::BF16;  // BF16 (fast) or F32 (parity tests: plain fp32 kernels, fp32 cuBLASLt)
  int context = 0;            // KV positions per sequence; 0: the model's, capped at 4096
  int max_batch = 1;          // sequences held in the KV cache / decoded together (1..8)
  int prefill_chunk = 512;    // tokens per prefill pass (bounds the activation buffers)
  int device = 0;
  bool cuda_graphs = true;    // false: decode runs eagerly (debugging)
  // Weight-only quantization of the linear layers (q/k/v, o, gate/up, down and the output
  // head), decoded by the fused dequantize-and-multiply GEMVs of gemv_quant.cu: "" (bf16),
  // "int8" (per output row) or "int4" (group-wise, symmetric, quant_group values per scale), or a
  // GGUF block type ("q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k": random blocks).
  // Synthetic models only (random packed weights on the GPU); real models are quantized at load
  // by quant::open_model_for_inference (`--quant`: Q8_0 / Q4_0 blocks, run as GGUF blocks below).
  std::string quant;
  int quant_group = 128;
  // GGUF block weights (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K) of the linear layers stay in their
  // blocks on the GPU (decode: fused dequantize-GEMVs of gemv_quant.cu; prefill: dequantized bf16
  // tiles + cuBLASLt) when dtype is bf16. true, or the environment variable IGNIS_GPU_DEQUANT=1:
  // dequantize them to bf16 at load instead (the previous behaviour, for comparisons).
  bool gguf_dequant = false;
  // Decode: RoPE and the KV-cache write inside the attention kernel (AttnArgs::rope_qkv), one
  // launch per layer less (H200, Llama-2-7B, 2026-12-02: b1 252.9 -> 255.2 tok/s, b8 1,641 ->
  // 1,656). 1 on, 0 the separate rope_kv kernel; -1: IGNIS_FUSED_ROPE (0 / 1), else on. As for
  // fused_norm, an explicit value wins over the environment (tests compare fixed variants).
  int fused_rope = -1;
  // Decode: the RMSNorm before the q/k/v, gate/up and output products fused into those GEMVs
  // (see FuseNorm in llama_cuda.cpp): 0 off, 1 every batch size (each block sums x^2), 2 sums of
  // squares from the residual GEMVs. -1: IGNIS_FUSED_NORM, else 0.
  int fused_norm = -1;
  // Decode at batch 1 (bf16 weights, no quantized layer): each layer's o, gate/up and down
  // products and the next layer's q/k/v (or the output head), with their RMSNorms, run as one
  // persistent kernel (cuda::decode_chain): 2 launches a layer instead of 7. 1 on (weights through
  // registers), 2 on with the bulk-copy ring engine (ChainArgs::ring, sm_90; the register engine
  // where a shape does not fit a ring stage), 0 off, -1: IGNIS_DECODE_CHAIN (0 / 1 / ring), else the
  // default (see llama_cuda.cpp).
  int decode_chain = -1;
  // The ring engine's dynamic tail (ChainArgs::ring_tail, 0 .. 0.5); < 0: IGNIS_RING_TAIL, else 0.
  float ring_tail = -1.f;
  // Decode at batch 1 (bf16 / f32 weights on the CUDA-core GEMV, int8 / int4 on kernels that fold
  // it: cuda::quant_fold_ok; GGUF blocks other than Q4_0 / Q4_K keep the kernel): the RMSNorms
  // folded into the products around them (cuda::GemvArgs::rms_ss / next_ss): each residual GEMV
  // writes x * w_next and sums of x^2, the next GEMV divides by the rms at its end; 64 RMSNorm launches
  // less per 7B step. 1 on, 0 off, -1: IGNIS_NORM_FOLD (0 / 1), else on.
  int norm_fold = -1;
  // Decode attention kernel: 1 the warp kernel (cuda::AttnImpl::kWarp: K/V straight into
  // registers, where cuda::attn_warp_supported), 0 the tile kernel (kGeneric); -1:
  // IGNIS_ATTN_DECODE (warp / tile), else warp.
  int warp_attention = -1;
};

// GPU sampling. temperature <= 0: greedy. top_k <= 0 / top_p >= 1: that filter is off.
struct SamplingParams {
  float temperature = 0.f;
  int top_k = 0;
  float top_p = 1.f;
  uint64_t seed = 0;
};

class CudaLlama : public LlamaModel {
 public:
  // LlamaModel::forward / forward_all use sequence slot 0.

  // Processes tokens[0..n) of the sequence in cache slot `slot` at positions [pos, pos + n) and
  // returns the host logits of the last token (valid until the next call).
  virtual const float* forward_slot(int slot, const int32_t* tokens, int n, int pos) = 0;
  // Same, then samples the next token on the GPU; only the id is copied back (time to first token).
  virtual int32_t prefill_sample(int slot, const int32_t* tokens, int n, int pos, const SamplingParams& sp) = 0;
  // One decode step of slot 0 at position pos; returns the sampled token id (GPU sampling).
  virtual int32_t decode_sample(int32_t token, int pos, const SamplingParams& sp) = 0;
  // One decode step of slots 0..B-1, token b of sequence b, all at position pos (B <= max_batch).
  // Host logits [B, vocab], valid until the next call.
  virtual const float* decode_batch(const int32_t* tokens, int B, int pos) = 0;
  // Same, sampling on the GPU: out[b] = next token of sequence b.
  virtual void decode_batch_sample(const int32_t* tokens, int B, int pos, const SamplingParams& sp,
                                   int32_t* out) = 0;

  // Seconds from "weights in host memory" to "ready to decode": upload/convert (or init) the
  // weights, allocate the cache, create cuBLASLt, capture the batch-1 decode graphs, one warm step.
  virtual double warmup_seconds() const = 0;
  virtual DType dtype() const = 0;
  virtual int max_batch() const = 0;
  // Bytes of all weights on the GPU, and of those read by one decode step (everything but the
  // embedding table, unless it is tied to the output).
  virtual size_t weight_bytes() const = 0;
  virtual size_t weight_bytes_per_step() const = 0;
  virtual size_t kv_cache_bytes() const = 0;
  // Linear weight matrices (GGUF tensors: q, k, v, o, gate, up, down per layer, the output head)
  // kept quantized on the GPU; 0 when every product runs on bf16 / f32 weights.
  virtual int quantized_linear_weights() const = 0;
  // Bytes of K and V read by one decode step of one sequence at position pos.
  virtual size_t kv_bytes_per_step(int pos) const = 0;
  virtual void synchronize() = 0;
  // Runs one decode step of B sequences at position pos eagerly with an event after every kernel
  // and returns milliseconds per kernel category ("gemv", "attention", ...) in first-seen order,
  // then "total (kernels one by one)". Diagnostics for the benchmark; overwrites KV at pos.
  virtual std::vector<std::pair<std::string, double>> profile_decode_step(int B, int pos) = 0;
};

// Uploads the weights of `src`: F32/F16/BF16 converted on the GPU; linear weights in the GGUF block
// types of gemv_quant.cu kept as blocks (see CudaOptions::gguf_dequant; q/k/v of different types run
// as three products, gate/up of different types are dequantized to bf16 with a note on stderr);
// other quantized tensors (embedding included) dequantized on the host. Throws ignis::Error on
// missing / mis-shaped tensors or no GPU.
std::unique_ptr<CudaLlama> make_cuda_llama(const ModelSource& src, const CudaOptions& opt = {});

// A model of a known shape with random weights generated on the GPU (no host copy), for
// benchmarks: "llama-2-7b", "llama-3-8b", "llama-2-13b", "smollm2-135m".
std::unique_ptr<CudaLlama> make_synthetic_cuda_llama(const std::string& shape, const CudaOptions& opt = {},
                                                     uint64_t seed = 1);
// The config of a synthetic shape (throws for unknown names, listing the known ones).
LlamaConfig synthetic_llama_config(const std::string& shape);

}  // namespace ignis
