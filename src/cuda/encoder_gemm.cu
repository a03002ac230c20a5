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
  int choice = 0;     // index of algo in the heuristic's list
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

// Which of the heuristic's algorithms to take: by default the fastest of its first kMaxAlgos on the
// first call's own operands (tune_algo); IGNIS_ENC_GEMM_ALGO=k takes the k-th (clamped to those
// offered) and IGNIS_ENC_GEMM_TUNE=0 its first, knobs for measurements.
constexpr int kMaxAlgos = 8;
struct Algos {  // the heuristic's candidates, best ranked first
  cublasLtMatmulAlgo_t a[kMaxAlgos];
  int n = 0;
};
int algo_choice() {
  static const int k = [] {
    const char* e = std::getenv("IGNIS_ENC_GEMM_ALGO");
    return e ? std::max(0, std::min(kMaxAlgos - 1, std::atoi(e))) : -1;
  }();
  return k;
}
bool tuning_on() {
  static const bool on = [] {
    const char* e = std::getenv("IGNIS_ENC_GEMM_TUNE");
    return !(e && std::atoi(e) == 0);
  }();
  return on;
}

// The descriptors of one shape with epilogue `epi`, and the heuristic's algorithms for it (best
// ranked first); false when it has none.
bool make_plan(cublasLtHandle_t handle, size_t ws_bytes, DType t, int M, int N, int K, GemmEpilogue epi,
               cublasLtMatmulDesc_t* desc, cublasLtMatrixLayout_t* la, cublasLtMatrixLayout_t* lb,
               cublasLtMatrixLayout_t* lc, Algos* algos) {
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
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(la, ty, K, N, K));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lb, ty, K, M, K));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lc, ty, N, M, N));
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
  algos->n = 0;
  for (int i = 0; i < count; ++i)
    if (res[i].state == CUBLAS_STATUS_SUCCESS) algos->a[algos->n++] = res[i].algo;
  return algos->n > 0;
}

// Times each candidate on the call's own operands (y is written, then written again by the call)
// and returns the index of the fastest: 1 launch to warm up, the best of 3 single launches (events
// around each). The heuristic's first stays unless another is at least 3% faster (timing noise
// must not flip choices). Only outside a stream capture (the encoder's first pass of a bucket is
// eager). Costs a few launches per candidate once per shape: ~0.3 ms at 1x128, ~15 ms at 32x512
// for BERT-base's four GEMM shapes.
int tune_algo(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la,
              cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc, const Algos& algos,
              const void* W, const void* x, void* y, void* ws, size_t ws_bytes, cudaStream_t stream) {
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(stream, &cap));
  if (algos.n < 2 || cap != cudaStreamCaptureStatusNone) return 0;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  const float alpha = 1.f, beta = 0.f;
  float best[kMaxAlgos];
  for (int i = 0; i < algos.n; ++i) {
    best[i] = 1e30f;
    const cublasLtMatmulAlgo_t* al = &algos.a[i];
    // a candidate that does not run is not taken
    if (cublasLtMatmul(handle, desc, &alpha, W, la, x, lb, &beta, y, lc, y, lc, al, ws, ws_bytes, stream) !=
        CUBLAS_STATUS_SUCCESS)
      continue;
    for (int r = 0; r < 3; ++r) {
      CUDA_CHECK(cudaEventRecord(e0, stream));
      const cublasStatus_t st =
          cublasLtMatmul(handle, desc, &alpha, W, la, x, lb, &beta, y, lc, y, lc, al, ws, ws_bytes, stream);
      CUDA_CHECK(cudaEventRecord(e1, stream));
      CUDA_CHECK(cudaEventSynchronize(e1));
      if (st != CUBLAS_STATUS_SUCCESS) break;
      float ms = 0.f;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      best[i] = std::min(best[i], ms);
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  int pick = 0;
  for (int i = 1; i < algos.n; ++i)
    if (best[i] < best[pick]) pick = i;
  return best[pick] < 0.97f * best[0] ? pick : 0;
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
    Algos algos;
    if (!make_plan(impl_->handle, impl_->ws.size(), t, M, N, K, epi, &plan->desc, &plan->a, &plan->b, &plan->c,
                   &algos)) {
      IGNIS_CHECK(epi != GemmEpilogue::kNone, "cuBLASLt has no algorithm for ", M, "x", N, "x", K, " (",
                  dtype_name(t), ")");
      plan->destroy();
      plan->fused = false;
      IGNIS_CHECK(make_plan(impl_->handle, impl_->ws.size(), t, M, N, K, GemmEpilogue::kNone, &plan->desc, &plan->a,
                            &plan->b, &plan->c, &algos),
                  "cuBLASLt has no algorithm for ", M, "x", N, "x", K, " (", dtype_name(t), ")");
    }
    if (plan->fused && epi != GemmEpilogue::kNone)
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    int k = 0;
    if (algo_choice() >= 0)
      k = std::min(algo_choice(), algos.n - 1);
    else if (tuning_on())
      k = tune_algo(impl_->handle, plan->desc, plan->a, plan->b, plan->c, algos, W, x, y, impl_->ws.get(),
                    impl_->ws.size(), stream);
    plan->algo = algos.a[k];
    plan->choice = k;
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

int EncoderGemm::choice(DType t, int M, int N, int K, GemmEpilogue epi) const {
  const auto it = impl_->plans.find(std::make_tuple(int(t), M, N, K, int(epi)));
  return it != impl_->plans.end() && it->second ? it->second->choice : -1;
}

bool EncoderGemm::fused(DType t, int M, int N, int K, GemmEpilogue epi) const {
  const auto it = impl_->plans.find(std::make_tuple(int(t), M, N, K, int(epi)));
  return it != impl_->plans.end() && it->second && it->second->fused;
}

}  // namespace ignis::cuda
