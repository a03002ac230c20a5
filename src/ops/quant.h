// CPU kernels for weights in any supported dtype, plain or GGML block-quantized.
//
// Matrix products run on the quantized blocks directly: the activations are quantized
// to 8 bits per block (Q8_0 blocks for the 32-value formats, Q8_K for the K-quants,
// exactly as the GGUF formats intend), then integer dot products of weight blocks with
// activation blocks are scaled and summed in float. f32/f16/bf16 weights use float FMAs.
// Every kernel has a scalar reference; AVX2/FMA versions are chosen at run time.
#pragma once
#include <cstdint>
#include <optional>

#include "core/dtype.h"
#include "core/tensor.h"
#include "core/threadpool.h"

namespace ignis::quant {

// GGML block layouts (ggml-common.h), byte for byte. Halves are raw IEEE fp16 bits.
// QK = 32 values per block for the legacy formats, QK_K = 256 for the K-quants.
namespace blocks {
constexpr int QK = 32;
constexpr int QK_K = 256;
struct Q4_0 { uint16_t d; uint8_t qs[16]; };                        // q = nibble - 8
struct Q4_1 { uint16_t d, m; uint8_t qs[16]; };                     // x = d*q + m
struct Q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };         // q = (nibble | hbit<<4) - 16
struct Q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct Q8_0 { uint16_t d; int8_t qs[32]; };
struct Q8_1 { uint16_t d, s; int8_t qs[32]; };                      // s = d * sum(qs)
struct Q2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
struct Q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
struct Q4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct Q5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct Q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
struct Q8_K { float d; int8_t qs[256]; int16_t bsums[16]; };        // bsums: sums of 16 qs
static_assert(sizeof(Q4_0) == 18 && sizeof(Q4_1) == 20 && sizeof(Q5_0) == 22 && sizeof(Q5_1) == 24);
static_assert(sizeof(Q8_0) == 34 && sizeof(Q8_1) == 36 && sizeof(Q2_K) == 84 && sizeof(Q3_K) == 110);
static_assert(sizeof(Q4_K) == 144 && sizeof(Q5_K) == 176 && sizeof(Q6_K) == 210 && sizeof(Q8_K) == 292);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block (12 packed bytes).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}
// The 16 6-bit scales of a Q3_K block (stored +32), unpacked to signed values.
inline void q3k_scales(const uint8_t* packed, int8_t* out) {
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (packed[i & 7] & 0xF) : (packed[i & 7] >> 4);
    const int hi = (packed[8 + (i & 3)] >> (2 * (i / 4))) & 3;
    out[i] = int8_t((lo | (hi << 4)) - 32);
  }
}
}  // namespace blocks

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

// How a product with block-quantized weights treats its activations:
//   kQuantized: x is quantized to Q8_0 / Q8_K blocks and the dot products run on integers, as
//     the GGUF formats intend (llama.cpp's arithmetic; the fastest);
//   kF32: x stays f32 and each weight row is dequantized to f32 and dotted in float: the
//     product of the model as stored, without the activations' 8-bit rounding (what the CUDA
//     backend computes, up to its bf16 activations). Several times slower; for checking
//     near-ties against the GPU or a float reference (CpuOptions::f32_activations).
// Plain f32 / f16 / bf16 weights always run in float; the choice changes nothing for them.
enum class Activations { kQuantized, kF32 };

// y[M, N] = x[M, K] . W[N, K]^T with W of any supported type, x and y f32 (contiguous).
// Multi-threaded over the pool; quantizes x once per call. Tiled so that for M > 1 each
// weight block is unpacked once and used for several activation rows.
void matmul(ThreadPool& pool, const Tensor& W, const Tensor& x, Tensor& y, Activations act = Activations::kQuantized);
// Several products of the same input, y_i = x . W_i^T (e.g. q/k/v, or gate/up), in one
// parallel region: x is quantized once and the threads are woken once. The weights must
// have the same number of columns and the same activation type (vec_dot_type); if they
// do not, this falls back to one matmul each.
void matmul_multi(ThreadPool& pool, const Tensor* const* W, Tensor* const* y, int n, const Tensor& x,
                  Activations act = Activations::kQuantized);

// ---- Weights repacked for the CPU kernels ("x8" layouts)
//
// A decode step multiplies each weight by one activation row. With the file's layout the
// AVX2 kernel handles one weight row at a time: unpack 32 nibbles, one vpmaddubsw, a
// horizontal widening and one float FMA per block and row, plus the block's scales. The x8
// layouts interleave 8 rows so that one vpmaddubsw against 4 broadcast activation bytes
// works on 8 rows at once and the results stay in one vector lane per row (no horizontal
// sums): about half the instructions per weight (see quant_x8_avx2.cpp). Rows are grouped
// by 8 (the last group repeats the last row); within a group, block b (32 values of each
// of the 8 rows, 8 * block_bytes bytes) is:
//   Q4_0x8: d[8] (f16) | V[4]             Q4_1x8: d[8] | m[8] (f16) | V[4]
//   Q8_0x8: d[8] (f16) | G[8]
// where V[h] (32 bytes) holds qs[4h..4h+3] of rows 0..7 (low nibbles: values 4h..4h+3,
// high nibbles: values 16+4h..16+4h+3) and G[g] holds qs[4g..4g+3] of rows 0..7. The bytes
// of a group are a permutation of the 8 rows' blocks, so unpacking is exact.
//
// The packed type of t (Q4_0 -> Q4_0x8, ...), or nullopt when t has none.
std::optional<DType> packed_type(DType t);
bool is_packed(DType t);
DType unpacked_type(DType packed);  // Q4_0x8 -> Q4_0, ...
// A new tensor of the same shape holding W's rows in the x8 layout of packed_type(W).
Tensor pack_x8(const Tensor& W, ThreadPool* pool = nullptr);
// The inverse: a packed tensor back to the file's layout (bit-exact).
Tensor unpack_x8(const Tensor& P);
// The 8 rows of group g of a packed tensor, in the plain layout, into out (8 rows of
// P.row_bytes() bytes).
void unpack_x8_group(const Tensor& P, int64_t g, uint8_t* out);
// W as the CPU matmul runs it fastest on this CPU: packed when the AVX2 x8 kernels are the
// fastest path (not on CPUs with AVX-512 VNNI, whose row kernels read the plain layout) and
// IGNIS_NO_REPACK is not set; otherwise W itself.
Tensor prepare_cpu_weight(const Tensor& W, ThreadPool* pool = nullptr);

// Rows `ids` of a table of any supported type, dequantized to f32 into out[n, cols].
void get_rows(const Tensor& table, const int32_t* ids, int64_t n, float* out);

// Testing / benchmarking switch: when true, vec_dot and matmul use the scalar reference
// kernels even on CPUs with AVX2. Process-wide (relaxed atomic); default false.
void set_force_scalar(bool force);
bool force_scalar();
// True when the AVX2+FMA kernels are available on this CPU (and not forced off).
bool using_avx2();
// True when the AVX-512 VNNI decode kernels are available and not switched off (by
// set_force_scalar, set_disable_avx512 or the environment variable IGNIS_NO_AVX512=1).
bool using_avx512_vnni();
void set_disable_avx512(bool disable);

namespace detail {
// Per-block side data of activations quantized to Q8_0, laid out [block][row] so a tile
// reads its rows' values for one block contiguously: d = the block's scale as f32,
// s = d * sum(qs). (The Q4_0/Q4_1/Q5 kernels run on the unsigned nibbles and fold the
// offset or min in through s.) `ld` is the row count of the layout (>= rows + 4, padded).
struct XAux {
  const float* d = nullptr;
  const float* s = nullptr;
  int64_t ld = 0;
};
// Fills aux for M rows of Q8_0 blocks (row stride x_stride bytes, nb blocks a row).
void fill_q8_0_aux(const void* x, size_t x_stride, int64_t M, int64_t nb, float* d, float* s, int64_t ld);

// Tile kernel: y[c * ldy + r] = dot(weight row r, activation row c) for r < nr, c < nc,
// over k values. w: nr rows of `w_stride` bytes in the weight dtype; x: nc rows of
// `x_stride` bytes in vec_dot_type(weight dtype); aux: side data of these x rows (Q8_0
// activations only; aux.d[b * aux.ld + c] for row c). Sizes nr, nc in [1, 4].
using TileFn = void (*)(const void* w, size_t w_stride, const void* x, size_t x_stride, XAux aux, float* y,
                        size_t ldy, int nr, int nc, int64_t k);
// Kernels of the AVX2 build (quant_avx2.cpp); nullptr for types it does not cover.
// Only call after checking using_avx2().
TileFn avx2_tile(DType t);
float avx2_vec_dot(DType t, const void* w, const void* x, int64_t n);
// Prompt processing (many activation rows) of the 4/5-bit 32-value formats runs on packed
// panels of 8 weight rows: their unpacked values interleaved 4 bytes at a time, so one
// 32-byte load feeds vpmaddubsw for all 8 rows against 4 broadcast activation bytes (an
// outer product: partial sums stay in int16 lanes, one per row, no horizontal sums), and
// their scales as f32. A panel is packed once per call and reused for every activation row.
struct PanelKernel {
  size_t (*bytes)(int64_t k);
  // Packs rows [0, rows) (rows <= 8; missing rows repeat the last one) of k values.
  void (*pack)(const void* w, size_t w_stride, int rows, int64_t k, void* panel);
  // y[c * ldy + r] for r < rows, c < nc (nc <= 4); x, aux as for TileFn.
  void (*compute)(const void* panel, const void* x, size_t x_stride, XAux aux, float* y, size_t ldy, int rows,
                  int nc, int64_t k);
  int rows = 8;  // weight rows per panel
};
const PanelKernel* avx2_panel(DType t);  // nullptr when the type has none; Q4_0x8/Q4_1x8 pack from x8
// Decode kernel of an x8 layout (quant_x8_avx2.cpp): y[c * ldy + r] = dot(row r of the
// group at `group`, activation row c) for r < rows (<= 8), c < nc (<= 4); x and aux as for
// TileFn (Q8_0 activations). nullptr for plain types.
using X8Fn = void (*)(const void* group, const void* x, size_t x_stride, XAux aux, float* y, size_t ldy, int rows,
                      int nc, int64_t k);
X8Fn avx2_x8(DType packed);
// Quantizes x to Q8_0 / Q8_K with AVX2 (bit-identical to quantize_row).
void avx2_quantize_row(DType t, const float* src, void* dst, int64_t n);

// Decode-sized products (a few activation rows) on AVX-512 VNNI (quant_avx512.cpp): the
// activation row is quantized to Q8_0 and laid out for vpdpbusd once ("prepared"), then
// rows(w, w_stride, nr, prepared, k, y) computes y[r] = dot(weight row r, x) for r < nr.
struct RowKernel {
  size_t (*bytes)(int64_t k);
  void (*prepare)(const float* x, int64_t k, void* prepared);
  void (*rows)(const void* w, size_t w_stride, int nr, const void* prepared, int64_t k, float* y);
};
// nullptr for types it does not cover. Only call after checking using_avx512_vnni().
const RowKernel* avx512_rows(DType t);
// Panels of 16 rows for prompt processing with vpdpbusd (Q4_0, Q4_1, Q8_0); same contract
// as avx2_panel with rows = 16.
const PanelKernel* avx512_panel(DType t);
}  // namespace detail

}  // namespace ignis::quant
