// cuBLASLt GEMM with the bias / bias + GELU epilogues, for the encoder (BERT family):
//   y[M, N] = epilogue(x[M, K] W[N, K]^T + bias[N])       row-major, fp32 accumulation
// x, W, bias and y all of one dtype: F16, BF16, or F32 (pure fp32, no TF32: the parity mode).
// kBiasGelu is cuBLASLt's GELU, the tanh approximation (gelu_new / gelu_pytorch_tanh); the exact
// erf GELU of BERT is kBias followed by encoder_bias_act(kGeluErf) (see bert_cuda.cpp).
// One handle and one workspace per object; each shape's algorithm is chosen once by cuBLASLt's
// heuristic and cached (so a CUDA graph capture after one eager call makes no heuristic query).
// If cuBLASLt offers no algorithm with the epilogue, the plain product runs and the bias /
// activation follow as a separate kernel (fused() tells which).
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>

#include "core/dtype.h"

namespace ignis::cuda {

enum class GemmEpilogue : uint8_t { kNone, kBias, kBiasGelu };

class EncoderGemm {
 public:
  explicit EncoderGemm(size_t workspace_bytes = size_t(32) << 20);
  ~EncoderGemm();
  EncoderGemm(const EncoderGemm&) = delete;
  EncoderGemm& operator=(const EncoderGemm&) = delete;

  // Pointers 256-byte aligned (cuBLASLt's default assumption). Returns the number of kernels it
  // enqueued by our count (1, or 2 with the fallback bias kernel).
  int matmul(DType t, const void* W, const void* x, void* y, int M, int N, int K, const void* bias, GemmEpilogue epi,
             cudaStream_t stream);
  // Split-K product into fp32 partial sums, no reduction kernel: parts[s][M][N] = x[:, ks] W[:, ks]^T
  // over the k slice ks = [s K / splits, (s + 1) K / splits), s < splits, as one strided-batched cuBLASLt
  // call. The consumer adds the slices up (encoder_add_parts_layernorm folds them, and the bias, into the
  // residual add + LayerNorm). F16 / BF16; K a multiple of 8 splits (16-byte aligned slices).
  // Returns the number of kernels enqueued (1).
  int matmul_split(DType t, const void* W, const void* x, float* parts, int M, int N, int K, int splits,
                   cudaStream_t stream);
  // Whether (t, M, N, K, epi) runs with the epilogue inside cuBLASLt (after a matmul of that shape).
  bool fused(DType t, int M, int N, int K, GemmEpilogue epi) const;

 private:
  struct Plan;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ignis::cuda
