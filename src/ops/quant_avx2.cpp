// AVX2 + FMA kernels for quant.h (compiled with -mavx2 -mfma -mf16c; only called after
// the run-time check in using_avx2()).
#include <immintrin.h>

#include "ops/quant.h"

namespace ignis::quant::detail {

TileFn avx2_tile(DType) { return nullptr; }
bool avx2_has_vec_dot(DType) { return false; }
float avx2_vec_dot(DType t, const void* w, const void* x, int64_t n) { return vec_dot_ref(t, w, x, n); }
void avx2_quantize_row(DType t, const float* src, void* dst, int64_t n) { quantize_row(t, src, dst, n); }

}  // namespace ignis::quant::detail
