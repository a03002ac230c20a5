// A Llama-family decoder (Llama 1/2/3, Mistral, SmolLM2, Qwen2, llama2.c models):
//
//   x = token_embd[tokens]
//   for each layer:
//     h = rmsnorm(x) * attn_norm
//     q, k, v = h Wq, h Wk, h Wv           (+ bias for qwen2)
//     q, k = rope(q, k, pos)                (interleaved or half-split pairs)
//     append k, v to the KV cache
//     x += softmax(q k^T / sqrt(d), causal) v  Wo      (grouped-query: heads share KV heads)
//     h = rmsnorm(x) * ffn_norm
//     x += (silu(h Wgate) * (h Wup)) Wdown
//   logits = rmsnorm(x) * output_norm  Woutput   (Woutput = token_embd when tied)
//
// One interface, several backends (CPU now, CUDA in src/cuda/). The generation loop in
// src/runtime/ talks only to this interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/config.h"

namespace ignis {

struct ModelSource;

class LlamaModel {
 public:
  virtual ~LlamaModel() = default;
  virtual const LlamaConfig& config() const = 0;
  // Largest number of positions the KV cache holds.
  virtual int context_size() const = 0;
  // Backend name for messages: "cpu (2 threads, avx2)", "cuda (NVIDIA H100 ...)".
  virtual std::string backend() const = 0;

  // Processes tokens[0..n) at positions [pos, pos + n) of the single sequence, writing their
  // keys and values into the cache (positions >= pos are overwritten), and returns the
  // logits of the last token (vocab_size floats, valid until the next call).
  // Throws ignis::Error if pos + n exceeds context_size().
  virtual const float* forward(const int32_t* tokens, int n, int pos) = 0;
  // Logits of every one of the n tokens (n x vocab, row-major) for tests and perplexity.
  virtual std::vector<float> forward_all(const int32_t* tokens, int n, int pos) = 0;
};

struct CpuOptions {
  int threads = 0;        // 0: all available cores
  int context = 0;        // 0: the model's context length, capped at 4096
  // Products with block-quantized weights in f32 instead of on 8-bit activations (slower; see
  // quant::Activations). --cpu-activations f32.
  bool f32_activations = false;
};

// The CPU backend: weights used in place (quantized blocks stay quantized), f32 activations.
std::unique_ptr<LlamaModel> make_cpu_llama(const ModelSource& src, const CpuOptions& opt = {});

}  // namespace ignis
