// GPTQ on the CPU in float64 (quantize.h describes the algorithm). Layout: the weights are held
// transposed, Wt[K][N], so the column being quantized and every column update is a contiguous
// run of N values; within a block the N rows are independent (each row's quantization only reads
// that row), so the block loop runs in parallel over row ranges, and the lazy update of the
// columns after the block is a small GEMM parallel over those columns.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "quant/quantize.h"

namespace ignis::quant {

// ---- Hessian -------------------------------------------------------------------------------------

void HessianAccumulator::add(ThreadPool& pool, const float* X, int64_t rows) {
  // Chunks of 256 rows: G = X_c^T X_c in float by OpenBLAS ssyrk (upper triangle), then added
  // into the double sum, so float rounding stays within 256 terms. (A scalar loop here was a
  // dependent chain of float adds: ~20x slower, most of a GPTQ run's time.)
  constexpr int64_t kChunk = 256;
  std::vector<float> G(size_t(K_ * K_));
  for (int64_t t0 = 0; t0 < rows; t0 += kChunk) {
    const int64_t T = std::min(kChunk, rows - t0);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, blasint(K_), blasint(T), 1.0f, X + t0 * K_, blasint(K_), 0.0f,
                G.data(), blasint(K_));
    pool.parallel_for(K_, 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = i; j < K_; ++j) sum_[size_t(i * K_ + j)] += G[size_t(i * K_ + j)];
    });
  }
  n_ += rows;
}

std::vector<double> HessianAccumulator::hessian() const {
  IGNIS_CHECK(n_ > 0, "GPTQ: no calibration samples were collected");
  std::vector<double> H(sum_.size());
  const double f = 2.0 / double(n_);
  for (int64_t i = 0; i < K_; ++i)
    for (int64_t j = i; j < K_; ++j) H[size_t(i * K_ + j)] = H[size_t(j * K_ + i)] = f * sum_[size_t(i * K_ + j)];
  return H;
}

// ---- dense linear algebra (K x K, row-major, double) ----------------------------------------------

namespace {

// In place: A = L with L L^T = A (lower triangle; the upper one is zeroed). False if not PD.
bool cholesky_lower(std::vector<double>& A, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = A[size_t(j * n + j)];
    for (int64_t k = 0; k < j; ++k) d -= A[size_t(j * n + k)] * A[size_t(j * n + k)];
    if (!(d > 0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    A[size_t(j * n + j)] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = A[size_t(i * n + j)];
      const double* ai = &A[size_t(i * n)];
      const double* aj = &A[size_t(j * n)];
      for (int64_t k = 0; k < j; ++k) s -= ai[k] * aj[k];
      A[size_t(i * n + j)] = s / d;
    }
    for (int64_t k = j + 1; k < n; ++k) A[size_t(j * n + k)] = 0;
  }
  return true;
}

// U (upper, U^T U = H^-1) from H, or false when H is not positive definite.
bool inverse_upper_cholesky(const std::vector<double>& H, int64_t n, std::vector<double>& U) {
  std::vector<double> L = H;
  if (!cholesky_lower(L, n)) return false;
  // Linv = L^-1 (lower), by forward substitution column by column.
  std::vector<double> Li(size_t(n * n), 0.0);
  for (int64_t c = 0; c < n; ++c) {
    Li[size_t(c * n + c)] = 1.0 / L[size_t(c * n + c)];
    for (int64_t i = c + 1; i < n; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s += L[size_t(i * n + k)] * Li[size_t(k * n + c)];
      Li[size_t(i * n + c)] = -s / L[size_t(i * n + i)];
    }
  }
  // Hinv = Linv^T Linv (symmetric).
  std::vector<double> Hi(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      double s = 0;
      for (int64_t k = j; k < n; ++k) s += Li[size_t(k * n + i)] * Li[size_t(k * n + j)];
      Hi[size_t(i * n + j)] = Hi[size_t(j * n + i)] = s;
    }
  if (!cholesky_lower(Hi, n)) return false;
  U.assign(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) U[size_t(j * n + i)] = Hi[size_t(i * n + j)];
  return true;
}

inline int quantize_one(double x, float scale, int zero, int maxq) {
  if (scale == 0.f) return zero;
  return int(std::clamp(std::nearbyint(x / double(scale)) + zero, 0.0, double(maxq)));
}

}  // namespace

// ---- GPTQ -------------------------------------------------------------------------------------------

QuantLinear quantize_gptq(ThreadPool& pool, const float* W, int64_t N, int64_t K, const std::vector<double>& H_in,
                          const QuantSpec& spec, const GptqOptions& opt) {
  IGNIS_CHECK(int64_t(H_in.size()) == K * K, "GPTQ: Hessian has ", H_in.size(), " entries, expected ", K * K);
  IGNIS_CHECK(opt.percdamp >= 0 && opt.blocksize > 0, "GPTQ: bad options");
  const bool sym = spec.format == QFormat::kInt8 || spec.symmetric;
  QuantLinear q = make_quant_linear(spec.format, N, K, spec.group, sym, spec.scale_dtype);
  const int64_t G = q.groups(), gs = q.group;
  const int maxq = detail::max_q(spec);
  // int8 is per channel: one group spanning every column; its params come from the first column.
  const bool act = opt.act_order;

  std::vector<double> H = H_in;
  // Column order: identity, or decreasing diag(H) (act-order).
  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  if (act)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H_in[size_t(a * K + a)] > H_in[size_t(b * K + b)]; });

  // Wt[j][n] = W[n][perm[j]]; H permuted the same way. Dead inputs: H = 1 on the diagonal, W = 0.
  std::vector<double> Wt(size_t(K * N));
  std::vector<double> Hp(size_t(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) Hp[size_t(i * K + j)] = H[size_t(perm[size_t(i)] * K + perm[size_t(j)])];
  for (int64_t j = 0; j < K; ++j) {
    const bool dead = Hp[size_t(j * K + j)] == 0;
    if (dead) Hp[size_t(j * K + j)] = 1;
    for (int64_t n = 0; n < N; ++n) Wt[size_t(j * N + n)] = dead ? 0.0 : double(W[n * K + perm[size_t(j)]]);
  }
  double mean_diag = 0;
  for (int64_t j = 0; j < K; ++j) mean_diag += Hp[size_t(j * K + j)];
  mean_diag /= double(K);
  std::vector<double> U;
  double damp = opt.percdamp * mean_diag;
  for (int attempt = 0;; ++attempt) {
    std::vector<double> Hd = Hp;
    for (int64_t j = 0; j < K; ++j) Hd[size_t(j * K + j)] += damp;
    if (inverse_upper_cholesky(Hd, K, U)) break;
    IGNIS_CHECK(attempt < 5, "GPTQ: the Hessian is not positive definite even with damping ", damp,
                "; give more calibration data or a larger --damp");
    damp = damp > 0 ? damp * 10 : 1e-6 * std::max(mean_diag, 1e-12);
  }

  // group params in permuted column order: group index of permuted column j = j / gs
  std::vector<float> scale(static_cast<size_t>(N));
  std::vector<int> zero(static_cast<size_t>(N));
  std::vector<int> qcol(size_t(K * N));  // q of permuted column j, row n
  const int64_t bs = opt.blocksize;
  std::vector<double> Err(size_t(bs * N));
  for (int64_t i1 = 0; i1 < K; i1 += bs) {
    const int64_t i2 = std::min(K, i1 + bs), count = i2 - i1;
    pool.parallel_for(N, 8, [&](int64_t r0, int64_t r1) {
      const int64_t nr = r1 - r0;
      for (int64_t i = i1; i < i2; ++i) {
        double* w = &Wt[size_t(i * N + r0)];
        if (i % gs == 0) {  // a group starts: its params from the current weights of its columns
          const int64_t cols = std::min<int64_t>(gs, K - i);
          for (int64_t n = 0; n < nr; ++n)
            detail::find_params(w + n, cols, N, spec, scale[size_t(r0 + n)], zero[size_t(r0 + n)]);
          const int64_t g = i / gs;
          for (int64_t n = r0; n < r1; ++n) {  // group g in permuted order == g_idx's numbering
            q.scales[size_t(n * G + g)] = scale[size_t(n)];
            if (!q.zeros.empty()) q.zeros[size_t(n * G + g)] = uint8_t(zero[size_t(n)]);
          }
        }
        const double d = U[size_t(i * K + i)];
        double* err = &Err[size_t((i - i1) * N + r0)];
        for (int64_t n = 0; n < nr; ++n) {
          const int qi = quantize_one(w[n], scale[size_t(r0 + n)], zero[size_t(r0 + n)], maxq);
          qcol[size_t(i * N + r0 + n)] = qi;
          const double deq = double(scale[size_t(r0 + n)]) * (qi - zero[size_t(r0 + n)]);
          err[n] = (w[n] - deq) / d;
        }
        for (int64_t j = i + 1; j < i2; ++j) {
          const double u = U[size_t(i * K + j)];
          double* wj = &Wt[size_t(j * N + r0)];
          for (int64_t n = 0; n < nr; ++n) wj[n] -= err[n] * u;
        }
      }
    });
    // Lazy batch update of the columns after the block: W[:, i2:] -= Err U[i1:i2, i2:].
    if (i2 < K)
      pool.parallel_for(K - i2, 4, [&](int64_t a, int64_t b) {
        for (int64_t j = i2 + a; j < i2 + b; ++j) {
          double* wj = &Wt[size_t(j * N)];
          for (int64_t t = 0; t < count; ++t) {
            const double u = U[size_t((i1 + t) * K + j)];
            if (u == 0) continue;
            const double* e = &Err[size_t(t * N)];
            for (int64_t n = 0; n < N; ++n) wj[n] -= e[n] * u;
          }
        }
      });
  }

  // Store q in original column order; with act-order the groups follow the permuted order.
  for (int64_t j = 0; j < K; ++j)
    for (int64_t n = 0; n < N; ++n) q.set_q(n, perm[size_t(j)], qcol[size_t(j * N + n)]);
  if (act && spec.format == QFormat::kInt4) {
    q.g_idx.resize(size_t(K));
    for (int64_t j = 0; j < K; ++j) q.g_idx[size_t(perm[size_t(j)])] = int32_t(j / gs);
  }
  return q;
}

}  // namespace ignis::quant
