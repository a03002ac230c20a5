// Prefill GEMM through cuBLASLt: y[M, N] = x[M, K] W[N, K]^T (+ beta y), row-major, fp32 compute.
// bf16 x/W with bf16 or fp32 y (fp32 y with beta = 1 adds into the fp32 residual stream in place);
// fp32 everything for the fp32 mode (pure fp32, no TF32). One handle and one 32 MiB workspace per
// object; the algorithm of each shape is chosen once by cuBLASLt's heuristic and cached.
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>

#include "core/dtype.h"

namespace ignis::cuda {

class LtGemm {
 public:
  explicit LtGemm(size_t workspace_bytes = size_t(32) << 20);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // ab: dtype of x and W (F32 or BF16); cd: dtype of y (F32 or BF16). ldy: row stride of y (0: N).
  void matmul(DType ab, const void* W, const void* x, DType cd, void* y, int M, int N, int K, float beta,
              cudaStream_t stream, int ldy = 0);

 private:
  struct Plan;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ignis::cuda
