// GPTQ on the GPU in float32 (gptq_cuda.h describes the algorithm; quantize.h and
// src/quant/gptq.cpp the CPU reference it mirrors step by step).
//
// Layout, as on the CPU: the weights are held permuted and transposed, Wt[K][N] (Wt[j * N + n] =
// W[n][perm[j]]), so a column of W is a contiguous run of N floats: the block kernel's threads (one
// per row) read and write a column with one coalesced access, and the lazy update of the columns
// after a block is one column-major SGEMM. U (the upper Cholesky factor of H^-1) is row-major
// [K][K]; since H is symmetric, row-major and column-major are the same matrix for cuSOLVER, and the
// lower factor cuSOLVER writes in column-major order is U when read row-major.
#include <cuda_fp16.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>

#include "cuda/common.h"
#include "cuda/gptq_cuda.h"

#define CUSOLVER_CHECK(call)                                                                   \
  do {                                                                                         \
    const cusolverStatus_t ignis_sst_ = (call);                                                \
    if (ignis_sst_ != CUSOLVER_STATUS_SUCCESS)                                                 \
      ::ignis::fail(__FILE__ ":" IGNIS_CUDA_STR(__LINE__) ": ", #call, ": cuSOLVER error ",    \
                    int(ignis_sst_));                                                          \
  } while (0)

namespace ignis::cuda {

namespace {

// Scale dtypes as the kernels see them.
enum ScaleCode : int { kScaleF32 = 0, kScaleBF16 = 1, kScaleF16 = 2 };

int scale_code(DType t) {
  if (t == DType::F32) return kScaleF32;
  if (t == DType::BF16) return kScaleBF16;
  if (t == DType::F16) return kScaleF16;
  fail("GPTQ: scales must be f32, bf16 or f16, got ", dtype_name(t));
}

// Blocks for a grid-stride loop over n elements.
int grid_for(int64_t n, int threads) { return int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), int64_t(sm_count()) * 16))); }

// ---- kernels ---------------------------------------------------------------------------------------

// Wt[j * N + n] = src[j] < 0 ? 0 : W[n * K + src[j]]: the permuted, transposed weights, with the
// columns of dead inputs (src = -1) zeroed. One thread per output element (grid-stride, writes
// coalesced, reads strided by K); N K floats read and written once.
__global__ void gather_columns_kernel(const float* __restrict__ W, const int32_t* __restrict__ src, int64_t N,
                                      int64_t K, float* __restrict__ Wt) {
  pdl_wait();
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < N * K; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx / N, n = idx - j * N;
    const int32_t k = src[j];
    Wt[idx] = k < 0 ? 0.f : W[n * K + k];
  }
}

// A[j][j] += damp for j < K (the damping of the Hessian). One thread per diagonal entry.
__global__ void add_diagonal_kernel(float* __restrict__ A, int64_t K, float damp) {
  pdl_wait();
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < K; j += int64_t(gridDim.x) * blockDim.x)
    A[j * K + j] += damp;
}

// After potrf / potri / potrf, A's row-major upper triangle holds U; below it is what the
// factorisations left (the input). Zeroes that part and sets *bad when an entry of U is not
// finite or a diagonal entry is not positive (a breakdown potrf may not report, e.g. NaN).
// One thread per entry (grid-stride); K^2 floats read, half of them written.
__global__ void finish_factor_kernel(float* __restrict__ A, int64_t K, int* __restrict__ bad) {
  pdl_wait();
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < K * K; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / K, j = idx - i * K;
    if (j < i) {
      A[idx] = 0.f;
    } else {
      const float v = A[idx];
      if (!isfinite(v) || (i == j && !(v > 0.f))) atomicOr(bad, 1);
    }
  }
}

// sum[i][j] += G[i][j] for j >= i (row-major upper triangle; G from SSYRK with the column-major
// lower fill, the same entries). One thread per entry (grid-stride); K^2 floats + doubles.
__global__ void accumulate_upper_kernel(const float* __restrict__ G, int64_t K, double* __restrict__ sum) {
  pdl_wait();
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < K * K; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / K, j = idx - i * K;
    if (j >= i) sum[idx] += double(G[idx]);
  }
}

// round_scale_up (formats.h) on the device: s rounded to the scale dtype, then one unit in the
// last place up if that fell below s (positive s), so |x| / scale never exceeds the range.
__device__ float round_scale_up_dev(float s, int code) {
  if (code == kScaleBF16) {
    const __nv_bfloat16 b = __float2bfloat16_rn(s);
    const float r = __bfloat162float(b);
    return r < s ? __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(__bfloat16_as_ushort(b) + 1))) : r;
  }
  if (code == kScaleF16) {
    const __half h = __float2half_rn(s);
    const float r = __half2float(h);
    return r < s ? __half2float(__ushort_as_half(static_cast<unsigned short>(__half_as_ushort(h) + 1))) : r;
  }
  return s;
}

// detail::find_params (src/quant/rtn.cpp) from the group's min / max (both include 0).
__device__ void find_params_dev(float lo, float hi, int maxq, bool sym, int code, float& scale, int& zero) {
  if (sym) {
    scale = round_scale_up_dev(__fdiv_rn(2.f * fmaxf(-lo, hi), float(maxq)), code);
    zero = (maxq + 1) / 2;
  } else {
    scale = round_scale_up_dev(__fdiv_rn(hi - lo, float(maxq)), code);
    zero = scale > 0.f ? int(fminf(fmaxf(rintf(__fdiv_rn(-lo, scale)), 0.f), float(maxq))) : 8;
  }
  if (!(scale > 0.f) || !isfinite(scale)) scale = 0.f;  // an all-zero group (or underflow): q = zero
}

// q = clamp(round(x / scale) + zero, 0, maxq), ties to even as std::nearbyint. (__fdiv_rn: the
// IEEE quotient even under --use_fast_math, so ties round as on the CPU.)
__device__ int quantize_dev(float x, float scale, int zero, int maxq) {
  if (scale == 0.f) return zero;
  return int(fminf(fmaxf(rintf(__fdiv_rn(x, scale)) + float(zero), 0.f), float(maxq)));
}

// One block of GPTQ: quantizes columns [i1, i1 + count) of Wt [K][N] one after the other.
// Thread = row n (rows are independent: a row's quantization reads only that row). The row's block
// columns live in shared memory at s[c * blockDim.x] (consecutive threads, consecutive words: no
// bank conflicts). For column i:
//   - when a group starts at i: its scale / zero from the current weights of its columns, those in
//     the block from shared memory (with this block's updates so far), later ones from Wt (with all
//     earlier blocks' updates) -- what the CPU code reads; stored in scales / zeros [N][G];
//   - q = quantize(w_i) -> qcol[i][n]; err = (w_i - deq(q)) / U[i][i] -> Err[c][n];
//   - the block's later columns: w_j -= err U[i][j].
// The block's columns of Wt are not written back (nothing reads them again); the SGEMM that follows
// applies Err to the columns after the block. Traffic: count N floats of Wt read, count N floats of
// Err and count N bytes of q written, U's block rows read (the same address across a warp: one
// broadcast, cached), plus up to `group` columns read per group start.
// Launch: ceil(N / T) blocks of T threads, count * T * 4 bytes of dynamic shared memory.
__global__ void gptq_block_kernel(const float* __restrict__ Wt, const float* __restrict__ U, int64_t N, int64_t K,
                                  int64_t i1, int count, int64_t gs, int64_t G, int maxq, int code,
                                  float* __restrict__ scales, uint8_t* __restrict__ zeros,
                                  uint8_t* __restrict__ qcol, float* __restrict__ Err) {
  extern __shared__ float s_cols[];
  pdl_wait();
  const int T = int(blockDim.x);
  const int64_t n = blockIdx.x * int64_t(T) + threadIdx.x;
  if (n >= N) return;  // no block-wide synchronisation below: threads never share data
  float* s = s_cols + threadIdx.x;
  for (int c = 0; c < count; ++c) s[c * T] = Wt[(i1 + c) * N + n];
  const bool sym = zeros == nullptr;
  float scale = 0.f;
  int zero = (maxq + 1) / 2;
  if (i1 % gs != 0) {  // the current group started in an earlier block
    const int64_t g = i1 / gs;
    scale = scales[n * G + g];
    if (!sym) zero = zeros[n * G + g];
  }
  for (int c = 0; c < count; ++c) {
    const int64_t i = i1 + c;
    if (i % gs == 0) {
      const int64_t cols = gs < K - i ? gs : K - i;
      float lo = 0.f, hi = 0.f;
      for (int64_t t = 0; t < cols; ++t) {
        const float x = c + t < count ? s[(c + t) * T] : Wt[(i + t) * N + n];
        lo = fminf(lo, x);
        hi = fmaxf(hi, x);
      }
      find_params_dev(lo, hi, maxq, sym, code, scale, zero);
      const int64_t g = i / gs;
      scales[n * G + g] = scale;
      if (!sym) zeros[n * G + g] = uint8_t(zero);
    }
    const float w = s[c * T];
    const int q = quantize_dev(w, scale, zero, maxq);
    qcol[i * N + n] = uint8_t(q);
    const float err = __fdiv_rn(w - scale * float(q - zero), U[i * K + i]);  // scale * (q - zero) is exact
    Err[int64_t(c) * N + n] = err;
    const float* u = U + i * K + i1;  // row i of U, from the block's first column
    for (int c2 = c + 1; c2 < count; ++c2) s[c2 * T] -= err * u[c2];
  }
}

// Threads per block of gptq_block_kernel for `bs` columns: 64 rows per block while the columns fit
// in 32 KiB, else 32 (for larger blocksizes the shared memory grows; see quantize()).
int block_threads(int64_t bs) { return bs * 64 * 4 <= 32 * 1024 ? 64 : 32; }

template <typename T>
void upload_async(DeviceBuffer& d, const T* h, size_t count, cudaStream_t st) {
  d.alloc(std::max<size_t>(1, count) * sizeof(T));
  if (count) CUDA_CHECK(cudaMemcpyAsync(d.get(), h, count * sizeof(T), cudaMemcpyHostToDevice, st));
}

}  // namespace

// ---- the solver ------------------------------------------------------------------------------------

struct GptqSolverCuda::Impl {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  DeviceBuffer work;  // cuSOLVER workspace
  DeviceBuffer info;  // int[4]: potrf, potri, potrf infos, finish_factor's flag

  Impl() {
    try {
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      CUBLAS_CHECK(cublasCreate(&blas));
      CUBLAS_CHECK(cublasSetStream(blas, stream));
      // Plain float32 GEMMs (no TF32): the error updates are what GPTQ's accuracy rests on.
      CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
      CUSOLVER_CHECK(cusolverDnCreate(&solver));
      CUSOLVER_CHECK(cusolverDnSetStream(solver, stream));
      info.alloc(4 * sizeof(int));
    } catch (...) {
      release();
      throw;
    }
  }
  ~Impl() { release(); }
  void release() {
    if (solver) cusolverDnDestroy(solver);
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
    solver = nullptr, blas = nullptr, stream = nullptr;
  }

  // dA [K][K] holds H + damp I. On success it holds U (row-major upper triangle, zeros below,
  // U^T U = H^-1) and this returns true; false when a factorisation breaks down (H not positive
  // definite in float32). The math of inverse_upper_cholesky in gptq.cpp: L = chol(H) (lower,
  // column-major), H^-1 from L (potri, lower triangle), chol(H^-1) = L2 (lower, column-major),
  // and L2 read row-major is L2^T = U.
  bool inverse_upper_cholesky(float* dA, int K) {
    int lw1 = 0, lw2 = 0;
    CUSOLVER_CHECK(cusolverDnSpotrf_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, K, dA, K, &lw1));
    CUSOLVER_CHECK(cusolverDnSpotri_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, K, dA, K, &lw2));
    const int lwork = std::max(1, std::max(lw1, lw2));
    if (work.size() < size_t(lwork) * sizeof(float)) work.alloc(size_t(lwork) * sizeof(float));
    int* dinfo = info.as<int>();
    CUDA_CHECK(cudaMemsetAsync(dinfo, 0, 4 * sizeof(int), stream));
    float* w = work.as<float>();
    CUSOLVER_CHECK(cusolverDnSpotrf(solver, CUBLAS_FILL_MODE_LOWER, K, dA, K, w, lwork, dinfo + 0));
    CUSOLVER_CHECK(cusolverDnSpotri(solver, CUBLAS_FILL_MODE_LOWER, K, dA, K, w, lwork, dinfo + 1));
    CUSOLVER_CHECK(cusolverDnSpotrf(solver, CUBLAS_FILL_MODE_LOWER, K, dA, K, w, lwork, dinfo + 2));
    launch(finish_factor_kernel, dim3(grid_for(int64_t(K) * K, 256)), dim3(256), 0, stream, dA, int64_t(K), dinfo + 3);
    int h[4];
    CUDA_CHECK(cudaMemcpyAsync(h, dinfo, sizeof(h), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int i = 0; i < 3; ++i)
      IGNIS_CHECK(h[i] >= 0, "GPTQ: cuSOLVER rejected argument ", -h[i], " of ", i == 1 ? "potri" : "potrf",
                  " (internal error)");
    return h[0] == 0 && h[1] == 0 && h[2] == 0 && h[3] == 0;
  }
};

GptqSolverCuda::GptqSolverCuda() : impl_(std::make_unique<Impl>()) {}
GptqSolverCuda::~GptqSolverCuda() = default;

quant::QuantLinear GptqSolverCuda::quantize(const float* W, int64_t N, int64_t K, const std::vector<double>& H_in,
                                            const quant::QuantSpec& spec, const quant::GptqOptions& opt,
                                            const std::string& what) {
  const std::string name = what.empty() ? ::ignis::detail::concat("the ", N, " x ", K, " layer") : "layer " + what;
  IGNIS_CHECK(N > 0 && K > 0, "GPTQ: ", name, " is empty");
  IGNIS_CHECK(int64_t(H_in.size()) == K * K, "GPTQ: the Hessian of ", name, " has ", H_in.size(),
              " entries, expected ", K * K);
  IGNIS_CHECK(opt.percdamp >= 0 && opt.blocksize > 0, "GPTQ: bad options (percdamp ", opt.percdamp,
              ", blocksize ", opt.blocksize, "): percdamp must be >= 0 and blocksize > 0");
  // cuSOLVER's 32-bit interface (potri has no 64-bit form): K^2 must fit in an int.
  IGNIS_CHECK(K <= 46340, "GPTQ on the GPU: ", name, " has ", K, " input columns; at most 46340 are supported");
  for (int64_t i = 0; i < K * K; ++i)
    if (!(std::fabs(H_in[size_t(i)]) <= double(FLT_MAX)))
      fail("GPTQ: the Hessian of ", name,
           std::isfinite(H_in[size_t(i)]) ? " exceeds the float32 range at (" : " is not finite at (", i / K, ", ",
           i % K, "): ", H_in[size_t(i)], "; the calibration activations overflowed or hold NaN");
  for (int64_t i = 0; i < N * K; ++i)
    if (!std::isfinite(W[i])) fail("GPTQ: weight (", i / K, ", ", i % K, ") of ", name, " is not finite: ", W[i]);

  const bool sym = spec.format == quant::QFormat::kInt8 || spec.symmetric;
  quant::QuantLinear q = quant::make_quant_linear(spec.format, N, K, spec.group, sym, spec.scale_dtype);
  const int64_t G = q.groups(), gs = q.group;
  const int maxq = quant::detail::max_q(spec);
  const int code = scale_code(spec.scale_dtype);
  const bool act = opt.act_order;
  cudaStream_t st = impl_->stream;

  // Column order (as the CPU): identity, or decreasing diag(H) (stable).
  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (act)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H_in[size_t(a * K + a)] > H_in[size_t(b * K + b)]; });

  // Permuted Hessian in float, dead inputs' diagonal set to 1; their weight columns become zeros
  // (src = -1). mean(diag) in double from the permuted, fixed diagonal.
  std::vector<int32_t> src(static_cast<size_t>(K));
  double mean_diag = 0;
  DeviceBuffer dHp, dU, dWt;
  {
    std::vector<float> Hp(size_t(K * K));  // kept until the stream has read it (synchronize below)
    for (int64_t i = 0; i < K; ++i) {
      const double* row = &H_in[size_t(perm[size_t(i)] * K)];
      float* out = &Hp[size_t(i * K)];
      for (int64_t j = 0; j < K; ++j) out[j] = float(row[perm[size_t(j)]]);
    }
    for (int64_t j = 0; j < K; ++j) {
      const bool dead = H_in[size_t(perm[size_t(j)] * (K + 1))] == 0;  // as the CPU: the double value
      if (dead) Hp[size_t(j * K + j)] = 1;
      src[size_t(j)] = dead ? -1 : int32_t(perm[size_t(j)]);
      mean_diag += double(H_in[size_t(perm[size_t(j)] * (K + 1))]) + (dead ? 1.0 : 0.0);
    }
    mean_diag /= double(K);
    upload_async(dHp, Hp.data(), Hp.size(), st);
    DeviceBuffer dW, dSrc;
    upload_async(dW, W, size_t(N * K), st);
    upload_async(dSrc, src.data(), src.size(), st);
    dWt.alloc(size_t(N * K) * sizeof(float));
    launch(gather_columns_kernel, dim3(grid_for(N * K, 256)), dim3(256), 0, st, dW.as<float>(), dSrc.as<int32_t>(), N,
           K, dWt.as<float>());
    CUDA_CHECK(cudaStreamSynchronize(st));  // before Hp, dW and dSrc are freed
  }

  // U = upper Cholesky factor of (H + damp I)^-1; damping x10 on failure, up to 5 times.
  dU.alloc(size_t(K * K) * sizeof(float));
  const double damp0 = opt.percdamp * mean_diag;
  double damp = damp0;
  for (int attempt = 0;; ++attempt) {
    CUDA_CHECK(cudaMemcpyAsync(dU.get(), dHp.get(), size_t(K * K) * sizeof(float), cudaMemcpyDeviceToDevice, st));
    launch(add_diagonal_kernel, dim3(grid_for(K, 256)), dim3(256), 0, st, dU.as<float>(), K, float(damp));
    if (impl_->inverse_upper_cholesky(dU.as<float>(), int(K))) break;
    IGNIS_CHECK(attempt < 5, "GPTQ: the Hessian of ", name, " is not positive definite (in float32) even after damping x1e5 (damp ",
                damp, ", mean diag(H) ", mean_diag, ", percdamp ", opt.percdamp,
                "); give more calibration data or a larger --damp");
    damp = damp > 0 ? damp * 10 : 1e-6 * std::max(mean_diag, 1e-12);
  }
  dHp.reset();

  // Outputs, poisoned (NaN scales, 0xFF q / zeros) so an entry the kernel missed cannot pass.
  const int64_t bs = std::min<int64_t>(opt.blocksize, K);
  DeviceBuffer dScales(size_t(N * G) * sizeof(float)), dZeros(sym ? 1 : size_t(N * G)), dQ(size_t(K * N)),
      dErr(size_t(bs * N) * sizeof(float));
  CUDA_CHECK(cudaMemsetAsync(dScales.get(), 0xFF, dScales.size(), st));
  CUDA_CHECK(cudaMemsetAsync(dZeros.get(), 0xFF, dZeros.size(), st));
  CUDA_CHECK(cudaMemsetAsync(dQ.get(), 0xFF, dQ.size(), st));

  const int T = block_threads(bs);
  const size_t smem = size_t(bs) * T * sizeof(float);
  if (smem > 48 * 1024) {
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    IGNIS_CHECK(smem <= size_t(optin), "GPTQ: blocksize ", bs, " needs ", smem, " bytes of shared memory per thread block; this GPU has ",
                optin, " (use a blocksize of at most ", optin / (T * 4), ")");
    CUDA_CHECK(cudaFuncSetAttribute(gptq_block_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  float* Wt = dWt.as<float>();
  const float* U = dU.as<float>();
  uint8_t* zeros = sym ? nullptr : dZeros.as<uint8_t>();
  const float minus_one = -1.f, one = 1.f;
  for (int64_t i1 = 0; i1 < K; i1 += bs) {
    const int64_t i2 = std::min(K, i1 + bs);
    const int count = int(i2 - i1);
    launch(gptq_block_kernel, dim3(ceil_div(N, T)), dim3(T), size_t(count) * T * sizeof(float), st,
           static_cast<const float*>(Wt), U, N, K, i1, count, gs, G, maxq, code, dScales.as<float>(), zeros,
           dQ.as<uint8_t>(), dErr.as<float>());
    // Lazy batch update of the later columns, column-major: Wt[:, i2:] (N x (K - i2), ld N)
    //   -= Err (N x count, ld N) * B^T, B (K - i2) x count at U + i1 K + i2 (ld K): B(j, t) = U[i1 + t][i2 + j].
    if (i2 < K)
      CUBLAS_CHECK(cublasSgemm(impl_->blas, CUBLAS_OP_N, CUBLAS_OP_T, int(N), int(K - i2), count, &minus_one,
                               dErr.as<float>(), int(N), U + i1 * K + i2, int(K), &one, Wt + i2 * N, int(N)));
  }

  std::vector<uint8_t> qcol(size_t(K * N));
  CUDA_CHECK(cudaMemcpyAsync(qcol.data(), dQ.get(), qcol.size(), cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaMemcpyAsync(q.scales.data(), dScales.get(), q.scales.size() * sizeof(float), cudaMemcpyDeviceToHost, st));
  if (!sym) CUDA_CHECK(cudaMemcpyAsync(q.zeros.data(), dZeros.get(), q.zeros.size(), cudaMemcpyDeviceToHost, st));
  CUDA_CHECK(cudaStreamSynchronize(st));

  // q in original column order; with act-order the groups follow the permuted order (as the CPU).
  for (int64_t j = 0; j < K; ++j)
    for (int64_t n = 0; n < N; ++n) {
      const int v = qcol[size_t(j * N + n)];
      IGNIS_CHECK(v <= maxq, "GPTQ (internal): q of (", n, ", ", perm[size_t(j)], ") was not written");
      q.set_q(n, perm[size_t(j)], v);
    }
  for (size_t i = 0; i < q.scales.size(); ++i)
    IGNIS_CHECK(std::isfinite(q.scales[i]), "GPTQ (internal): scale ", i, " of ", name, " was not written");
  if (act && spec.format == quant::QFormat::kInt4) {
    q.g_idx.resize(size_t(K));
    for (int64_t j = 0; j < K; ++j) q.g_idx[size_t(perm[size_t(j)])] = int32_t(j / gs);
  }
  return q;
}

quant::QuantLinear quantize_gptq_cuda(const float* W_host, int64_t N, int64_t K, const std::vector<double>& H_host,
                                      const quant::QuantSpec& spec, const quant::GptqOptions& opt) {
  GptqSolverCuda solver;
  return solver.quantize(W_host, N, K, H_host, spec, opt);
}

// ---- the Hessian accumulator -----------------------------------------------------------------------

namespace {
constexpr int64_t kHessianChunk = 1024;  // rows per SSYRK (float sums of at most this many terms)
}

struct GptqHessianCuda::Impl {
  int64_t K = 0, n = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  DeviceBuffer sum;    // double [K][K], row-major upper triangle used
  DeviceBuffer G;      // float [K][K], one chunk's X^T X
  DeviceBuffer stage;  // float [kHessianChunk][K], host rows (allocated on first add_host)

  ~Impl() {
    if (blas) cublasDestroy(blas);
  }

  // X_dev^T X_dev of rows [0, rows) (rows <= kHessianChunk) into the double sum.
  void add_chunk(const float* X_dev, int64_t rows) {
    const float one = 1.f, zero = 0.f;
    // Row-major X [rows][K] is column-major A = X^T [K][rows] (ld K); A A^T = X^T X, lower fill
    // in column-major == upper triangle row-major.
    CUBLAS_CHECK(cublasSsyrk(blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, int(K), int(rows), &one, X_dev, int(K), &zero,
                             G.as<float>(), int(K)));
    launch(accumulate_upper_kernel, dim3(grid_for(K * K, 256)), dim3(256), 0, stream,
           static_cast<const float*>(G.as<float>()), K, sum.as<double>());
  }
};

GptqHessianCuda::GptqHessianCuda(int64_t K, cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  IGNIS_CHECK(K > 0 && K <= 46340, "GPTQ Hessian on the GPU: ", K, " input columns; 1 to 46340 are supported");
  impl_->K = K;
  impl_->stream = stream;
  CUBLAS_CHECK(cublasCreate(&impl_->blas));
  CUBLAS_CHECK(cublasSetStream(impl_->blas, stream));
  CUBLAS_CHECK(cublasSetMathMode(impl_->blas, CUBLAS_DEFAULT_MATH));  // float32, no TF32
  impl_->sum.alloc(size_t(K * K) * sizeof(double));
  impl_->G.alloc(size_t(K * K) * sizeof(float));
  CUDA_CHECK(cudaMemsetAsync(impl_->sum.get(), 0, impl_->sum.size(), stream));
}

GptqHessianCuda::~GptqHessianCuda() = default;

void GptqHessianCuda::add_device(const float* X_dev, int64_t rows) {
  IGNIS_CHECK(rows >= 0 && (rows == 0 || X_dev), "GPTQ Hessian: bad rows (", rows, ")");
  for (int64_t t0 = 0; t0 < rows; t0 += kHessianChunk)
    impl_->add_chunk(X_dev + t0 * impl_->K, std::min(kHessianChunk, rows - t0));
  impl_->n += rows;
}

void GptqHessianCuda::add_host(const float* X, int64_t rows) {
  IGNIS_CHECK(rows >= 0 && (rows == 0 || X), "GPTQ Hessian: bad rows (", rows, ")");
  const int64_t K = impl_->K;
  if (rows > 0 && !impl_->stage.get()) impl_->stage.alloc(size_t(kHessianChunk * K) * sizeof(float));
  for (int64_t t0 = 0; t0 < rows; t0 += kHessianChunk) {
    const int64_t T = std::min(kHessianChunk, rows - t0);
    // Stream order keeps the next chunk's copy behind this chunk's SSYRK.
    CUDA_CHECK(cudaMemcpyAsync(impl_->stage.get(), X + t0 * K, size_t(T * K) * sizeof(float), cudaMemcpyHostToDevice,
                               impl_->stream));
    impl_->add_chunk(impl_->stage.as<float>(), T);
  }
  // The caller may free X once this returns.
  if (rows > 0) CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  impl_->n += rows;
}

int64_t GptqHessianCuda::K() const { return impl_->K; }
int64_t GptqHessianCuda::samples() const { return impl_->n; }

std::vector<double> GptqHessianCuda::hessian() const {
  IGNIS_CHECK(impl_->n > 0, "GPTQ: no calibration samples were collected");
  const int64_t K = impl_->K;
  std::vector<double> S(size_t(K * K));
  CUDA_CHECK(cudaMemcpyAsync(S.data(), impl_->sum.get(), S.size() * sizeof(double), cudaMemcpyDeviceToHost,
                             impl_->stream));
  CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  const double f = 2.0 / double(impl_->n);
  std::vector<double> H(S.size());
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i; j < K; ++j) H[size_t(i * K + j)] = H[size_t(j * K + i)] = f * S[size_t(i * K + j)];
  return H;
}

}  // namespace ignis::cuda
