// CPU kernels for weights in any supported dtype, plain or GGML block-quantized.
//
// Matrix products run on the quantized blocks directly: the activations are quantized
// to 8 bits per block (Q8_0 blocks for the 32-value formats, Q8_K for the K-quants,
// exactly as the GGUF formats intend), then integer dot products of weight blocks with
// activation blocks are scaled and summed in float. f32/f16/bf16 weights use float FMAs.
// Every kernel has a scalar reference; AVX2/FMA versions are chosen at run time.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"
#include "core/threadpool.h"

namespace ignis::quant {

// Reference (scalar) conversions, valid for every dtype in DType except I32/I8.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
// Quantizes n floats into blocks of type t (round to nearest; for the K-quants a simple
// but valid search of scales). Used for activations (Q8_0, Q8_K) and by tests / converters.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// The dtype the activations are quantized to for a product with weights of type t
// (Q8_0 or Q8_K), or F32 when the product runs in float (f32/f16/bf16 weights).
DType vec_dot_type(DType weight_type);

// Dot product of one weight row (type t, n values) with one activation row already
// converted to vec_dot_type(t). Reference implementation.
float vec_dot_ref(DType t, const void* w, const void* x, int64_t n);
// Same, through the fastest implementation this CPU supports.
float vec_dot(DType t, const void* w, const void* x, int64_t n);

// y[M, N] = x[M, K] . W[N, K]^T with W of any supported type, x and y f32 (contiguous).
// Multi-threaded over the pool; quantizes x once per call. Tiled so that for M > 1 each
// weight block is unpacked once and used for several activation rows.
void matmul(ThreadPool& pool, const Tensor& W, const Tensor& x, Tensor& y);

// Rows `ids` of a table of any supported type, dequantized to f32 into out[n, cols].
void get_rows(const Tensor& table, const int32_t* ids, int64_t n, float* out);

}  // namespace ignis::quant
