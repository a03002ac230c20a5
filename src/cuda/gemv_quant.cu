// Weight-only quantized GEMV for decode, y[B, N] = x[B, K] W^T with W stored as int8 per channel,
// int4 group-wise (GPTQ-style, optional zero points) or GGUF Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_K / Q6_K
// blocks, x bf16, fp32 accumulation; plus dequantize-to-bf16 for prefill (then cuBLASLt). Formats:
// quant_kernels.h.
//
// Decode is memory-bound: the only goal is to stream the packed weights at the memory bandwidth.
// Bytes moved per call: the weights (N*K for int8, N*K/2 for int4; bytes per value 34/32 Q8_0,
// 18/32 Q4_0, 20/32 Q4_1, 144/256 Q4_K, 176/256 Q5_K, 210/256 Q6_K) + scales/zeros (int8 / int4: 4
// bytes per row or per group) + x (B*K*2, from L1/L2) + the outputs.
//
// Launch shape (all GEMV kernels): blocks of 128 threads = 4 warps; each warp owns a PAIR of rows
// (rows 2p and 2p+1, or for the SwiGLU epilogue the gate row and its up row, 8 rows apart in the
// fused layout of kernels.h) and streams both rows from start to end; grid = ceil(pairs / 4).
// Two rows per warp halve the activation loads (each x value is used for both rows).
//
// int8 / int4 (gemv_int_kernel): a lane loads 16-byte chunks of each row (16 int8 or 32 int4
// values), chunk c = lane + 32 i, so one load instruction of the warp covers 512 contiguous bytes
// of a row; U = 4 chunks per row (8 x 16 B per lane, 4 KB per warp) are loaded before any is
// used (a double-buffered variant, the next U chunks and their scales loaded while these are
// computed, measured slower on an H200: int8 322.8 vs 341.6 tok/s, int4 213 vs 295).
// Integers become floats without conversion instructions: the magic-number trick
// float(0x4B000000 | q) = 2^23 + q exactly, so q - z = that - (2^23 + z), one FADD (int8: the
// signed bytes are flipped to q + 128 with one XOR and placed by one PRMT). A 32-value int4
// chunk lies inside one group (groups are multiples of 32), so it is summed unscaled and
// multiplied by its group's scale once; int8 applies the row scale at the end.
//
// GGUF (gemv_gguf32_kernel, gemv_q4k/q5k/q6k_kernel): Q8_0 / Q4_0 blocks are 34 / 18 bytes, only
// 2-byte aligned, so a lane takes one whole block with 2-byte loads (the warp still reads one
// contiguous span, every fetched sector is used); Q4_1 (20 bytes) the same with 4-byte loads. The
// K-quants have 256-value blocks shared by 8 lanes (a warp streams 4 consecutive blocks of each of
// its 2 rows per step): Q4_K (144 bytes) and Q5_K (176) are 16-byte aligned when the row is, each
// lane takes 16-byte loads of its 32 values' bytes; Q6_K (210) is only 2-byte aligned, 2-byte loads.
// Q5_K / Q6_K issue the loads of the next block before using the current one.
//
// Partial sums: each lane accumulates its chunks for (2 rows) x (B batch rows), then warp_sum;
// lane 0 runs the epilogue. Shared memory is not used, so there are no bank conflicts.
// With PDL the first weight loads are issued before griddepcontrol.wait (weights never depend on
// the previous kernel; x does).
//
// Known limit: at B = 8 the CUDA-core FMAs (8 per weight) rather than memory bound the int4 kernel;
// a tensor-core variant (dequantized A fragments into mma.m16n8k16, like gemv.cu's) is the next step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "cuda/common.h"
#include "cuda/gemv_common.cuh"
#include "cuda/gemm.h"
#include "cuda/quant_kernels.h"
#include "quant/formats.h"

namespace ignis::cuda {
namespace {

constexpr int kWarps = 4;
constexpr float kMagic = 8388608.f;  // 2^23

__device__ __forceinline__ uint32_t ld_u16(const uint8_t* p) { return __ldg(reinterpret_cast<const uint16_t*>(p)); }
__device__ __forceinline__ float bf_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
__device__ __forceinline__ float half_bits(uint32_t h) { return __half2float(__ushort_as_half(uint16_t(h))); }

// 8 consecutive bf16 of x (16-byte aligned) as floats.
__device__ __forceinline__ void load_x8(const bf16* p, float (&f)[8]) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
  f[0] = bf_lo(v.x), f[1] = bf_hi(v.x), f[2] = bf_lo(v.y), f[3] = bf_hi(v.y);
  f[4] = bf_lo(v.z), f[5] = bf_hi(v.z), f[6] = bf_lo(v.w), f[7] = bf_hi(v.w);
}
// 4 consecutive bf16 of x (8-byte aligned) as floats.
__device__ __forceinline__ void load_x4(const bf16* p, float (&f)[4]) {
  const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
  f[0] = bf_lo(v.x), f[1] = bf_hi(v.x), f[2] = bf_lo(v.y), f[3] = bf_hi(v.y);
}


// The warp's two rows (see the header comment); returns false when the warp has none.
template <int EPI>
__device__ __forceinline__ bool row_pair(int N, int (&rows)[2], bool& second_valid) {
  const int p = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if constexpr (EPI == int(GemvEpilogue::kSwiGLU)) {
    if (p >= N / 2) return false;
    rows[0] = int(swiglu_row_of_gate(p));
    rows[1] = rows[0] + 8;
    second_valid = true;
  } else {
    if (2 * p >= N) return false;
    rows[0] = 2 * p;
    second_valid = 2 * p + 1 < N;
    rows[1] = second_valid ? 2 * p + 1 : 2 * p;  // a duplicate row, computed but not stored
  }
  return true;
}

// Warp-reduces acc and writes the epilogue (lane 0). The folded norm (gemv_int_kernel; FIN / FOUT
// need every thread of the block here, has = whether this warp has rows): FIN multiplies the sums by
// 1 / rms, FOUT (kAddF32) also writes bf16(x * next_w) and the block's sums of the new x^2.
template <int BMAX, int EPI, bool FIN = false, bool FOUT = false>
__device__ __forceinline__ void finish(float (&acc)[2][BMAX], const int (&rows)[2], bool second_valid, int B,
                                       void* out, int ldo, bool has = true, const FoldArgs& f = FoldArgs{},
                                       int K = 0, const float4* s_pre = nullptr) {
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * kWarps + (threadIdx.x >> 5);  // SwiGLU output column
  __shared__ float s_inv[8];
  if constexpr (FIN) fold_inv_rms(f, B, K, s_pre, s_inv);
  [[maybe_unused]] float sq[BMAX];
#pragma unroll
  for (int b = 0; b < BMAX; ++b) {
    if constexpr (FOUT) sq[b] = 0.f;
    if (b >= B) break;
    float v0 = warp_sum(acc[0][b]), v1 = warp_sum(acc[1][b]);
    if constexpr (FIN) v0 *= s_inv[b], v1 *= s_inv[b];
    if (lane != 0 || !has) continue;
    if constexpr (EPI == int(GemvEpilogue::kSwiGLU)) {
      static_cast<bf16*>(out)[size_t(b) * ldo + j] = __float2bfloat16(silu(v0) * v1);
    } else {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        if (r == 1 && !second_valid) break;
        const float v = r ? v1 : v0;
        const size_t o = size_t(b) * ldo + rows[r];
        if constexpr (EPI == int(GemvEpilogue::kStore)) static_cast<bf16*>(out)[o] = __float2bfloat16(v);
        if constexpr (EPI == int(GemvEpilogue::kStoreF32)) static_cast<float*>(out)[o] = v;
        if constexpr (EPI == int(GemvEpilogue::kAddF32)) {
          float* p = static_cast<float*>(out) + o;
          const float nv = *p + v;
          *p = nv;
          if constexpr (FOUT) {
            static_cast<bf16*>(f.next_h)[size_t(b) * ldo + rows[r]] = __float2bfloat16(nv * f.next_w[rows[r]]);
            sq[b] = fmaf(nv, nv, sq[b]);
          }
        }
      }
    }
  }
  if constexpr (FOUT) fold_block_ss(f, B, sq);
}

// ---- int8 per channel / int4 group-wise ------------------------------------------------------------

// FIN / FOUT: the folded norm (finish); then warps without rows stay for the block's reductions.
template <bool INT4, int BMAX, int EPI, bool FIN = false, bool FOUT = false>
__global__ void __launch_bounds__(kWarps * 32) gemv_int_kernel(QWeight W, int sdt, const bf16* __restrict__ x, int B,
                                                               void* out, int ldo, FoldArgs f) {
  static_assert(kWarps * 32 == kFoldThreads, "the fold helpers assume 128 threads");
  constexpr int U = 4;                       // 16-byte chunks per row loaded ahead
  constexpr int kVals = INT4 ? 32 : 16;      // values per chunk
  const int lane = threadIdx.x & 31;
  const int K = W.K, G = INT4 ? K / W.group : 1;
  int rows[2] = {0, 0};
  bool second_valid = false;
  const bool has = row_pair<EPI>(W.N, rows, second_valid);
  if (!has && !FIN && !FOUT) return;
  const size_t row_bytes = INT4 ? size_t(K) / 2 : size_t(K);
  const uint8_t* wr[2] = {static_cast<const uint8_t*>(W.w) + rows[0] * row_bytes,
                          static_cast<const uint8_t*>(W.w) + rows[1] * row_bytes};
  const int nchunks = has ? K / kVals : 0;

  uint4 wv[U][2];
  auto load = [&](int base) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + 32 * u + lane;
#pragma unroll
      for (int r = 0; r < 2; ++r) wv[u][r] = c < nchunks ? ld_w16(wr[r] + size_t(c) * 16) : make_uint4(0, 0, 0, 0);
    }
  };
  load(0);
  pdl_wait();
  __shared__ float4 s_pre[FIN ? 2 * kFoldThreads : 1];
  if constexpr (FIN) fold_prefetch(f, B, s_pre);

  float acc[2][BMAX];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.f;

  for (int base = 0; base < nchunks; base += 32 * U) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + 32 * u + lane;
      if (c >= nchunks) break;
      const int k0 = c * kVals;
      float part[2][BMAX];
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int b = 0; b < BMAX; ++b) part[r][b] = 0.f;
      float zf[2] = {kMagic + 128.f, kMagic + 128.f};  // int8: q + 128 - 128
      if constexpr (INT4) {
        const int g = k0 / W.group;
#pragma unroll
        for (int r = 0; r < 2; ++r) zf[r] = kMagic + (W.zeros ? float(__ldg(W.zeros + qmeta_index(rows[r], g, G))) : 8.f);
      }
      // 8 values at a time: int4 one word (8 nibbles), int8 two words (4 bytes each); both rows'
      // values are unpacked first, then each batch row's 8 activations are loaded and used.
#pragma unroll
      for (int h = 0; h < kVals / 8; ++h) {
        float q[2][8];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          if constexpr (INT4) {
            const uint32_t w = word_of4(wv[u][r], h);
#pragma unroll
            for (int e = 0; e < 8; ++e) q[r][e] = __uint_as_float(0x4B000000u | ((w >> (4 * e)) & 0xFu)) - zf[r];
          } else {
            const uint32_t w0 = word_of4(wv[u][r], 2 * h) ^ 0x80808080u, w1 = word_of4(wv[u][r], 2 * h + 1) ^ 0x80808080u;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              q[r][e] = __uint_as_float(__byte_perm(w0, 0x4B000000u, 0x7540u | e)) - zf[r];
              q[r][4 + e] = __uint_as_float(__byte_perm(w1, 0x4B000000u, 0x7540u | e)) - zf[r];
            }
          }
        }
#pragma unroll
        for (int b = 0; b < BMAX; ++b) {
          if (b >= B) break;
          float xf[8];
          load_x8(x + size_t(b) * K + k0 + 8 * h, xf);
#pragma unroll
          for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) part[r][b] = fmaf(q[r][e], xf[e], part[r][b]);
        }
      }
      if constexpr (INT4) {
        const int g = k0 / W.group;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float s = scale_at(W.scales, sdt, qmeta_index(rows[r], g, G));
#pragma unroll
          for (int b = 0; b < BMAX; ++b) acc[r][b] = fmaf(s, part[r][b], acc[r][b]);
        }
      } else {
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
          for (int b = 0; b < BMAX; ++b) acc[r][b] += part[r][b];
      }
    }
    if (base + 32 * U < nchunks) load(base + 32 * U);
  }
  if constexpr (!INT4) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float s = has ? scale_at(W.scales, sdt, size_t(rows[r])) : 0.f;
#pragma unroll
      for (int b = 0; b < BMAX; ++b) acc[r][b] *= s;
    }
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  finish<BMAX, EPI, FIN, FOUT>(acc, rows, second_valid, B, out, ldo, has, f, K, s_pre);
}

// ---- GGUF Q8_0 / Q4_0 / Q4_1: one 32-value block per lane ------------------------------------------

// F: 0 = Q8_0 (34 bytes: f16 d, 32 int8), 1 = Q4_0 (18 bytes: f16 d, 16 bytes of nibbles, q - 8),
// 2 = Q4_1 (20 bytes: f16 d, f16 m, 16 bytes of nibbles; x = d q + m). Q8_0 / Q4_0 blocks are only
// 2-byte aligned (2-byte loads); Q4_1 blocks are 4-byte aligned (20 = 5 words: 4-byte loads).
// Q4_1's min enters once per block and batch row: d * sum(q x) + m * sum(x).
template <int F, int BMAX, int EPI>
__global__ void __launch_bounds__(kWarps * 32) gemv_gguf32_kernel(QWeight W, const bf16* __restrict__ x, int B,
                                                                  void* out, int ldo) {
  constexpr bool Q8 = F == 0, Q41 = F == 2;
  constexpr int U = 2;                                  // blocks per row loaded ahead
  constexpr int kBytes = Q8 ? 34 : Q41 ? 20 : 18;       // block size
  constexpr int kHdr = Q41 ? 4 : 2;                     // bytes before the values
  constexpr int kWords = Q8 ? 8 : 4;
  constexpr float kZero = Q8 ? kMagic + 128.f : Q41 ? kMagic : kMagic + 8.f;  // magic + the value offset
  const int lane = threadIdx.x & 31;
  const int K = W.K, nblocks = K / 32;
  int rows[2];
  bool second_valid = false;
  if (!row_pair<EPI>(W.N, rows, second_valid)) return;
  const uint8_t* wr[2] = {static_cast<const uint8_t*>(W.w) + size_t(rows[0]) * nblocks * kBytes,
                          static_cast<const uint8_t*>(W.w) + size_t(rows[1]) * nblocks * kBytes};
  uint32_t qw[U][2][kWords];
  float d[U][2], m[U][2];
  auto load = [&](int base) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + 32 * u + lane;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint8_t* p = wr[r] + size_t(c < nblocks ? c : 0) * kBytes;
        if constexpr (Q41) {
          const uint32_t h = __ldg(reinterpret_cast<const uint32_t*>(p));
          d[u][r] = half_bits(h & 0xFFFFu), m[u][r] = half_bits(h >> 16);
#pragma unroll
          for (int i = 0; i < kWords; ++i) qw[u][r][i] = __ldg(reinterpret_cast<const uint32_t*>(p + kHdr + 4 * i));
        } else {
          d[u][r] = half_bits(ld_u16(p)), m[u][r] = 0.f;
#pragma unroll
          for (int i = 0; i < kWords; ++i) qw[u][r][i] = ld_u16(p + kHdr + 4 * i) | (ld_u16(p + kHdr + 2 + 4 * i) << 16);
        }
      }
    }
  };
  load(0);
  pdl_wait();
  float acc[2][BMAX];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.f;

  for (int base = 0; base < nblocks; base += 32 * U) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + 32 * u + lane;
      if (c >= nblocks) break;
      const int k0 = c * 32;
      float part[2][BMAX], sx[BMAX];
#pragma unroll
      for (int b = 0; b < BMAX; ++b) {
        sx[b] = 0.f;
#pragma unroll
        for (int r = 0; r < 2; ++r) part[r][b] = 0.f;
      }
      // 4 steps of 8 values. Q8_0: values 8s..8s+7 = words 2s, 2s+1. Q4_0 / Q4_1: word s holds
      // bytes 4s..4s+3, whose low nibbles are values 4s..4s+3 and high nibbles values 16+4s..16+4s+3.
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        float q[2][8];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          if constexpr (Q8) {
            const uint32_t w0 = qw[u][r][2 * s] ^ 0x80808080u, w1 = qw[u][r][2 * s + 1] ^ 0x80808080u;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              q[r][e] = __uint_as_float(__byte_perm(w0, 0x4B000000u, 0x7540u | e)) - kZero;
              q[r][4 + e] = __uint_as_float(__byte_perm(w1, 0x4B000000u, 0x7540u | e)) - kZero;
            }
          } else {
            const uint32_t w = qw[u][r][s];
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              q[r][e] = __uint_as_float(0x4B000000u | ((w >> (8 * e)) & 0xFu)) - kZero;
              q[r][4 + e] = __uint_as_float(0x4B000000u | ((w >> (8 * e + 4)) & 0xFu)) - kZero;
            }
          }
        }
#pragma unroll
        for (int b = 0; b < BMAX; ++b) {
          if (b >= B) break;
          float xf[8];
          if constexpr (Q8) {
            load_x8(x + size_t(b) * K + k0 + 8 * s, xf);
          } else {
            float lo[4], hi[4];
            load_x4(x + size_t(b) * K + k0 + 4 * s, lo);
            load_x4(x + size_t(b) * K + k0 + 16 + 4 * s, hi);
#pragma unroll
            for (int e = 0; e < 4; ++e) xf[e] = lo[e], xf[4 + e] = hi[e];
          }
          if constexpr (Q41) {
#pragma unroll
            for (int e = 0; e < 8; ++e) sx[b] += xf[e];
          }
#pragma unroll
          for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) part[r][b] = fmaf(q[r][e], xf[e], part[r][b]);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int b = 0; b < BMAX; ++b) {
          acc[r][b] = fmaf(d[u][r], part[r][b], acc[r][b]);
          if constexpr (Q41) acc[r][b] = fmaf(m[u][r], sx[b], acc[r][b]);
        }
    }
    if (base + 32 * U < nblocks) load(base + 32 * U);
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  finish<BMAX, EPI>(acc, rows, second_valid, B, out, ldo);
}

// ---- GGUF Q4_K: 8 lanes per 256-value block ---------------------------------------------------------

// 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes (ops/quant.h get_scale_min_k4).
__device__ __forceinline__ void q4k_scale_min(const uint32_t (&sw)[3], int j, float& sc, float& mn) {
  auto byte = [&](int i) { return int((sw[i >> 2] >> (8 * (i & 3))) & 0xFFu); };
  if (j < 4) {
    sc = float(byte(j) & 63);
    mn = float(byte(j + 4) & 63);
  } else {
    sc = float((byte(j + 4) & 0xF) | ((byte(j - 4) >> 6) << 4));
    mn = float((byte(j + 4) >> 4) | ((byte(j) >> 6) << 4));
  }
}

// Q4_K / Q5_K: the factors of the 64-value chunk jj (sub-blocks 2jj and 2jj + 1) from the block header
// (f16 d, f16 dmin) and its 12 bytes of 6-bit scales and mins: value = d*sc*q - dmin*m.
__device__ __forceinline__ void km_scales(uint32_t hdr, const uint32_t (&sw)[3], int jj, float& dl, float& dh,
                                          float& ml, float& mh) {
  const float d = half_bits(hdr & 0xFFFFu), dmin = half_bits(hdr >> 16);
  float sc1, m1, sc2, m2;
  q4k_scale_min(sw, 2 * jj, sc1, m1);
  q4k_scale_min(sw, 2 * jj + 1, sc2, m2);
  dl = d * sc1, dh = d * sc2, ml = dmin * m1, mh = dmin * m2;
}

// Q4_K / Q5_K: adds to acc[r][b] the products of one lane's 2 x 16 unpacked values of both rows
// (ql: values klo + i of sub-block 2jj, qh: klo + 32 + i of sub-block 2jj + 1) with each batch row of x:
// d*sc * sum(q x) - dmin*m * sum(x) per sub-block.
template <int BMAX>
__device__ __forceinline__ void km_accumulate(const float (&ql)[2][16], const float (&qh)[2][16], const float (&dl)[2],
                                              const float (&dh)[2], const float (&ml)[2], const float (&mh)[2],
                                              const bf16* __restrict__ x, int K, int klo, int B,
                                              float (&acc)[2][BMAX]) {
#pragma unroll
  for (int b = 0; b < BMAX; ++b) {
    if (b >= B) break;
    float sl = 0.f, sh = 0.f, pl[2] = {0.f, 0.f}, ph[2] = {0.f, 0.f};  // sum x, sum q x (low / high)
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float fl[8], fh[8];
      load_x8(x + size_t(b) * K + klo + 8 * i, fl);
      load_x8(x + size_t(b) * K + klo + 32 + 8 * i, fh);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        sl += fl[e];
        sh += fh[e];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          pl[r] = fmaf(ql[r][8 * i + e], fl[e], pl[r]);
          ph[r] = fmaf(qh[r][8 * i + e], fh[e], ph[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) acc[r][b] += dl[r] * pl[r] + dh[r] * ph[r] - (ml[r] * sl + mh[r] * sh);
  }
}

template <int BMAX, int EPI>
__global__ void __launch_bounds__(kWarps * 32) gemv_q4k_kernel(QWeight W, const bf16* __restrict__ x, int B, void* out,
                                                               int ldo) {
  const int lane = threadIdx.x & 31;
  const int t = lane & 7, slot = lane >> 3;  // lane t of the 8 sharing block `slot` of 4
  const int jj = t >> 1, h = t & 1;          // 64-value chunk jj, half h of its 32 bytes
  const int K = W.K, nblocks = K / 256;
  int rows[2];
  bool second_valid = false;
  if (!row_pair<EPI>(W.N, rows, second_valid)) return;
  const uint8_t* wr[2] = {static_cast<const uint8_t*>(W.w) + size_t(rows[0]) * nblocks * 144,
                          static_cast<const uint8_t*>(W.w) + size_t(rows[1]) * nblocks * 144};
  float acc[2][BMAX];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.f;
  bool waited = false;
  for (int c = slot; c < nblocks; c += 4) {
    uint4 qv[2];
    uint32_t hdr[2], sw[2][3];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* p = wr[r] + size_t(c) * 144;
      hdr[r] = __ldg(reinterpret_cast<const uint32_t*>(p));  // d, dmin (fp16)
#pragma unroll
      for (int i = 0; i < 3; ++i) sw[r][i] = __ldg(reinterpret_cast<const uint32_t*>(p + 4 + 4 * i));
      qv[r] = ld_w16(p + 16 + 32 * jj + 16 * h);
    }
    if (!waited) {
      pdl_wait();
      waited = true;
    }
    // low nibbles: values 64jj + 16h + i (sub-block 2jj); high: + 32 (sub-block 2jj + 1), i < 16.
    // Unpack both rows (32 values each), then take each batch row's 32 activations in turn.
    const int klo = c * 256 + 64 * jj + 16 * h;
    float ql[2][16], qh[2][16], dl[2], dh[2], ml[2], mh[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      km_scales(hdr[r], sw[r], jj, dl[r], dh[r], ml[r], mh[r]);
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const uint32_t w = word_of4(qv[r], i >> 2);
        ql[r][i] = __uint_as_float(0x4B000000u | ((w >> (8 * (i & 3))) & 0xFu)) - kMagic;
        qh[r][i] = __uint_as_float(0x4B000000u | ((w >> (8 * (i & 3) + 4)) & 0xFu)) - kMagic;
      }
    }
    km_accumulate<BMAX>(ql, qh, dl, dh, ml, mh, x, K, klo, B, acc);
  }
  if (!waited) pdl_wait();
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  finish<BMAX, EPI>(acc, rows, second_valid, B, out, ldo);
}

// ---- GGUF Q5_K: 8 lanes per 256-value block ---------------------------------------------------------

// Block (176 bytes, 16-byte aligned when the row is): f16 d, f16 dmin, 12 bytes of 6-bit scales and
// mins (as Q4_K), qh[32], qs[128]. Value 64 jj + 32 s + l (s = 0 low nibble of qs[32 jj + l], s = 1
// high nibble) = nibble + 16 * bit (2 jj + s) of qh[l], times d * scale - dmin * min of sub-block
// 2 jj + s. Lane t of the 8 sharing a block: jj = t >> 1, half h = t & 1 (l = 16 h .. 16 h + 15), three
// 16-byte loads: the header (the same address for 8 lanes: one transaction), qh[16 h ..] (shared by 4)
// and its 16 bytes of qs. The next block's loads are issued before this one is used (two stages).
template <int BMAX, int EPI>
__global__ void __launch_bounds__(kWarps * 32) gemv_q5k_kernel(QWeight W, const bf16* __restrict__ x, int B, void* out,
                                                               int ldo) {
  const int lane = threadIdx.x & 31;
  const int t = lane & 7, slot = lane >> 3;  // lane t of the 8 sharing block `slot` of 4
  const int jj = t >> 1, h = t & 1;
  const int K = W.K, nblocks = K / 256;
  int rows[2];
  bool second_valid = false;
  if (!row_pair<EPI>(W.N, rows, second_valid)) return;
  const uint8_t* wr[2] = {static_cast<const uint8_t*>(W.w) + size_t(rows[0]) * nblocks * 176,
                          static_cast<const uint8_t*>(W.w) + size_t(rows[1]) * nblocks * 176};
  uint4 cur[2][3], nxt[2][3];  // [row][header, qh, qs]
  auto load = [&](int c, uint4 (&v)[2][3]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* p = wr[r] + size_t(c) * 176;
      v[r][0] = ld_w16(p);
      v[r][1] = ld_w16(p + 16 + 16 * h);
      v[r][2] = ld_w16(p + 48 + 32 * jj + 16 * h);
    }
  };
  float acc[2][BMAX];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.f;
  if (slot < nblocks) load(slot, cur);
  pdl_wait();
  for (int c = slot; c < nblocks; c += 4) {
    if (c + 4 < nblocks) load(c + 4, nxt);
    const int klo = c * 256 + 64 * jj + 16 * h;
    float ql[2][16], qh[2][16], dl[2], dh[2], ml[2], mh[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint32_t sw[3] = {cur[r][0].y, cur[r][0].z, cur[r][0].w};
      km_scales(cur[r][0].x, sw, jj, dl[r], dh[r], ml[r], mh[r]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        // 4 bytes of qs and the 4 qh bytes of the same l: the 5th bits of this chunk are bits 2jj
        // (low nibbles) and 2jj + 1 (high nibbles) of each qh byte, moved to bit 4 of each byte.
        const uint32_t w = word_of4(cur[r][2], i), hb = word_of4(cur[r][1], i) >> (2 * jj);
        const uint32_t lo = (w & 0x0F0F0F0Fu) | ((hb << 4) & 0x10101010u);
        const uint32_t hi = ((w >> 4) & 0x0F0F0F0Fu) | ((hb << 3) & 0x10101010u);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          ql[r][4 * i + e] = __uint_as_float(__byte_perm(lo, 0x4B000000u, 0x7540u | e)) - kMagic;
          qh[r][4 * i + e] = __uint_as_float(__byte_perm(hi, 0x4B000000u, 0x7540u | e)) - kMagic;
        }
      }
    }
    km_accumulate<BMAX>(ql, qh, dl, dh, ml, mh, x, K, klo, B, acc);
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int i = 0; i < 3; ++i) cur[r][i] = nxt[r][i];
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  finish<BMAX, EPI>(acc, rows, second_valid, B, out, ldo);
}

// ---- GGUF Q6_K: 8 lanes per 256-value block ---------------------------------------------------------

// Block (210 bytes, only 2-byte aligned: 2-byte loads, paired into words): ql[128], qh[64], int8
// scales[16], f16 d. Half hf (values 128 hf ..) uses ql[64 hf ..], qh[32 hf ..], scales[8 hf ..]; in it,
// for l < 32, group g = 0..3 is value 32 g + l = (nibble | 2 bits << 4) - 32 with the nibble the low
// (g = 0, 1) or high (g = 2, 3) one of ql[l + 32 (g & 1)], the bits 2g, 2g+1 of qh[l], scale
// scales[l / 16 + 2 g]. Lane t of 8: hf = t >> 2, l = 8 (t & 3) .. + 7: 8 bytes of ql twice, 8 of qh,
// its 4 scales and d (17 two-byte loads for 32 values), the next block's issued before this one is used.
template <int BMAX, int EPI>
__global__ void __launch_bounds__(kWarps * 32) gemv_q6k_kernel(QWeight W, const bf16* __restrict__ x, int B, void* out,
                                                               int ldo) {
  const int lane = threadIdx.x & 31;
  const int t = lane & 7, slot = lane >> 3;
  const int hf = t >> 2, l0 = 8 * (t & 3), is = (t & 3) >> 1;
  const int K = W.K, nblocks = K / 256;
  int rows[2];
  bool second_valid = false;
  if (!row_pair<EPI>(W.N, rows, second_valid)) return;
  const uint8_t* wr[2] = {static_cast<const uint8_t*>(W.w) + size_t(rows[0]) * nblocks * 210,
                          static_cast<const uint8_t*>(W.w) + size_t(rows[1]) * nblocks * 210};
  // [row][0..1 ql at l, 2..3 ql at l + 32, 4..5 qh, 6..9 the u16 holding scale 2g (+ is), 10 d]
  uint32_t cur[2][11], nxt[2][11];
  auto load = [&](int c, uint32_t (&v)[2][11]) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const uint8_t* p = wr[r] + size_t(c) * 210;
      const uint8_t* src[3] = {p + 64 * hf + l0, p + 64 * hf + 32 + l0, p + 128 + 32 * hf + l0};
#pragma unroll
      for (int a = 0; a < 3; ++a)
#pragma unroll
        for (int j = 0; j < 2; ++j) v[r][2 * a + j] = ld_u16(src[a] + 4 * j) | (ld_u16(src[a] + 4 * j + 2) << 16);
#pragma unroll
      for (int g = 0; g < 4; ++g) v[r][6 + g] = ld_u16(p + 192 + 8 * hf + 2 * g);
      v[r][10] = ld_u16(p + 208);
    }
  };
  float acc[2][BMAX];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.f;
  if (slot < nblocks) load(slot, cur);
  pdl_wait();
  for (int c = slot; c < nblocks; c += 4) {
    if (c + 4 < nblocks) load(c + 4, nxt);
    const int kb = c * 256 + 128 * hf + l0;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      float q[2][8], ds[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        ds[r] = half_bits(cur[r][10]) * float(int8_t(uint8_t(cur[r][6 + g] >> (8 * is))));
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const uint32_t wl = cur[r][2 * (g & 1) + j], wh = cur[r][4 + j];
          const uint32_t nib = g < 2 ? wl & 0x0F0F0F0Fu : (wl >> 4) & 0x0F0F0F0Fu;
          // bits 2g, 2g+1 of each qh byte to bits 4, 5
          const uint32_t hi2 = g == 0 ? wh << 4 : g == 1 ? wh << 2 : g == 2 ? wh : wh >> 2;
          const uint32_t v = nib | (hi2 & 0x30303030u);
#pragma unroll
          for (int e = 0; e < 4; ++e)
            q[r][4 * j + e] = __uint_as_float(__byte_perm(v, 0x4B000000u, 0x7540u | e)) - (kMagic + 32.f);
        }
      }
#pragma unroll
      for (int b = 0; b < BMAX; ++b) {
        if (b >= B) break;
        float xf[8];
        load_x8(x + size_t(b) * K + kb + 32 * g, xf);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float part = 0.f;
#pragma unroll
          for (int e = 0; e < 8; ++e) part = fmaf(q[r][e], xf[e], part);
          acc[r][b] = fmaf(ds[r], part, acc[r][b]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int i = 0; i < 11; ++i) cur[r][i] = nxt[r][i];
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  finish<BMAX, EPI>(acc, rows, second_valid, B, out, ldo);
}

// ---- dequantize to bf16 (prefill) -------------------------------------------------------------------

// Thread per (row, 32-value chunk): 32 values of W as floats.
__device__ void dequant32(const QWeight& W, int sdt, int row, int chunk, float (&v)[32]) {
  const int K = W.K;
  const uint8_t* base = static_cast<const uint8_t*>(W.w);
  switch (W.type) {
    case QType::kInt8: {
      const int8_t* q = reinterpret_cast<const int8_t*>(base + size_t(row) * K + chunk * 32);
      const float s = scale_at(W.scales, sdt, size_t(row));
      for (int i = 0; i < 32; ++i) v[i] = s * float(q[i]);
      break;
    }
    case QType::kInt4: {
      const uint8_t* q = base + (W.tiled ? int4_tile_index(row, chunk, K) : size_t(row) * (K / 2) + chunk * 16);
      uint32_t words[4];  // tiled: the words back in row-major nibble order
      if (W.tiled) {
        memcpy(words, q, 16);
        for (uint32_t& w : words) w = int4_deinterleave_word(w);
        q = reinterpret_cast<const uint8_t*>(words);
      }
      const int G = K / W.group, g = chunk * 32 / W.group;
      const float s = scale_at(W.scales, sdt, qmeta_index(row, g, G));
      if (W.mins) {  // s q - m
        const float m = scale_at(W.mins, sdt, qmeta_index(row, g, G));
        for (int i = 0; i < 16; ++i) v[2 * i] = s * float(q[i] & 15) - m, v[2 * i + 1] = s * float(q[i] >> 4) - m;
        break;
      }
      const float z = W.zeros ? float(W.zeros[qmeta_index(row, g, G)]) : 8.f;
      for (int i = 0; i < 16; ++i) v[2 * i] = s * (float(q[i] & 15) - z), v[2 * i + 1] = s * (float(q[i] >> 4) - z);
      break;
    }
    case QType::kQ8_0: {
      const uint8_t* p = base + (size_t(row) * (K / 32) + chunk) * 34;
      const float d = half_bits(ld_u16(p));
      for (int i = 0; i < 32; ++i) v[i] = d * float(int8_t(p[2 + i]));
      break;
    }
    case QType::kQ4_0: {
      const uint8_t* p = base + (size_t(row) * (K / 32) + chunk) * 18;
      const float d = half_bits(ld_u16(p));
      for (int i = 0; i < 16; ++i) v[i] = d * (float(p[2 + i] & 15) - 8.f), v[16 + i] = d * (float(p[2 + i] >> 4) - 8.f);
      break;
    }
    case QType::kQ4_K: {
      const uint8_t* p = base + (size_t(row) * (K / 256) + chunk / 8) * 144;
      const int sub = chunk % 8, jj = sub / 2;
      uint32_t sw[3];
      for (int i = 0; i < 3; ++i) sw[i] = reinterpret_cast<const uint32_t*>(p + 4)[i];
      float sc, mn;
      q4k_scale_min(sw, sub, sc, mn);
      const uint32_t hdr = *reinterpret_cast<const uint32_t*>(p);
      const float d = half_bits(hdr & 0xFFFFu) * sc, m = half_bits(hdr >> 16) * mn;
      const uint8_t* q = p + 16 + 32 * jj;
      for (int i = 0; i < 32; ++i) v[i] = d * float((sub & 1) ? (q[i] >> 4) : (q[i] & 15)) - m;
      break;
    }
    // The formats below round exactly like quant::dequantize_row (same products in the same order,
    // no FMA contraction: __fmul_rn / __fadd_rn), so their bf16 values are bit-identical to the CPU's.
    case QType::kQ4_1: {
      const uint8_t* p = base + (size_t(row) * (K / 32) + chunk) * 20;
      const float d = half_bits(ld_u16(p)), m = half_bits(ld_u16(p + 2));
      for (int i = 0; i < 16; ++i) {
        v[i] = __fadd_rn(__fmul_rn(float(p[4 + i] & 15), d), m);
        v[16 + i] = __fadd_rn(__fmul_rn(float(p[4 + i] >> 4), d), m);
      }
      break;
    }
    case QType::kQ5_K: {
      const uint8_t* p = base + (size_t(row) * (K / 256) + chunk / 8) * 176;
      const int sub = chunk % 8, jj = sub / 2;
      uint32_t sw[3];
      for (int i = 0; i < 3; ++i) sw[i] = reinterpret_cast<const uint32_t*>(p + 4)[i];
      float sc, mn;
      q4k_scale_min(sw, sub, sc, mn);
      const uint32_t hdr = *reinterpret_cast<const uint32_t*>(p);
      const float d = __fmul_rn(half_bits(hdr & 0xFFFFu), sc), m = __fmul_rn(half_bits(hdr >> 16), mn);
      const uint8_t *qh = p + 16, *q = p + 48 + 32 * jj;
      for (int i = 0; i < 32; ++i) {
        const int nib = (sub & 1) ? (q[i] >> 4) : (q[i] & 15);
        v[i] = __fsub_rn(__fmul_rn(d, float(nib + 16 * ((qh[i] >> sub) & 1))), m);
      }
      break;
    }
    case QType::kQ6_K: {
      const uint8_t* p = base + (size_t(row) * (K / 256) + chunk / 8) * 210;
      const int sub = chunk % 8, hf = sub / 4, g = sub % 4;  // values 128 hf + 32 g + l
      const float d = half_bits(ld_u16(p + 208));
      const uint8_t *ql = p + 64 * hf + 32 * (g & 1), *qh = p + 128 + 32 * hf;
      const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192 + 8 * hf);
      for (int l = 0; l < 32; ++l) {
        const int nib = g < 2 ? (ql[l] & 15) : (ql[l] >> 4);
        const int q = (nib | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
        v[l] = __fmul_rn(__fmul_rn(d, float(sc[l / 16 + 2 * g])), float(q));
      }
      break;
    }
  }
}

__global__ void dequant_bf16_kernel(QWeight W, int sdt, int row0, int rows, bf16* out) {
  const int chunks = W.K / 32;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  pdl_trigger();
  pdl_wait();
  if (i >= int64_t(rows) * chunks) return;
  const int r = int(i / chunks), c = int(i % chunks);
  float v[32];
  dequant32(W, sdt, row0 + r, c, v);
  uint4* o = reinterpret_cast<uint4*>(out + size_t(r) * W.K + size_t(c) * 32);
  for (int q = 0; q < 4; ++q) {
    uint32_t w[4];
    for (int e = 0; e < 4; ++e) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[8 * q + 2 * e], v[8 * q + 2 * e + 1]);
      memcpy(&w[e], &h, 4);
    }
    o[q] = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// Thread per 16 bytes of the source: where they go in the tiled layout, words interleaved.
// src: rows row0 .. row0 + N - 1 (row0 % 16 == 0), row-major; dst: the whole weight.
__global__ void tile_int4_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, int row0, int N, int K) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x, total = size_t(N) * K / 32;
  if (i >= total) return;
  const int chunks = K / 32;  // 16-byte chunks a row
  const int row = int(i / chunks), chunk = int(i % chunks);
  const uint4 v = src[i];
  dst[int4_tile_index(row0 + row, chunk, K) / 16] = make_uint4(int4_interleave_word(v.x), int4_interleave_word(v.y),
                                                               int4_interleave_word(v.z), int4_interleave_word(v.w));
}

__global__ void gather_kernel(const bf16* x, const int32_t* perm, int B, int K, bf16* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  pdl_trigger();
  pdl_wait();
  if (i >= int64_t(B) * K) return;
  const int b = int(i / K), j = int(i % K);
  out[i] = x[size_t(b) * K + perm[j]];
}

// ---- host dispatch ------------------------------------------------------------------------------------


template <bool INT4, int BMAX, int EPI>
void launch_int(const QGemvArgs& a, dim3 grid, int ldo, cudaStream_t s) {
  const bf16* x = static_cast<const bf16*>(a.x);
  const int sdt = scale_code(a.W.scale_dtype);
  const dim3 block(kWarps * 32);
  const FoldArgs f = fold_args(a);
  if constexpr (EPI == int(GemvEpilogue::kAddF32)) {
    if (a.next_ss)
      return launch(gemv_int_kernel<INT4, BMAX, EPI, false, true>, grid, block, 0, s, a.W, sdt, x, a.B, a.out, ldo, f);
  }
  if (a.rms_ss)
    return launch(gemv_int_kernel<INT4, BMAX, EPI, true, false>, grid, block, 0, s, a.W, sdt, x, a.B, a.out, ldo, f);
  launch(gemv_int_kernel<INT4, BMAX, EPI>, grid, block, 0, s, a.W, sdt, x, a.B, a.out, ldo, f);
}

template <int BMAX, int EPI>
void launch_fmt(const QGemvArgs& a, int ldo, cudaStream_t s) {
  const int pairs = EPI == int(GemvEpilogue::kSwiGLU) ? a.W.N / 2 : (a.W.N + 1) / 2;
  const dim3 grid(ceil_div(pairs, kWarps)), block(kWarps * 32);
  const bf16* x = static_cast<const bf16*>(a.x);
  switch (a.W.type) {
    case QType::kInt8: return launch_int<false, BMAX, EPI>(a, grid, ldo, s);
    case QType::kInt4: return launch_int<true, BMAX, EPI>(a, grid, ldo, s);
    case QType::kQ8_0: return launch(gemv_gguf32_kernel<0, BMAX, EPI>, grid, block, 0, s, a.W, x, a.B, a.out, ldo);
    case QType::kQ4_0: return launch(gemv_gguf32_kernel<1, BMAX, EPI>, grid, block, 0, s, a.W, x, a.B, a.out, ldo);
    case QType::kQ4_K: return launch(gemv_q4k_kernel<BMAX, EPI>, grid, block, 0, s, a.W, x, a.B, a.out, ldo);
    case QType::kQ4_1: return launch(gemv_gguf32_kernel<2, BMAX, EPI>, grid, block, 0, s, a.W, x, a.B, a.out, ldo);
    case QType::kQ5_K: return launch(gemv_q5k_kernel<BMAX, EPI>, grid, block, 0, s, a.W, x, a.B, a.out, ldo);
    case QType::kQ6_K: return launch(gemv_q6k_kernel<BMAX, EPI>, grid, block, 0, s, a.W, x, a.B, a.out, ldo);
  }
}

template <int EPI>
void launch_b(const QGemvArgs& a, int ldo, cudaStream_t s) {
  if (a.B == 1) return launch_fmt<1, EPI>(a, ldo, s);
  if (a.B == 2) return launch_fmt<2, EPI>(a, ldo, s);
  if (a.B <= 4) return launch_fmt<4, EPI>(a, ldo, s);
  return launch_fmt<8, EPI>(a, ldo, s);
}

void check_weight(const QWeight& W) {
  IGNIS_CHECK(W.w && W.N > 0 && W.K > 0, "quantized GEMV: empty weight ", W.N, "x", W.K);
  switch (W.type) {
    case QType::kInt8:
      IGNIS_CHECK(W.K % 32 == 0 && W.scales, "int8 GEMV: needs K % 32 == 0 and scales (K = ", W.K, ")");
      break;
    case QType::kInt4:
      IGNIS_CHECK(W.group == 32 || W.group == 64 || W.group == 128, "int4 GEMV: group must be 32/64/128, got ", W.group);
      IGNIS_CHECK(W.K % W.group == 0 && W.scales, "int4 GEMV: K = ", W.K, " not a multiple of group ", W.group,
                  " or no scales");
      IGNIS_CHECK(!W.mins || (!W.zeros && W.group <= 64), "int4 GEMV: mins need groups of 32 / 64 and no zero points");
      break;
    case QType::kQ8_0:
    case QType::kQ4_0:
    case QType::kQ4_1: IGNIS_CHECK(W.K % 32 == 0, "GGUF GEMV: K = ", W.K, " not a multiple of 32"); break;
    case QType::kQ4_K:
    case QType::kQ5_K:
    case QType::kQ6_K: IGNIS_CHECK(W.K % 256 == 0, "GGUF K-quant GEMV: K = ", W.K, " not a multiple of 256"); break;
  }
}

}  // namespace

int scale_code(DType t) {
  if (t == DType::F32) return 0;
  if (t == DType::BF16) return 1;
  IGNIS_CHECK(t == DType::F16, "quantized GEMV: scales must be f32, bf16 or f16, got ", dtype_name(t));
  return 2;
}

bool gguf_qtype(DType t, QType& out) {
  switch (t) {
    case DType::Q8_0: out = QType::kQ8_0; return true;
    case DType::Q4_0: out = QType::kQ4_0; return true;
    case DType::Q4_1: out = QType::kQ4_1; return true;
    case DType::Q4_K: out = QType::kQ4_K; return true;
    case DType::Q5_K: out = QType::kQ5_K; return true;
    case DType::Q6_K: out = QType::kQ6_K; return true;
    default: return false;
  }
}

namespace {
// The kernel gemv_quant runs a on (its dispatch rules, below).
enum class QKernel { kInt4Tc, kInt8Tc, kBulk, kCudaCore };
// (has_ws: a split-K workspace is given, which lets int4 take the tensor-core kernel with few tiles)
QKernel choose_kernel(const QWeight& W, QGemvImpl asked, int B, bool has_ws) {
  if (W.type != QType::kInt4 && W.type != QType::kInt8) return QKernel::kCudaCore;
  const bool int4 = W.type == QType::kInt4;
  const bool ok = int4 ? int4_tc_supported(W) : int8_tc_supported(W);
  const bool bulk_ok = device_has_bulk_copy() && quant_bulk_supported(W);
  QGemvImpl impl = asked;
  if (impl == QGemvImpl::kAuto) {
    static const QGemvImpl env = [] {
      const char* e = std::getenv("IGNIS_QGEMV");
      if (e && std::strcmp(e, "simple") == 0) return QGemvImpl::kCudaCore;
      if (e && std::strcmp(e, "tc") == 0) return QGemvImpl::kTensorCore;
      if (e && std::strcmp(e, "bulk") == 0) return QGemvImpl::kBulk;
      return QGemvImpl::kAuto;
    }();
    impl = env;
  }
  IGNIS_CHECK(!W.mins || (ok && asked != QGemvImpl::kCudaCore && asked != QGemvImpl::kBulk),
              "int4 GEMV with mins (repacked Q4_K): only the tensor-core kernel, K % 128 == 0 (K = ", W.K, ")");
  if (W.mins) return QKernel::kInt4Tc;
  IGNIS_CHECK(!W.tiled || (ok && asked != QGemvImpl::kCudaCore && asked != QGemvImpl::kBulk),
              "int4 GEMV with tiled nibbles: only the tensor-core kernel");
  if (W.tiled) return QKernel::kInt4Tc;
  if (impl == QGemvImpl::kAuto) {
    if (ok && (int4 || B >= 2) && (ceil_div(W.N, 16) >= sm_count() || (int4 && has_ws)))
      impl = QGemvImpl::kTensorCore;
    else if (bulk_ok && B >= 2)
      impl = QGemvImpl::kBulk;
    else
      impl = QGemvImpl::kCudaCore;
  }
  IGNIS_CHECK(ok || asked != QGemvImpl::kTensorCore, "quantized GEMV: the tensor-core kernel needs ",
              int4 ? "int4 groups of 32, 64 or a multiple of 128 and K % 128 == 0" : "int8 with K % 64 == 0");
  IGNIS_CHECK(bulk_ok || asked != QGemvImpl::kBulk, "quantized GEMV: the bulk-copy kernel needs sm_90 and ",
              int4 ? "int4 groups of a power of two from 32 to 1024" : "int8 with K % 64 == 0");
  if (impl == QGemvImpl::kBulk && bulk_ok) return QKernel::kBulk;
  if (impl == QGemvImpl::kTensorCore && ok) return int4 ? QKernel::kInt4Tc : QKernel::kInt8Tc;
  return QKernel::kCudaCore;
}
bool kernel_folds(const QWeight& W, QKernel k) {
  return k == QKernel::kInt4Tc || (k == QKernel::kCudaCore && (W.type == QType::kInt4 || W.type == QType::kInt8));
}
}  // namespace

bool quant_fold_ok(const QWeight& W, int B) {
  // int8 (the CUDA-core kernel at batch 1) folds correctly but decoded slower with it on an H200
  // (2026-12-03, Llama-2-7B b1 369 vs 380.5 tok/s), so the decoder keeps its RMSNorm kernels.
  if (B != 1 || !W.w || W.type == QType::kInt8) return false;
  try {
    return kernel_folds(W, choose_kernel(W, QGemvImpl::kAuto, B, true));  // as the decoder calls it: with a workspace
  } catch (const Error&) {
    return false;
  }
}

int gemv_quant(const QGemvArgs& a, cudaStream_t stream) {
  check_weight(a.W);
  IGNIS_CHECK(a.B >= 1 && a.B <= 8, "quantized GEMV: batch must be 1..8, got ", a.B);
  IGNIS_CHECK(a.x && a.out, "quantized GEMV: null x or out");
  const bool swiglu = a.epi == GemvEpilogue::kSwiGLU;
  IGNIS_CHECK(!swiglu || a.W.N % 16 == 0, "quantized GEMV: SwiGLU needs N = 2 * (multiple of 8), got ", a.W.N);
  const int ldo = a.ldo ? a.ldo : (swiglu ? a.W.N / 2 : a.W.N);
  // int8 / int4, kAuto: the tensor-core kernels (gemv_int4_tc.cu, gemv_int8_tc.cu) where they apply
  // and have enough 16-row blocks for every SM (int4 splits K across blocks given a workspace; int8
  // does not): int4 (K % 128 == 0) at any B, int8 from B = 2 (at B = 1 the CUDA-core kernel streams
  // int8 faster); else from B = 2 the bulk-copy kernel (gemv_bulk.cu, sm_90+, e.g. int4 with K % 128
  // != 0, where the B FMAs per weight bound the CUDA-core kernel); else the CUDA-core kernel. The bulk-copy
  // kernel is not the default elsewhere: on an H200 (2026-12-02, scripts/gpu-check.sh abquant) it
  // streamed int8 at 1.4-2.3 TB/s and int4 g128 at 0.7-1.3 at B = 1, below both register kernels
  // (int4 g128 decode 261 vs 340 tok/s; int8 251 vs 367), but at B = 8 it runs int4 g32 at 1,741
  // tok/s against the CUDA-core kernel's 782. IGNIS_QGEMV=simple|tc|bulk overrides kAuto.
  const QKernel k = choose_kernel(a.W, a.impl, a.B, a.ws != nullptr);
  const bool fold = a.rms_ss || a.next_ss;
  if (fold) {
    IGNIS_CHECK(kernel_folds(a.W, k), "quantized GEMV: the folded RMSNorm needs int8 / int4 weights on the CUDA-core "
                "or int4 tensor-core kernel");
    IGNIS_CHECK(!(a.rms_ss && a.next_ss), "quantized GEMV: rms_ss and next_ss on one product are not supported");
    IGNIS_CHECK(!a.rms_ss || a.rms_parts > 0, "quantized GEMV: rms_ss needs rms_parts");
    IGNIS_CHECK(!a.next_ss || (a.epi == GemvEpilogue::kAddF32 && a.next_norm_w && a.next_h && ldo == a.W.N),
                "quantized GEMV: next_ss needs the kAddF32 epilogue into a [B, N] output, next_norm_w and next_h");
  }
  switch (k) {
    case QKernel::kBulk: gemv_quant_bulk(a, ldo, stream); return 0;
    case QKernel::kInt8Tc: gemv_int8_tc(a, ldo, stream); return 0;
    case QKernel::kInt4Tc: gemv_int4_tc(a, ldo, stream); return a.next_ss ? ceil_div(a.W.N, 16) : 0;
    case QKernel::kCudaCore: break;
  }
  switch (a.epi) {
    case GemvEpilogue::kStore: launch_b<int(GemvEpilogue::kStore)>(a, ldo, stream); break;
    case GemvEpilogue::kStoreF32: launch_b<int(GemvEpilogue::kStoreF32)>(a, ldo, stream); break;
    case GemvEpilogue::kAddF32: launch_b<int(GemvEpilogue::kAddF32)>(a, ldo, stream); break;
    case GemvEpilogue::kSwiGLU: launch_b<int(GemvEpilogue::kSwiGLU)>(a, ldo, stream); break;
  }
  return a.next_ss ? ceil_div(ceil_div(a.W.N, 2), kWarps) : 0;  // gemv_int_kernel: a partial per block (8 rows)
}

namespace {
// The fp16 scale fields of n GGUF blocks of bb bytes: v0 at byte o0, and v1 at o1 (o1 < 0: none).
__global__ void set_block_halves_kernel(uint8_t* w, size_t n, int bb, int o0, uint16_t v0, int o1, uint16_t v1) {
  pdl_trigger();
  pdl_wait();
  for (size_t b = blockIdx.x * size_t(blockDim.x) + threadIdx.x; b < n; b += size_t(gridDim.x) * blockDim.x) {
    *reinterpret_cast<uint16_t*>(w + b * bb + o0) = v0;
    if (o1 >= 0) *reinterpret_cast<uint16_t*>(w + b * bb + o1) = v1;
  }
}
}  // namespace

void fill_random_blocks(const QWeight& W, uint64_t seed, float range, cudaStream_t stream) {
  int vals = 32, bb = 0, o0 = 0, o1 = -1;
  float d = 0, m = 0;  // the block scale (and min / dmin) giving weights of about +-range
  switch (W.type) {
    case QType::kQ8_0: bb = 34, d = range / 127.f; break;
    case QType::kQ4_0: bb = 18, d = range / 8.f; break;
    case QType::kQ4_1: bb = 20, o1 = 2, d = range / 8.f, m = -7.5f * d; break;  // d (q - 7.5): mean 0
    case QType::kQ4_K: vals = 256, bb = 144, o1 = 2, d = range / 256.f, m = range / 1024.f; break;
    case QType::kQ5_K: vals = 256, bb = 176, o1 = 2, d = range / 512.f, m = range / 1024.f; break;
    case QType::kQ6_K: vals = 256, bb = 210, o0 = 208, d = range / 2048.f; break;
    default: fail("fill_random_blocks: not a GGUF block type");
  }
  IGNIS_CHECK(W.K % vals == 0, "fill_random_blocks: K = ", W.K, " is not a multiple of ", vals);
  const size_t n = size_t(W.N) * (W.K / vals), bytes = n * bb;
  fill_random(DType::F32, const_cast<void*>(W.w), bytes / 4, seed, 1.f, 0.f, stream);  // random values / sub-scales
  launch(set_block_halves_kernel, dim3(unsigned(std::min<size_t>(ceil_div(int64_t(n), 256), 4096))), dim3(256), 0,
         stream, static_cast<uint8_t*>(const_cast<void*>(W.w)), n, bb, o0, f32_to_f16(d), o1, f32_to_f16(m));
}

namespace {
// Thread per Q4_0 block (source row i, block b): its 16 bytes of nibbles (value j low in byte j,
// value j + 16 high in byte j) rewritten in the int4 order (value k in nibble k % 8 of word k / 8),
// its f16 scale d copied to the qmeta_index slot of (dst row, b). Values d (q - 8) either way.
__global__ void repack_q4_0_kernel(const uint8_t* __restrict__ src, int rows, int K, int64_t r0, int64_t row_offset,
                                   bool interleave8, QWeight dst) {
  pdl_trigger();
  pdl_wait();
  const int nb = K / 32;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= int64_t(rows) * nb) return;
  const int i = int(t / nb), b = int(t % nb);
  const uint8_t* p = src + (size_t(i) * nb + b) * 18;
  uint8_t qs[16];
  for (int j = 0; j < 16; ++j) qs[j] = p[2 + j];
  uint32_t w[4];
  for (int q = 0; q < 4; ++q) {
    uint32_t v = 0;
    for (int e = 0; e < 8; ++e) {
      const int k = 8 * q + e;
      const uint32_t nib = k < 16 ? qs[k] & 15u : uint32_t(qs[k - 16]) >> 4;
      v |= nib << (4 * e);
    }
    w[q] = v;
  }
  const int64_t src_row = r0 + i;
  const int row = int(row_offset + (interleave8 ? swiglu_row_of_gate(src_row) : src_row));
  reinterpret_cast<uint4*>(static_cast<uint8_t*>(const_cast<void*>(dst.w)) + size_t(row) * (K / 2))[b] =
      make_uint4(w[0], w[1], w[2], w[3]);
  static_cast<uint16_t*>(const_cast<void*>(dst.scales))[qmeta_index(row, b, nb)] = uint16_t(p[0] | (p[1] << 8));
}
}  // namespace

void repack_q4_0(const void* blocks, int rows, int64_t r0, int64_t row_offset, bool interleave8, const QWeight& dst,
                 cudaStream_t stream) {
  IGNIS_CHECK(dst.type == QType::kInt4 && dst.group == 32 && dst.scale_dtype == DType::F16 && !dst.zeros && dst.w &&
                  dst.scales && dst.K % 32 == 0,
              "repack_q4_0: the destination must be int4, group 32, f16 scales, symmetric");
  const int64_t last = row_offset + (interleave8 ? swiglu_row_of_gate(r0 + rows - 1) : r0 + rows - 1);
  IGNIS_CHECK(rows > 0 && r0 >= 0 && row_offset >= 0 && last < dst.N, "repack_q4_0: rows outside the destination");
  const int64_t n = int64_t(rows) * (dst.K / 32);
  launch(repack_q4_0_kernel, dim3(unsigned(ceil_div(n, 256))), dim3(256), 0, stream,
         static_cast<const uint8_t*>(blocks), rows, dst.K, r0, row_offset, interleave8, dst);
}

namespace {
// Thread per 32-value sub-block j of a Q4_K block (source row i, block bk): value l of the sub-block is
// nibble (j & 1) of qs[32 (j / 2) + l]; written in the int4 order with s = d sc_j, m = dmin mn_j.
__global__ void repack_q4_k_kernel(const uint8_t* __restrict__ src, int rows, int K, int64_t r0, int64_t row_offset,
                                   bool interleave8, QWeight dst) {
  pdl_trigger();
  pdl_wait();
  const int nsub = K / 32;
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= int64_t(rows) * nsub) return;
  const int i = int(t / nsub), sb = int(t % nsub), bk = sb / 8, j = sb % 8;
  const uint8_t* p = src + (size_t(i) * (K / 256) + bk) * 144;
  uint32_t sw[3];
  for (int e = 0; e < 3; ++e) sw[e] = uint32_t(p[4 + 4 * e]) | uint32_t(p[5 + 4 * e]) << 8 |
                                      uint32_t(p[6 + 4 * e]) << 16 | uint32_t(p[7 + 4 * e]) << 24;
  float sc, mn;
  q4k_scale_min(sw, j, sc, mn);
  const float d = half_bits(uint32_t(p[0] | (p[1] << 8))), dmin = half_bits(uint32_t(p[2] | (p[3] << 8)));
  const uint8_t* qs = p + 16 + 32 * (j / 2);
  const int sh = 4 * (j & 1);
  uint32_t w[4];
  for (int q = 0; q < 4; ++q) {
    uint32_t v = 0;
    for (int e = 0; e < 8; ++e) v |= ((uint32_t(qs[8 * q + e]) >> sh) & 15u) << (4 * e);
    w[q] = v;
  }
  const int64_t src_row = r0 + i;
  const int row = int(row_offset + (interleave8 ? swiglu_row_of_gate(src_row) : src_row));
  reinterpret_cast<uint4*>(static_cast<uint8_t*>(const_cast<void*>(dst.w)) + size_t(row) * (K / 2))[sb] =
      make_uint4(w[0], w[1], w[2], w[3]);
  const size_t mi = qmeta_index(row, sb, nsub);
  static_cast<__half*>(const_cast<void*>(dst.scales))[mi] = __float2half_rn(d * sc);
  static_cast<__half*>(const_cast<void*>(dst.mins))[mi] = __float2half_rn(dmin * mn);
}
}  // namespace

void repack_q4_k(const void* blocks, int rows, int64_t r0, int64_t row_offset, bool interleave8, const QWeight& dst,
                 cudaStream_t stream) {
  IGNIS_CHECK(dst.type == QType::kInt4 && dst.group == 32 && dst.scale_dtype == DType::F16 && !dst.zeros && dst.w &&
                  dst.scales && dst.mins && dst.K % 256 == 0,
              "repack_q4_k: the destination must be int4, group 32, f16 scales and mins, K % 256 == 0");
  const int64_t last = row_offset + (interleave8 ? swiglu_row_of_gate(r0 + rows - 1) : r0 + rows - 1);
  IGNIS_CHECK(rows > 0 && r0 >= 0 && row_offset >= 0 && last < dst.N, "repack_q4_k: rows outside the destination");
  const int64_t n = int64_t(rows) * (dst.K / 32);
  launch(repack_q4_k_kernel, dim3(unsigned(ceil_div(n, 256))), dim3(256), 0, stream,
         static_cast<const uint8_t*>(blocks), rows, dst.K, r0, row_offset, interleave8, dst);
}

void tile_int4(QWeight& W, void* scratch, size_t scratch_bytes, cudaStream_t stream) {
  IGNIS_CHECK(W.type == QType::kInt4 && !W.tiled && W.N % 16 == 0 && W.K % 128 == 0 && W.w,
              "tile_int4: an untiled int4 weight with N % 16 == 0 and K % 128 == 0, got ", W.N, " x ", W.K);
  // A tile of 16 rows occupies the same bytes in both layouts, so the weight is reordered in chunks of whole
  // tiles through the scratch (at least one tile: 8 K bytes).
  const size_t tile_bytes = size_t(16) * W.K / 2;
  IGNIS_CHECK(scratch && scratch_bytes >= tile_bytes, "tile_int4: needs at least ", tile_bytes,
              " bytes of scratch (one 16-row tile)");
  const int chunk_rows = int(std::min<size_t>(size_t(W.N) / 16, scratch_bytes / tile_bytes)) * 16;
  for (int r0 = 0; r0 < W.N; r0 += chunk_rows) {
    const int rows = std::min(chunk_rows, W.N - r0);
    const size_t bytes = size_t(rows) * W.K / 2;
    CUDA_CHECK(cudaMemcpyAsync(scratch, static_cast<const uint8_t*>(W.w) + size_t(r0) * W.K / 2, bytes,
                               cudaMemcpyDeviceToDevice, stream));
    const size_t n = bytes / 16;
    launch(tile_int4_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, stream, static_cast<const uint4*>(scratch),
           static_cast<uint4*>(const_cast<void*>(W.w)), r0, rows, W.K);
  }
  W.tiled = true;
}

void dequantize_bf16(const QWeight& W, int row0, int rows, void* out, cudaStream_t stream) {
  check_weight(W);
  IGNIS_CHECK(row0 >= 0 && rows > 0 && row0 + rows <= W.N, "dequantize_bf16: rows [", row0, ", ", row0 + rows,
              ") outside [0, ", W.N, ")");
  const int64_t n = int64_t(rows) * (W.K / 32);
  launch(dequant_bf16_kernel, dim3(ceil_div(n, 256)), dim3(256), 0, stream, W,
         W.type == QType::kInt8 || W.type == QType::kInt4 ? scale_code(W.scale_dtype) : 0, row0, rows,
         static_cast<bf16*>(out));
}

void linear_prefill_quant(LtGemm& gemm, const QWeight& W, const void* x, int M, DType out_dtype, void* y, float beta,
                          void* scratch, int tile_rows, cudaStream_t stream, int ldy) {
  const int tile = tile_rows > 0 ? tile_rows : W.N;
  IGNIS_CHECK(tile == W.N || tile % 16 == 0, "linear_prefill_quant: tile_rows must be a multiple of 16");
  const size_t osz = out_dtype == DType::F32 ? 4 : 2;
  for (int n0 = 0; n0 < W.N; n0 += tile) {
    const int rows = std::min(tile, W.N - n0);
    dequantize_bf16(W, n0, rows, scratch, stream);
    gemm.matmul(DType::BF16, scratch, x, out_dtype, static_cast<char*>(y) + size_t(n0) * osz, M, rows, W.K, beta,
                stream, ldy > 0 ? ldy : W.N);
  }
}

void gather_columns(const void* x, const int32_t* perm, int B, int K, void* out, cudaStream_t stream) {
  const int64_t n = int64_t(B) * K;
  launch(gather_kernel, dim3(ceil_div(n, 256)), dim3(256), 0, stream, static_cast<const bf16*>(x), perm, B, K,
         static_cast<bf16*>(out));
}

// ---- uploading QuantLinear ------------------------------------------------------------------------------

void upload_quant_linear(const quant::QuantLinear& q_in, DeviceQuantLinear& out) {
  q_in.validate("upload_quant_linear");
  std::vector<int32_t> perm;
  const quant::QuantLinear q = quant::contiguous_groups(q_in, perm);
  auto put = [](DeviceBuffer& b, const void* src, size_t bytes) {
    b.alloc(std::max<size_t>(bytes, 16));
    CUDA_CHECK(cudaMemcpy(b.get(), src, bytes, cudaMemcpyHostToDevice));
  };
  put(out.w, q.qdata.data(), q.qdata.size());
  // int4: scales and zeros from row-major [N, G] to the device layout of qmeta_index (padding 0)
  const bool int4 = q.format == quant::QFormat::kInt4;
  const int N = int(q.N), G = int4 ? int(q.groups()) : 1;
  auto meta_pos = [&](size_t i) { return int4 ? qmeta_index(int(i / size_t(G)), int(i % size_t(G)), G) : i; };
  const size_t nmeta = int4 ? qmeta_count(N, G) : q.scales.size();
  if (q.scale_dtype == DType::F32) {
    std::vector<float> h(nmeta, 0.f);
    for (size_t i = 0; i < q.scales.size(); ++i) h[meta_pos(i)] = q.scales[i];
    put(out.scales, h.data(), h.size() * 4);
  } else {
    std::vector<uint16_t> h(nmeta, 0);
    for (size_t i = 0; i < q.scales.size(); ++i)
      h[meta_pos(i)] = q.scale_dtype == DType::BF16 ? f32_to_bf16(q.scales[i]) : f32_to_f16(q.scales[i]);
    put(out.scales, h.data(), h.size() * 2);
  }
  if (!q.zeros.empty()) {
    std::vector<uint8_t> h(nmeta, 8);
    for (size_t i = 0; i < q.zeros.size(); ++i) h[meta_pos(i)] = q.zeros[i];
    put(out.zeros, h.data(), h.size());
  }
  if (!perm.empty()) put(out.perm, perm.data(), perm.size() * 4);
  out.view.type = q.format == quant::QFormat::kInt8 ? QType::kInt8 : QType::kInt4;
  out.view.w = out.w.get();
  out.view.scales = out.scales.get();
  out.view.scale_dtype = q.scale_dtype;
  out.view.zeros = q.zeros.empty() ? nullptr : out.zeros.as<uint8_t>();
  out.view.group = q.group;
  out.view.N = int(q.N);
  out.view.K = int(q.K);
}

quant::QuantLinear fuse_gate_up(const quant::QuantLinear& gate, const quant::QuantLinear& up) {
  IGNIS_CHECK(gate.format == up.format && gate.N == up.N && gate.K == up.K && gate.group == up.group &&
                  gate.scale_dtype == up.scale_dtype && gate.symmetric() == up.symmetric() && gate.g_idx.empty() &&
                  up.g_idx.empty(),
              "fuse_gate_up: gate and up must have the same format, shape, group and no act-order");
  IGNIS_CHECK(gate.N % 8 == 0, "fuse_gate_up: N must be a multiple of 8, got ", gate.N);
  quant::QuantLinear f = gate;
  f.N = 2 * gate.N;
  const size_t rb = gate.qdata.size() / size_t(gate.N);
  const int64_t G = gate.groups();
  f.qdata.resize(2 * gate.qdata.size());
  f.scales.resize(2 * gate.scales.size());
  if (!gate.zeros.empty()) f.zeros.resize(2 * gate.zeros.size());
  for (int64_t j = 0; j < gate.N; ++j)
    for (int w = 0; w < 2; ++w) {
      const quant::QuantLinear& s = w ? up : gate;
      const int64_t dst = swiglu_row_of_gate(j) + 8 * w;
      std::memcpy(&f.qdata[size_t(dst) * rb], &s.qdata[size_t(j) * rb], rb);
      std::memcpy(&f.scales[size_t(dst * G)], &s.scales[size_t(j * G)], size_t(G) * 4);
      if (!s.zeros.empty()) std::memcpy(&f.zeros[size_t(dst * G)], &s.zeros[size_t(j * G)], size_t(G));
    }
  return f;
}

}  // namespace ignis::cuda
