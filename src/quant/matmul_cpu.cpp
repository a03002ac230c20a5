#include "quant/matmul_cpu.h"

#include <vector>

#include "core/error.h"
#include "ops/quant.h"

namespace ignis::quant {

void qmatmul_ref(const QuantLinear& W, const float* x, int64_t M, float* y) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < W.N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < W.K; ++k) s += double(W.weight(n, k)) * x[m * W.K + k];
      y[m * W.N + n] = float(s);
    }
}

namespace detail {

void dequant_row_fast(const QuantLinear& W, int64_t n, float* out) {
  if (!W.g_idx.empty()) {
    dequantize_row(W, n, out);
    return;
  }
  const int64_t G = W.groups(), gs = W.group;
  const float* sc = W.scales.data() + n * G;
  if (W.format == QFormat::kInt8) {
    const int8_t* q = reinterpret_cast<const int8_t*>(W.qdata.data()) + n * W.K;
    const float s = sc[0];
    for (int64_t k = 0; k < W.K; ++k) out[k] = s * float(q[k]);
    return;
  }
  const uint8_t* q = W.qdata.data() + n * (W.K / 2);
  for (int64_t g = 0; g < G; ++g) {
    const float s = sc[g];
    const float z = W.zeros.empty() ? 8.f : float(W.zeros[size_t(n * G + g)]);
    const uint8_t* qg = q + g * gs / 2;
    float* o = out + g * gs;
    for (int64_t i = 0; i < gs / 2; ++i) {
      o[2 * i] = s * (float(qg[i] & 0xF) - z);
      o[2 * i + 1] = s * (float(qg[i] >> 4) - z);
    }
  }
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace detail

void qmatmul(ThreadPool& pool, const QuantLinear& W, const float* x, int64_t M, float* y) {
  const bool avx2 = using_avx2();
  const int64_t N = W.N, K = W.K;
  pool.parallel_for(N, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t n = r0; n < r1; ++n) {
      detail::dequant_row_fast(W, n, row.data());
      for (int64_t m = 0; m < M; ++m)
        y[m * N + n] = avx2 ? detail::dot_avx2(row.data(), x + m * K, K) : detail::dot_scalar(row.data(), x + m * K, K);
    }
  });
}

}  // namespace ignis::quant
