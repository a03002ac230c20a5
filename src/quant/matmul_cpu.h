// CPU products with QuantLinear weights: y[M, N] = x[M, K] W^T, W dequantized on the fly.
//
// qmatmul_ref: the scalar reference (W[n, k] through QuantLinear::weight, double accumulation).
// qmatmul: rows of W in parallel on the pool; each thread dequantizes one row of W into a float
//   buffer (once per call, whatever M), then takes its dot product with every row of x (AVX2/FMA
//   when the CPU has it, quant::using_avx2(); scalar otherwise). Memory traffic: the packed
//   weights once (N*K bytes int8, N*K/2 int4) + scales, x from cache.
#pragma once
#include <cstdint>

#include "core/threadpool.h"
#include "quant/formats.h"

namespace ignis::quant {

void qmatmul_ref(const QuantLinear& W, const float* x, int64_t M, float* y);
void qmatmul(ThreadPool& pool, const QuantLinear& W, const float* x, int64_t M, float* y);

namespace detail {
// Row n of W dequantized into out[K] (fast path of dequantize_row: contiguous groups unrolled).
void dequant_row_fast(const QuantLinear& W, int64_t n, float* out);
float dot_scalar(const float* a, const float* b, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);  // matmul_avx2.cpp
}  // namespace detail

}  // namespace ignis::quant
