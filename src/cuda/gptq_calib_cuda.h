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

}  // namespace ignis::cuda
