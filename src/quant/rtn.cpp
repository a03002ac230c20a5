// Round-to-nearest quantization and the scale / zero-point rule shared with GPTQ (quantize.h).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/quantize.h"

namespace ignis::quant {
namespace detail {

int max_q(const QuantSpec& spec) { return spec.format == QFormat::kInt8 ? 255 : 15; }

void find_params(const double* x, int64_t count, int64_t stride, const QuantSpec& spec, float& scale, int& zero) {
  const int maxq = max_q(spec);
  double lo = 0, hi = 0;
  for (int64_t i = 0; i < count; ++i) {
    lo = std::min(lo, x[i * stride]);
    hi = std::max(hi, x[i * stride]);
  }
  const bool sym = spec.format == QFormat::kInt8 || spec.symmetric;
  if (sym) {
    const double m = std::max(-lo, hi);
    scale = round_scale_up(float(2 * m / maxq), spec.scale_dtype);
    zero = (maxq + 1) / 2;
  } else {
    scale = round_scale_up(float((hi - lo) / maxq), spec.scale_dtype);
    zero = scale > 0 ? int(std::clamp(std::nearbyint(-lo / scale), 0.0, double(maxq))) : 8;
  }
  if (!(scale > 0) || !std::isfinite(scale)) scale = 0.f;  // an all-zero group (or underflow): q = zero
}

}  // namespace detail

namespace {
inline int qv(double x, float scale, int zero, int maxq) {
  if (scale == 0.f) return zero;
  const double q = std::nearbyint(x / double(scale)) + zero;
  return int(std::clamp(q, 0.0, double(maxq)));
}
}  // namespace

QuantLinear quantize_rtn(const float* W, int64_t N, int64_t K, const QuantSpec& spec, ThreadPool* pool) {
  const bool sym = spec.format == QFormat::kInt8 || spec.symmetric;
  QuantLinear q = make_quant_linear(spec.format, N, K, spec.group, sym, spec.scale_dtype);
  const int64_t G = q.groups(), gs = q.group;
  const int maxq = detail::max_q(spec);
  auto rows = [&](int64_t r0, int64_t r1) {
    std::vector<double> row(static_cast<size_t>(K));
    for (int64_t n = r0; n < r1; ++n) {
      for (int64_t k = 0; k < K; ++k) row[size_t(k)] = W[n * K + k];
      for (int64_t g = 0; g < G; ++g) {
        float s;
        int z;
        detail::find_params(row.data() + g * gs, gs, 1, spec, s, z);
        q.scales[size_t(n * G + g)] = s;
        if (!q.zeros.empty()) q.zeros[size_t(n * G + g)] = uint8_t(z);
        for (int64_t k = g * gs; k < (g + 1) * gs; ++k) q.set_q(n, k, qv(row[size_t(k)], s, z, maxq));
      }
    }
  };
  if (pool)
    pool->parallel_for(N, 16, rows);
  else
    rows(0, N);
  return q;
}

}  // namespace ignis::quant
