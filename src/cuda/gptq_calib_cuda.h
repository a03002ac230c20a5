// GPTQ calibration on the GPU: the counterpart of quant::gptq_quantize_model (src/quant/calibrate.cpp)
// in float32, with the same algorithm and results up to float rounding. The calibration tokens are cut
// into the same samples (consecutive windows of seq_len tokens; a last window of one token is dropped),
// the hidden states of all samples stay on the GPU (fp32, tokens x dim floats), and each Llama block
// runs layer by layer in "true sequential" order:
//
//   h = rmsnorm(x) * attn_norm                  -> H_qkv (GptqHessianCuda); quantize q, k, v
//   a = attention(rope(h Wq + bq), rope(h Wk + bk), h Wv + bv)   (quantized q/k/v) -> H_o; quantize o
//   x += a Wo;  h2 = rmsnorm(x) * ffn_norm      -> H_gu; quantize gate, up
//   m = silu(h2 Wg) * (h2 Wu)                   -> H_down; quantize down;  x += m Wd
//
// The products are cuBLAS SGEMMs in plain fp32 (CUBLAS_DEFAULT_MATH: no TF32), over chunks of whole
// samples (up to 4096 rows, or one sample when seq_len is longer); RoPE is the half-split (HF) one with
// ops::Rope's frequency table (so linear and llama3 rope scaling and a partial rope_dim as on the CPU);
// attention is causal and grouped-query within each sample. Each layer's solve is GptqSolverCuda
// (gptq_cuda.h) on a host copy of the source weight; the dequantized result is uploaded and used for
// the rest of the forward, and layers that are not quantizable (quant::quantizable) stay float, as on
// the CPU. The progress callback is called at the same 4 points per layer, with the same words.
//
// Device memory: 2 x tokens x max(dim, n_heads head_dim) floats (hidden states, attention outputs),
// the intermediates of one chunk (~4096 x (2 dim + q + 2 kv + 2 hidden) floats), one block's float
// weights, one Hessian (K^2 doubles + floats) and the solver's per-layer buffers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/model_source.h"
#include "quant/formats.h"
#include "quant/model_quant.h"
#include "quant/quantize.h"

namespace ignis::cuda {

// GPTQ of every (quantizable) linear layer of src (in HF convention: quant::to_hf_convention), the
// whole calibration pass on the current GPU. Same checks and error messages as the CPU version
// (checked before anything touches the GPU), plus head_dim <= 256 and an even rope_dim <= head_dim.
std::map<std::string, quant::QuantLinear> gptq_quantize_model_cuda(const ModelSource& src,
                                                                   const std::vector<int32_t>& tokens, int seq_len,
                                                                   const quant::QuantSpec& spec,
                                                                   const quant::GptqOptions& gopt,
                                                                   const quant::Progress& progress);

// The small kernels of the calibration forward above (gptq_calib_cuda.cu), one host launcher each;
// the forward launches them only through these, and tests/gpu/test_cuda_gptq_calib_kernels.cpp
// compares each with a CPU reference. All tensors are row-major fp32 in device memory, one row per
// calibration token; pos[r] is row r's position within its sample, so its sample starts at row
// r - pos[r] (samples concatenated, no sample cut by the rows given). Each call is queued on
// `stream` (asynchronous) and checks its launch (ignis::Error); rows / n of 0 launch nothing.
namespace gptq_calib_kernels {

inline constexpr int kMaxHeadDim = 256;  // attention(): head_dim values per warp in registers

// out[r, :] = x[r, :] * float(1 / sqrt(mean(x[r, :]^2) + eps)) * w for x, out [rows, dim] (the sum of
// squares in double, the rest in float: ops::rmsnorm). out must not overlap x.
void rmsnorm_rows(const float* x, const float* w, float* out, int64_t rows, int64_t dim, float eps,
                  cudaStream_t stream);
// y[r, n] += b[n] for y [rows, N].
void add_bias(float* y, const float* b, int64_t rows, int64_t N, cudaStream_t stream);
// Half-split (HF) RoPE in place on x [rows, n_heads * head_dim]: for each head and pair i < half,
// angle = (float(pos[r]) * pos_scale) * inv_freq[i] in float, (v[i], v[i + half]) rotated by it;
// values from 2 * half on are left alone (partial rope_dim = 2 * half <= head_dim).
void rope_half_split(float* x, int64_t rows, int n_heads, int head_dim, int half, const int32_t* pos,
                     const float* inv_freq, float pos_scale, cudaStream_t stream);
// Causal grouped-query attention within each sample: q, out [rows, n_heads * head_dim], k, v
// [rows, n_kv_heads * head_dim]; row r, head h attends to rows r - pos[r] .. r of kv head
// h / (n_heads / n_kv_heads) with softmax(q.k * scale) (fp32 online softmax). head_dim <= kMaxHeadDim,
// n_heads a multiple of n_kv_heads (else ignis::Error). out must not overlap q, k or v.
void attention(const float* q, const float* k, const float* v, float* out, const int32_t* pos, int64_t rows,
               int n_heads, int n_kv_heads, int head_dim, float scale, cudaStream_t stream);
// out[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n (ops::silu_mul); out may be g.
void silu_mul(const float* g, const float* u, float* out, int64_t n, cudaStream_t stream);
// x[i] += y[i] for i < n.
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);

}  // namespace gptq_calib_kernels

}  // namespace ignis::cuda
