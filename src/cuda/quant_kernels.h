// Host entry points of the weight-only quantized kernels (gemv_quant.cu): fused
// dequantize-and-multiply GEMV for decode (B = 1..8 rows of bf16 activations, fp32 accumulation)
// and dequantize-to-bf16 for prefill (then the cuBLASLt GEMM of gemm.h).
//
// Weight formats on the device (QWeight):
//   kInt8  w: int8 [N, K] row-major; scales [N] (f32, bf16 or f16); W[n,k] = s[n] * w[n,k].
//          K % 32 == 0.
//   kInt4  w: uint8 [N, K/2], quant/formats.h's layout (value k of a row in nibble k % 8 of the
//          row's uint32 word k / 8, low nibble first); scales [N, K/group] (bf16 or f16, f32 also
//          accepted); zeros: uint8 [N, K/group] in 0..15, or nullptr for symmetric (zero 8);
//          W[n,k] = s[n, k/group] * (q - z). group 32, 64 or 128; K % group == 0. Scales and zeros
//          are laid out by qmeta_index (tiles of 16 rows, not row-major), so that one bulk copy
//          brings a 16-row tile's entries for a run of groups (gemv_bulk.cu). Act-order layers
//          must be made contiguous first (quant::contiguous_groups; x then gathered by perm, see
//          gather_columns below).
//   kQ8_0, kQ4_0, kQ4_1, kQ4_K, kQ5_K, kQ6_K: GGUF blocks as in src/ops/quant.h, rows of K/32
//          (K-quants: K/256) blocks read in place; scales/zeros unused. K % 32 == 0 (K-quants:
//          K % 256 == 0). Q8_0 / Q4_0 / Q6_K blocks are only 2-byte aligned (the kernels handle it).
// Every pointer must be 16-byte aligned (cudaMalloc'd buffers are).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "cuda/common.h"
#include "cuda/kernels.h"

namespace ignis::quant {
struct QuantLinear;
}

namespace ignis::cuda {

enum class QType : uint8_t { kInt8, kInt4, kQ8_0, kQ4_0, kQ4_K, kQ4_1, kQ5_K, kQ6_K };

// The QType of a GGUF block dtype the kernels run in place (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K);
// false for any other dtype (it must then be dequantized).
bool gguf_qtype(DType t, QType& out);

// Device index of the int4 scale / zero point of (row, group gi), G = K / group: tiles of 16 rows,
// group-major inside a tile, and in a tile's group the rows in the order 0, 8, 1, 9, ..., 7, 15, so
// that an mma lane's rows g and g + 8 are neighbours (one 4-byte load for both scales).
__host__ __device__ inline size_t qmeta_index(int row, int gi, int G) {
  return (size_t(row >> 4) * size_t(G) + size_t(gi)) * 16 + size_t((row & 7) << 1) + size_t((row >> 3) & 1);
}
// Entries of that layout for N rows (N rounded up to a tile; the padding rows hold scale 0).
inline size_t qmeta_count(int N, int G) { return size_t((N + 15) / 16) * 16 * size_t(G); }

struct QWeight {
  QType type = QType::kInt4;
  const void* w = nullptr;
  const void* scales = nullptr;     // kInt8 / kInt4
  DType scale_dtype = DType::F16;   // F32, BF16 or F16
  const uint8_t* zeros = nullptr;   // kInt4 asymmetric, else nullptr
  // kInt4 with mins instead of zero points (GGUF Q4_K repacked, see repack_q4_k): W = s q - m per
  // (row, group), m in the scale dtype and the qmeta_index layout; groups of 32 / 64, no zeros;
  // tensor-core kernel only (K % 128 == 0).
  const void* mins = nullptr;
  int group = 128;                  // kInt4
  int N = 0, K = 0;
  // kInt4 nibbles in the tensor-core GEMV's tile order instead of row-major (int4_tile_index; set by
  // tile_int4 once a weight is complete): N % 16 == 0, K % 128 == 0; read by the tensor-core GEMV and
  // dequantize_bf16 only.
  bool tiled = false;
};

// Byte offset of the 16 bytes (32 values from k = 32 chunk, words interleaved as below) of `row` in the tiled int4 layout: per
// tile of 16 rows and 128-k step one contiguous KB, whose first 512 bytes hold rows 0..7 and the next
// 512 rows 8..15, each half lane-major: lane (g, c) = 4 g + c holds row g (or g + 8) at k = 128 s + 32 c,
// exactly what lane (g, c) of the GEMV's warp loads for its mma fragments, so each of its two 16-byte
// loads per step reads 512 contiguous bytes.
__host__ __device__ inline size_t int4_tile_index(int row, int chunk, int K) {
  const int step = chunk >> 2, c = chunk & 3, r = row & 15;
  return ((size_t(row >> 4) * size_t(K / 128) + size_t(step)) * 2 + size_t(r >> 3)) * 512 + size_t(((r & 7) << 2) | c) * 16;
}
// Inside each 32-bit word of the tiled layout the 8 nibbles are interleaved: nibble j (bits 4j) holds
// k 2j of the word's 8 (j < 4), or k 2 (j - 4) + 1 (j >= 4), so the pairs (nibble j, nibble j + 4) the
// GEMV turns into bf16 pairs are consecutive k, the order of the activations in memory (its B
// fragments are then the activation words themselves, no byte permutes). Row-major words hold k 0..7
// in nibbles 0..7.
__host__ __device__ inline uint32_t int4_interleave_word(uint32_t w) {
  uint32_t r = 0;
  for (int i = 0; i < 8; ++i) r |= ((w >> (4 * i)) & 15u) << (4 * ((i & 1) ? 4 + (i >> 1) : (i >> 1)));
  return r;
}
__host__ __device__ inline uint32_t int4_deinterleave_word(uint32_t w) {
  uint32_t r = 0;
  for (int j = 0; j < 8; ++j) r |= ((w >> (4 * j)) & 15u) << (4 * (j < 4 ? 2 * j : 2 * (j - 4) + 1));
  return r;
}
// Rewrites a complete row-major int4 weight into the tiled layout in place (through a device scratch of
// at least one 16-row tile, 8 K bytes; larger scratch, fewer copies) and sets W.tiled. Needs N % 16 == 0
// and K % 128 == 0.
void tile_int4(QWeight& W, void* scratch, size_t scratch_bytes, cudaStream_t stream);

// y[B, N] = x[B, K] W^T, x bf16 (contiguous), with the epilogues of kernels.h: kStore (bf16 out),
// kStoreF32, kAddF32 (out += y, the residual stream), kSwiGLU (rows in gemv.cu's fused gate/up
// order: blocks of 16 rows, 8 gate then the 8 matching up rows; out[b, j] = silu(gate j) * up j,
// N/2 columns). ldo: row stride of out in elements (0: N, or N/2 for kSwiGLU).
// Which int4 / int8 GEMV kernel runs (other formats have one): kAuto picks (see gemv_quant).
enum class QGemvImpl { kAuto, kCudaCore, kTensorCore, kBulk };

struct QGemvArgs {
  QWeight W;
  QGemvImpl impl = QGemvImpl::kAuto;
  const void* x = nullptr;
  int B = 1;
  GemvEpilogue epi = GemvEpilogue::kStore;
  void* out = nullptr;
  int ldo = 0;
  // Optional split of 16-row tiles across blocks (the bulk-copy and int4 tensor-core kernels), as in GemvArgs: a workspace
  // of ws_floats floats and n_counters zeroed counters (left zeroed).
  float* ws = nullptr;
  size_t ws_floats = 0;
  unsigned* counters = nullptr;
  int n_counters = 0;
  // The int4 tensor-core kernel splits K across this many blocks per tile given the workspace
  // (0: chosen by shape; tests force a split).
  int splits = 0;
  // Batch 1, tiled int4 with groups of 128 k or more (H1), or of 32 / 64 with zero points or mins (G1): the fp16
  // forms of the tensor-core GEMV (gemv_int4_tc.cu, "batch 1 on fp16"): -1 as IGNIS_INT4_H1 (H1, default on) /
  // IGNIS_INT4_G1 (G1, default on) say, 0 off, 1 on where it applies.
  int h1 = -1;
  // The folded RMSNorm, as GemvArgs' rms_ss / next_* (kernels.h; bf16 next_h), on the kernels that batch 1
  // takes for int8 / int4 (the CUDA-core and int4 tensor-core kernels: quant_fold_ok).
  const float* rms_ss = nullptr;
  int rms_parts = 0;  // partials per batch row in rms_ss (required with rms_ss)
  float norm_eps = 0.f;
  const float* next_norm_w = nullptr;
  void* next_h = nullptr;
  float* next_ss = nullptr;
};
// Returns the number of partial sums per batch row it wrote to next_ss (the folded norm's producer), else 0.
int gemv_quant(const QGemvArgs& a, cudaStream_t stream);
// Whether the decoder should fold the RMSNorm into W's GEMV at batch B: int4 at batch 1 on a kernel that
// folds (not when IGNIS_QGEMV forces the bulk-copy one). int8 folds too (gemv_quant) but measured slower.
bool quant_fold_ok(const QWeight& W, int B);
// The bulk-copy kernels (gemv_bulk.cu, sm_90+): int4 with K % 32 == 0 (any group), int8 with
// K % 64 == 0. ws / counters: as GemvArgs' (split of tiles across blocks); without them each block
// takes whole tiles.
bool quant_bulk_supported(const QWeight& W);
void gemv_quant_bulk(const QGemvArgs& a, int ldo, cudaStream_t stream);
// The tensor-core int4 kernel (gemv_int4_tc.cu): groups of a multiple of 128, K % 128 == 0.
bool int4_tc_supported(const QWeight& W);
void gemv_int4_tc(const QGemvArgs& a, int ldo, cudaStream_t stream);
// The tensor-core int8 kernel (gemv_int8_tc.cu, fp16 mma): K % 64 == 0.
bool int8_tc_supported(const QWeight& W);
void gemv_int8_tc(const QGemvArgs& a, int ldo, cudaStream_t stream);
// Random GGUF blocks for synthetic models (benchmarks): random value bytes and sub-scales, block
// scales (and mins) such that the weights span about +-range. W.w must hold W.N rows of blocks.
void fill_random_blocks(const QWeight& W, uint64_t seed, float range, cudaStream_t stream);
// Scale dtype code of the kernels: 0 f32, 1 bf16, 2 f16 (throws for others).
int scale_code(DType t);

// GGUF Q4_0 rows (`rows` rows of K/32 18-byte blocks at `blocks`, device memory: source rows r0 ..
// r0 + rows - 1) written into dst, an int4 group-32 symmetric weight with f16 scales, at row
// row_offset + r (interleave8: row_offset + swiglu_row_of_gate(r), the fused gate/up layout). Exact:
// both formats hold d (q - 8), so Q4_0 layers run on the int4 kernels.
void repack_q4_0(const void* blocks, int rows, int64_t r0, int64_t row_offset, bool interleave8, const QWeight& dst,
                 cudaStream_t stream);

// GGUF Q4_K rows (256-value blocks: f16 d, f16 dmin, 12 bytes of 6-bit scales / mins, 128 bytes of
// nibbles) written into dst, an int4 group-32 weight with f16 scales and mins (dst.mins): per 32
// values s = d * sc, m = dmin * mn rounded to f16 (relative error <= 2^-11; the values are
// otherwise the block's), rows placed as in repack_q4_0. 20 bytes per 32 values against Q4_K's 18.
void repack_q4_k(const void* blocks, int rows, int64_t r0, int64_t row_offset, bool interleave8, const QWeight& dst,
                 cudaStream_t stream);

// Rows [row0, row0 + rows) of W dequantized to bf16: out[rows, K] (row stride K). For prefill:
// dequantize a tile of rows into a scratch buffer, then LtGemm::matmul on it (see
// linear_prefill_quant in gemv_quant.cu's header comment).
void dequantize_bf16(const QWeight& W, int row0, int rows, void* out, cudaStream_t stream);

class LtGemm;
// y[M, N] (+)= x[M, K] W^T for prefill: tiles of `tile_rows` rows of W are dequantized into
// `scratch` (bf16, tile_rows * K elements) and multiplied with cuBLASLt (bf16 in, fp32 compute,
// out_dtype BF16 or F32, beta 0 or 1 for the residual add). tile_rows: a multiple of 16 (0: all N).
// ldy: row stride of y in elements (0: N), e.g. to write q, k and v of separate weights side by side.
void linear_prefill_quant(LtGemm& gemm, const QWeight& W, const void* x, int M, DType out_dtype, void* y, float beta,
                          void* scratch, int tile_rows, cudaStream_t stream, int ldy = 0);

// out[b, j] = x[b, perm[j]] for b < B, j < K (bf16): the input of an act-order layer made
// contiguous by quant::contiguous_groups.
void gather_columns(const void* x, const int32_t* perm, int B, int K, void* out, cudaStream_t stream);

// A QuantLinear (quant/formats.h) uploaded for these kernels: owns its device buffers (counted
// DeviceBuffers). Act-order layers are reordered (contiguous_groups) and keep their perm on the
// device (perm.get() == nullptr otherwise): run gather_columns on x first.
struct DeviceQuantLinear {
  QWeight view;
  DeviceBuffer w, scales, zeros, perm;
};
// Scales are stored in the layer's scale_dtype (the values are exact in it).
void upload_quant_linear(const quant::QuantLinear& q, DeviceQuantLinear& out);
// Two layers [gate; up] fused in gemv.cu's SwiGLU row order (rows 16t..16t+7 = gate 8t..8t+7,
// rows 16t+8..16t+15 = up 8t..8t+7). Both must have the same format, K, group; N % 8 == 0.
quant::QuantLinear fuse_gate_up(const quant::QuantLinear& gate, const quant::QuantLinear& up);

}  // namespace ignis::cuda
