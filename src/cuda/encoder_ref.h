// CPU references of the encoder kernels (encoder_kernels.h, encoder_gemm.h): plain C++ with double
// accumulation, on floats that the tests have already rounded to the kernel's dtype. The GPU tests
// compare every kernel, and the whole encoder (encoder_forward), against these.
#pragma once
#include <cstdint>
#include <vector>

namespace ignis::cuda::encref {

enum class Act { kNone, kGeluErf, kGeluTanh, kTanh };
float act(Act a, float x);

// out[r] = LayerNorm(word[ids[r]] + pos_tab[pos[r]] + type_tab[types[r]]) * gamma + beta, r < n.
void embed_layernorm(const float* word, const float* pos_tab, const float* type_tab, const float* gamma,
                     const float* beta, const int* ids, const int* types, const int* pos, int n, int hidden, float eps,
                     float* out);
// x[r] = LayerNorm(a[r] + x[r]) * gamma + beta (a may be null), r < n, in place.
void add_layernorm(const float* a, float* x, const float* gamma, const float* beta, int n, int hidden, float eps);
// y[m, j] = act(sum_k x[m, k] W[j, k] + bias[j]) (bias may be null).
void linear(const float* x, const float* W, const float* bias, int M, int N, int K, Act a, float* y);
// Non-causal attention within each sequence of a ragged batch: qkv [n, 3 nh hd] (q | k | v),
// out [n, nh hd]; sequence b is rows offsets[b] .. offsets[b + 1].
void attention(const float* qkv, const int* offsets, int B, int nh, int hd, float scale, float* out);
// out[b] = mean (or first row) of the rows of sequence b, L2-normalised if normalize; out [B, H].
void pool(const float* hidden, const int* offsets, int B, int H, bool mean, bool normalize, float* out);

// The whole encoder on the CPU from these pieces (BERT post-LN layers), for the model test.
struct EncoderRefLayer {
  std::vector<float> wqkv, bqkv;  // [3H, H], [3H]: query rows, then key rows, then value rows
  std::vector<float> wo, bo;      // [H, H], [H]
  std::vector<float> ln1_g, ln1_b;
  std::vector<float> w1, b1;      // [I, H], [I]
  std::vector<float> w2, b2;      // [H, I], [H]
  std::vector<float> ln2_g, ln2_b;
};
struct EncoderRefModel {
  int hidden = 0, heads = 0, intermediate = 0;
  float eps = 1e-12f;
  Act gelu = Act::kGeluErf;
  std::vector<float> word, pos_tab, type_tab, emb_g, emb_b;
  std::vector<EncoderRefLayer> layers;
};
// Last hidden states [n, H] of a ragged batch (positions and types given per token).
std::vector<float> encoder_forward(const EncoderRefModel& m, const std::vector<int>& ids,
                                   const std::vector<int>& types, const std::vector<int>& pos,
                                   const std::vector<int>& offsets);

}  // namespace ignis::cuda::encref
