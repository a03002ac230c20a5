// cuBLASLt wrapper (see gemm.h). The row-major product y = x W^T is the column-major product
// y^T[N, M] = W[N, K] x^T, i.e. cuBLASLt's "TN" case: A = W stored K x N (ld K) transposed,
// B = x stored K x M (ld K), C = D = y stored N x M (ld ldy) -- the layout cuBLASLt is fastest at.
#include "cuda/gemm.h"

#include <algorithm>
#include <cstdint>

#include "cuda/common.h"

namespace ignis::cuda {

struct LtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

struct LtGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer ws;
  std::map<std::tuple<int, int, int, int, int, int, bool, uint32_t>, std::unique_ptr<Plan>> plans;
};

LtGemm::LtGemm(size_t workspace_bytes) : impl_(new Impl) {
  CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  impl_->ws.alloc(workspace_bytes);
}

LtGemm::~LtGemm() {
  impl_->plans.clear();
  if (impl_->handle) cublasLtDestroy(impl_->handle);
}

static cudaDataType_t cuda_type(DType t) {
  if (t == DType::F32) return CUDA_R_32F;
  if (t == DType::BF16) return CUDA_R_16BF;
  fail("LtGemm: unsupported dtype ", dtype_name(t));
}

void LtGemm::matmul(DType ab, const void* W, const void* x, DType cd, void* y, int M, int N, int K, float beta,
                    cudaStream_t stream, int ldy) {
  if (M <= 0 || N <= 0) return;
  IGNIS_CHECK(K > 0, "LtGemm: K must be positive");
  IGNIS_CHECK(!(ab == DType::F32 && cd == DType::BF16), "LtGemm: f32 inputs need an f32 output");
  if (ldy == 0) ldy = N;
  // cuBLASLt's heuristic assumes 256-byte aligned matrices unless told otherwise; y may be a column
  // offset into a wider matrix (q, k, v of separate weights side by side), so its alignment is part
  // of the plan.
  const uint32_t y_align = std::min<uint32_t>(256, uint32_t(reinterpret_cast<uintptr_t>(y) & -reinterpret_cast<uintptr_t>(y)));
  const auto key = std::make_tuple(int(ab), int(cd), M, N, K, ldy, beta != 0.f, y_align);
  auto& slot = impl_->plans[key];
  if (!slot) {
    auto plan = std::make_unique<Plan>();
    const cudaDataType_t tab = cuda_type(ab), tcd = cuda_type(cd);
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, tab, K, N, K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, tab, K, M, K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, tcd, N, M, ldy));
    cublasLtMatmulPreference_t pref = nullptr;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t wsz = impl_->ws.size();
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz,
                                                      sizeof(wsz)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &y_align,
                                                      sizeof(y_align)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &y_align,
                                                      sizeof(y_align)));
    cublasLtMatmulHeuristicResult_t res{};
    int count = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(impl_->handle, plan->desc, plan->a, plan->b, plan->c,
                                                             plan->c, pref, 1, &res, &count);
    cublasLtMatmulPreferenceDestroy(pref);
    CUBLAS_CHECK(st);
    IGNIS_CHECK(count > 0, "cuBLASLt has no algorithm for ", M, "x", N, "x", K, " (", dtype_name(ab), " -> ",
                dtype_name(cd), ")");
    plan->algo = res.algo;
    slot = std::move(plan);
  }
  const float alpha = 1.f;
  CUBLAS_CHECK(cublasLtMatmul(impl_->handle, slot->desc, &alpha, W, slot->a, x, slot->b, &beta, y, slot->c, y, slot->c,
                              &slot->algo, impl_->ws.get(), impl_->ws.size(), stream));
}

}  // namespace ignis::cuda
