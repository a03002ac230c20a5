// cuBLASLt GEMM with epilogues (see encoder_gemm.h). As in gemm.cu, the row-major y = x W^T is the
// column-major y^T[N, M] = W[N, K] x^T: A = W (K x N, ld K) transposed, B = x (K x M, ld K), D = y
// (N x M, ld N). The bias is a vector over D's rows, i.e. over our N output features.
#include "cuda/encoder_gemm.h"

#include <algorithm>
#include <cstdlib>

#include "cuda/common.h"
#include "cuda/encoder_kernels.h"

namespace ignis::cuda {

struct EncoderGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fused = true;  // false: plain product, bias/activation by encoder_bias_act
  void destroy() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
    a = b = c = nullptr;
    desc = nullptr;
  }
  ~Plan() { destroy(); }
};

struct EncoderGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer ws;
  std::map<std::tuple<int, int, int, int, int>, std::unique_ptr<Plan>> plans;
};

EncoderGemm::EncoderGemm(size_t workspace_bytes) : impl_(new Impl) {
  CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  impl_->ws.alloc(workspace_bytes);
}

EncoderGemm::~EncoderGemm() {
  impl_->plans.clear();
  if (impl_->handle) cublasLtDestroy(impl_->handle);
}

namespace {

cudaDataType_t lt_type(DType t) {
  if (t == DType::F32) return CUDA_R_32F;
  if (t == DType::F16) return CUDA_R_16F;
  if (t == DType::BF16) return CUDA_R_16BF;
  fail("EncoderGemm: unsupported dtype ", dtype_name(t));
}

cublasLtEpilogue_t lt_epilogue(GemmEpilogue e) {
  switch (e) {
    case GemmEpilogue::kBias: return CUBLASLT_EPILOGUE_BIAS;
    case GemmEpilogue::kBiasGelu: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case GemmEpilogue::kNone: break;
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// Which of the heuristic's algorithms to take (its first, the one it ranks best, by default):
// IGNIS_ENC_GEMM_ALGO=k takes the k-th (clamped to those offered), a knob for measurements. Timing
// the first 8 candidates on the first call of each shape and keeping the fastest was measured and
// removed (H200, 2026-12-03, BERT-base fp16): 32x256 -4%, 8x256 and 1x256 +2-5%, the rest within
// noise, and the first call of a new shape took 60-127 ms instead of 10-16 (each candidate's kernel
// is loaded on its first use), over the 50 ms budget for a new shape.
constexpr int kMaxAlgos = 8;
int algo_choice() {
  static const int k = [] {
    const char* e = std::getenv("IGNIS_ENC_GEMM_ALGO");
    return e ? std::max(0, std::min(kMaxAlgos - 1, std::atoi(e))) : 0;
  }();
  return k;
}

// A strided batch of `count` matrices `stride` elements apart in one layout.
void set_batch(cublasLtMatrixLayout_t l, int count, int64_t stride) {
  const int32_t n = count;
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &n, sizeof(n)));
  CUBLAS_CHECK(
      cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

// Builds the descriptors of one shape with epilogue `epi` and asks the heuristic for an algorithm;
// false when it has none. splits >= 1 (epilogue kNone): the split-K form of matmul_split, a batch of
// `splits` products over consecutive k slices (A and B slices K / splits elements apart in their rows,
// same leading dimension K) into fp32 outputs M N elements apart.
bool make_plan(cublasLtHandle_t handle, size_t ws_bytes, DType t, int M, int N, int K, GemmEpilogue epi,
               cublasLtMatmulDesc_t* desc, cublasLtMatrixLayout_t* la, cublasLtMatrixLayout_t* lb,
               cublasLtMatrixLayout_t* lc, cublasLtMatmulAlgo_t* algo, int splits = 0) {
  const cudaDataType_t ty = lt_type(t);
  CUBLAS_CHECK(cublasLtMatmulDescCreate(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof(opT)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof(opN)));
  if (epi != GemmEpilogue::kNone) {
    const cublasLtEpilogue_t e = lt_epilogue(epi);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
    const int32_t bias_type = int32_t(ty);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                sizeof(bias_type)));
  }
  const int ks = splits >= 1 ? K / splits : K;  // rows of each k slice (the whole K when not split)
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(la, ty, ks, N, K));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lb, ty, ks, M, K));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lc, splits >= 1 ? CUDA_R_32F : ty, N, M, N));
  if (splits >= 1) set_batch(*la, splits, ks), set_batch(*lb, splits, ks), set_batch(*lc, splits, int64_t(M) * N);
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                    sizeof(ws_bytes)));
  cublasLtMatmulHeuristicResult_t res[kMaxAlgos] = {};
  int count = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle, *desc, *la, *lb, *lc, *lc, pref, kMaxAlgos, res, &count);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || count == 0) return false;
  *algo = res[std::min(algo_choice(), count - 1)].algo;
  return true;
}

}  // namespace

int EncoderGemm::matmul(DType t, const void* W, const void* x, void* y, int M, int N, int K, const void* bias,
                        GemmEpilogue epi, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return 0;
  IGNIS_CHECK(K > 0, "EncoderGemm: K must be positive");
  IGNIS_CHECK(epi == GemmEpilogue::kNone || bias, "EncoderGemm: the epilogue needs a bias");
  const auto key = std::make_tuple(int(t), M, N, K, int(epi));
  auto& slot = impl_->plans[key];
  if (!slot) {
    auto plan = std::make_unique<Plan>();
    if (!make_plan(impl_->handle, impl_->ws.size(), t, M, N, K, epi, &plan->desc, &plan->a, &plan->b, &plan->c,
                   &plan->algo)) {
      IGNIS_CHECK(epi != GemmEpilogue::kNone, "cuBLASLt has no algorithm for ", M, "x", N, "x", K, " (",
                  dtype_name(t), ")");
      plan->destroy();
      plan->fused = false;
      IGNIS_CHECK(make_plan(impl_->handle, impl_->ws.size(), t, M, N, K, GemmEpilogue::kNone, &plan->desc, &plan->a,
                            &plan->b, &plan->c, &plan->algo),
                  "cuBLASLt has no algorithm for ", M, "x", N, "x", K, " (", dtype_name(t), ")");
    }
    slot = std::move(plan);
  }
  Plan& p = *slot;
  if (p.fused && epi != GemmEpilogue::kNone)
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(impl_->handle, p.desc, &alpha, W, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                              impl_->ws.get(), impl_->ws.size(), stream));
  if (p.fused || epi == GemmEpilogue::kNone) return 1;
  encoder_bias_act(t, y, bias, M, N, epi == GemmEpilogue::kBiasGelu ? EncAct::kGeluTanh : EncAct::kNone, nullptr,
                   stream);
  return 2;
}

int EncoderGemm::matmul_split(DType t, const void* W, const void* x, float* parts, int M, int N, int K, int splits,
                              cudaStream_t stream) {
  if (M <= 0 || N <= 0) return 0;
  IGNIS_CHECK(t == DType::F16 || t == DType::BF16, "EncoderGemm::matmul_split: f16 or bf16 only, got ", dtype_name(t));
  IGNIS_CHECK(splits >= 1 && K > 0 && K % (8 * splits) == 0, "EncoderGemm::matmul_split: K ", K,
              " is not a multiple of 8 x ", splits, " splits");
  // epilogue slot 16 + splits: never one of GemmEpilogue's values
  const auto key = std::make_tuple(int(t), M, N, K, 16 + splits);
  auto& slot = impl_->plans[key];
  if (!slot) {
    auto plan = std::make_unique<Plan>();
    IGNIS_CHECK(make_plan(impl_->handle, impl_->ws.size(), t, M, N, K, GemmEpilogue::kNone, &plan->desc, &plan->a,
                          &plan->b, &plan->c, &plan->algo, splits),
                "cuBLASLt has no algorithm for the split-K product ", M, "x", N, "x", K, " in ", splits, " slices (",
                dtype_name(t), ")");
    slot = std::move(plan);
  }
  Plan& p = *slot;
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasLtMatmul(impl_->handle, p.desc, &alpha, W, p.a, x, p.b, &beta, parts, p.c, parts, p.c, &p.algo,
                              impl_->ws.get(), impl_->ws.size(), stream));
  return 1;
}

bool EncoderGemm::fused(DType t, int M, int N, int K, GemmEpilogue epi) const {
  const auto it = impl_->plans.find(std::make_tuple(int(t), M, N, K, int(epi)));
  return it != impl_->plans.end() && it->second && it->second->fused;
}

}  // namespace ignis::cuda
