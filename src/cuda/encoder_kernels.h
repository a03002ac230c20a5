// Host entry points of the encoder (BERT family) kernels. Plain C++ (only the CUDA runtime
// header), so the model, the tests and the benchmark call them without nvcc.
//
// Conventions: activations and weights are of one dtype T (F16, BF16 or F32, given as a DType),
// LayerNorm gamma/beta are float, accumulation is fp32. Matrices are row-major. A batch is
// ragged: the sequences are packed one after the other without padding, sequence b owning rows
// offsets[b] .. offsets[b + 1]. The sizes of a batch live in device memory (RaggedDev) so one
// captured CUDA graph serves every (batch, lengths) mix of up to `rows` tokens: kernels are
// launched over `rows` (the graph's bucket) and skip the rows at or past the real token count.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace ignis::cuda {

// A ragged batch in device memory.
struct RaggedDev {
  const int* counts = nullptr;   // int[3]: tokens n, sequences B, attention tiles
  const int* offsets = nullptr;  // int[B + 1], offsets[0] = 0, offsets[B] = n
  const int* tiles = nullptr;    // int[2 * tiles]: (sequence, first query row in it) of each query tile
};

// Query rows per attention tile: the host lists, for each sequence, its tiles at rows 0, 64, 128, ...
// of the sequence (longest sequences first: the kernel's blocks take tiles round-robin).
constexpr int kEncoderAttnTile = 64;

// ---- embeddings + LayerNorm (encoder_norm.cu) --------------------------------------------------
// out[r] = LayerNorm(word[ids[r]] + pos_tab[pos[r]] + type_tab[types[r]]) * gamma + beta for r < n
// (n = *n_dev, or `rows` when n_dev is null). Ids / positions / types out of range contribute zeros
// (the host validates them before).
struct EmbedLnArgs {
  DType dtype = DType::F16;
  const void* word = nullptr;      // T [vocab, hidden]
  const void* pos_tab = nullptr;   // T [max_positions, hidden]
  const void* type_tab = nullptr;  // T [type_vocab, hidden]
  const float* gamma = nullptr;
  const float* beta = nullptr;
  const int* ids = nullptr;        // device [rows]
  const int* types = nullptr;      // device [rows]
  const int* pos = nullptr;        // device [rows]
  const int* n_dev = nullptr;
  int rows = 0, hidden = 0, vocab = 0, max_positions = 0, type_vocab = 0;
  float eps = 1e-12f;
  void* out = nullptr;             // T [rows, hidden]
};
void encoder_embed_layernorm(const EmbedLnArgs& a, cudaStream_t stream);

// x[r] = LayerNorm(a[r] + x[r]) * gamma + beta for r < n (in place on x; a == nullptr: LayerNorm(x)).
// a, x: T [rows, hidden]. hidden <= 16384.
void encoder_add_layernorm(DType t, const void* a, void* x, const float* gamma, const float* beta, int rows,
                           int hidden, float eps, const int* n_dev, cudaStream_t stream);

// x[r] = LayerNorm(x[r] + bias + sum_s parts[s][r]) * gamma + beta for r < n: the residual add + LayerNorm
// after a split-K product (EncoderGemm::matmul_split), its reduction and bias folded in (one kernel
// fewer). parts: float [nparts][rows, hidden], bias: T [hidden], x: T [rows, hidden].
void encoder_add_parts_layernorm(DType t, const float* parts, int nparts, const void* bias, void* x,
                                 const float* gamma, const float* beta, int rows, int hidden, float eps,
                                 const int* n_dev, cudaStream_t stream);

// ---- bias + activation (encoder_norm.cu): fallback and exact GELU after a cuBLASLt product ------
enum class EncAct : uint8_t { kNone, kGeluErf, kGeluTanh, kTanh };
// y[r, c] = act(y[r, c] + bias[c]) for r < n (bias may be null). y: T [rows, cols], bias: T [cols].
void encoder_bias_act(DType t, void* y, const void* bias, int rows, int cols, EncAct act, const int* n_dev,
                      cudaStream_t stream);

// ---- attention over ragged packed sequences (encoder_attention.cu) ----------------------------
// out[r, h, :] = softmax(q[r, h] . K_b^T * scale) V_b over all the keys of r's sequence b (no mask
// other than the sequence boundaries: non-causal, no padding inside a batch).
enum class EncAttnImpl : uint8_t { kAuto, kGeneric, kFlash };
struct EncAttnArgs {
  DType dtype = DType::F16;
  const void* qkv = nullptr;  // T [rows, 3 * nh * hd]: q | k | v, head h at columns h * hd of each part
  void* out = nullptr;        // T [rows, nh * hd]
  RaggedDev batch;
  int rows = 0;               // the bucket: upper bound of tokens (and of tiles)
  int nh = 0, hd = 0;
  float scale = 1.f;
  EncAttnImpl impl = EncAttnImpl::kAuto;
  int warps = 0;              // flash kernel: warps a block (2 or 4; 0 = chosen by the bucket size)
};
// Tensor-core flash kernel: F16 / BF16, head size 32, 64 or 128. Else the generic kernel (any dtype,
// head size <= 256, one warp per query row: slow, for fp32 parity and odd shapes).
bool encoder_flash_supported(DType t, int hd);
void encoder_attention(const EncAttnArgs& a, cudaStream_t stream);

// ---- heads (encoder_head.cu): run eagerly after the layers, with the real batch size B ----------
// out[b] = mean of hidden rows of sequence b (mean) or its first row (cls), then divided by its L2
// norm (max(norm, 1e-12)) if normalize. hidden: T [n, H]; out: float [B, H].
void encoder_pool(DType t, const void* hidden, const int* offsets, int B, int H, bool mean, bool normalize,
                  float* out, cudaStream_t stream);
// out[b, j] = act(sum_k x[row_b, k] W[j, k] + bias[j]) with row_b = offsets[b] (first token of
// sequence b) if offsets is set, else b. x: x_dtype (T or F32) [*, K]; W: T [N, K]; bias: T [N] (or
// null); out: float [B, N]. act: kNone or kTanh. One warp per output.
void encoder_head_linear(DType t, DType x_dtype, const void* x, const int* offsets, int B, const void* W,
                         const void* bias, int N, int K, EncAct act, float* out, cudaStream_t stream);

}  // namespace ignis::cuda
