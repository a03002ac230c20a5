// CPU references of the CUDA kernels (plain C++, double accumulation), for the GPU tests, plus
// host-side helpers shared with the model (RoPE frequency table). Inputs are floats that the
// tests have already rounded to the kernel's dtype, so a reference sees exactly the kernel's inputs.
#pragma once
#include <cstdint>
#include <vector>

#include "models/config.h"

namespace ignis::cuda::ref {

// inv_freq[j] = theta^(-2j / rope_dim), j < rope_dim / 2, with linear or llama3 scaling applied.
std::vector<float> rope_inv_freq(const LlamaConfig& c);

// y[b, n] = sum_k x[b, k] W[n, k]
void linear(const float* W, const float* x, int B, int N, int K, float* y);
// out[i, j] = silu(gu[i, gate(j)]) * gu[i, up(j)] in the 8-row-block interleaved layout, gu [n, 2 hp]
void swiglu(const float* gu, float* out, int n, int hp);
// x += residual (if non-null); h = x / sqrt(mean(x^2) + eps) * w
void rmsnorm(float* x, const float* residual, const float* w, float* h, int n, int dim, float eps);
// Same contract as cuda::rope_kv on host arrays (caches [slots][nkv][ctx][hd]).
void rope_kv(const float* qkv, const float* bias, float* q_out, float* k_cache, float* v_cache, const int* pos, int n,
             int q_per_seq, int slot0, int nh, int nkv, int hd, int ctx, int rope_dim, RopeStyle style,
             const float* inv_freq);
// Same contract as cuda::attention (causal over the cache) on host arrays.
void attention(const float* q, const float* k_cache, const float* v_cache, float* out, const int* pos, int n,
               int q_per_seq, int slot0, int nh, int nkv, int hd, int ctx, float scale);
// Sampling as cuda::sample describes, given the uniform u: returns the token and fills `kept`
// with the tokens the filters keep (sorted ascending).
int sample(const float* logits, int vocab, float temperature, int top_k, float top_p, float u, std::vector<int>* kept);

}  // namespace ignis::cuda::ref
