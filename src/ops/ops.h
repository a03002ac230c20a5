// Float32 CPU ops of the decoder other than the matrix products (those are in quant.h).
// Each works on contiguous rows; the CPU reference for the CUDA kernels is this code too.
#pragma once
#include <cstdint>
#include <vector>

#include "core/threadpool.h"
#include "models/config.h"

namespace ignis::ops {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]   (in place allowed: out == x)
void rmsnorm(const float* x, const float* w, float* out, int n, float eps);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g))
void silu_mul(const float* gate, const float* up, float* out, int64_t n);

// Rotary position embedding tables for one model: inv_freq per rotated pair, with the
// model's rope scaling (linear divides positions; llama3 rescales low frequencies).
class Rope {
 public:
  Rope() = default;
  explicit Rope(const LlamaConfig& c);
  // Rotates `n_heads` heads of `head_dim` values at position `pos` in place.
  void apply(float* x, int n_heads, int head_dim, int pos) const;
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  std::vector<float> inv_freq_;
  RopeStyle style_ = RopeStyle::kInterleaved;
  int rope_dim_ = 0;
  float pos_scale_ = 1.0f;
};

// In-place softmax of n values; returns nothing, max-subtracted for stability.
void softmax(float* x, int n);

// Causal grouped-query attention of n new queries at positions [pos, pos + n) against a
// cache holding keys/values for positions [0, pos + n):
//   q:   [n, n_heads * head_dim]        out: [n, n_heads * head_dim]
//   k,v: cache rows of kv_stride floats per position, head h reads kv head h / (n_heads / n_kv_heads)
// Work is split over (query, head) pairs on the pool; `scratch` needs n_threads * (pos + n) floats.
void attention(ThreadPool& pool, const float* q, const float* kcache, const float* vcache, float* out, int n,
               int pos, int n_heads, int n_kv_heads, int head_dim, int kv_stride, std::vector<float>& scratch);

}  // namespace ignis::ops
