// Device helpers shared by the tensor-core decode GEMVs (gemv.cu's register-streaming kernel,
// gemv_bulk.cu's bulk-copy kernels, gemv_int4_tc.cu / gemv_int8_tc.cu): the bf16 / fp16 mma, the
// exact int4 / int8 -> bf16 / fp16 unpacking, and the epilogue of a finished 16-row tile.
//
// Fragment layout of a tile's result (mma.m16n8k16, accumulators of lane (g = lane / 4, c = lane % 4)):
//   v[0] = (row g, batch 2c), v[1] = (row g, batch 2c+1), v[2] = (row g+8, batch 2c), v[3] = (row g+8, batch 2c+1).
#pragma once
#include <cuda_fp16.h>

#include "cuda/common.h"
#include "cuda/kernels.h"
#include "cuda/quant_kernels.h"

namespace ignis::cuda {

template <int EPI>
__device__ __forceinline__ void epilogue_store(void* out, int ldo, int b, int row, float v) {
  if constexpr (EPI == int(GemvEpilogue::kStore)) {
    static_cast<bf16*>(out)[size_t(b) * ldo + row] = __float2bfloat16(v);
  } else if constexpr (EPI == int(GemvEpilogue::kStoreF32)) {
    static_cast<float*>(out)[size_t(b) * ldo + row] = v;
  } else if constexpr (EPI == int(GemvEpilogue::kAddF32)) {
    static_cast<float*>(out)[size_t(b) * ldo + row] += v;
  }
}

__device__ __forceinline__ float silu(float g) { return g / (1.f + __expf(-g)); }

__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// ---- int4: two nibbles -> an exact bf16 pair (gemv_int4_tc.cu's header explains the trick) ----
// bf16 pair (128 + z, 128 + z) as the raw bits the subtraction uses.
__device__ __forceinline__ uint32_t bias_pair(int z) {
  const uint32_t b = 0x4300u | uint32_t(z);
  return b | (b << 16);
}
// The nibbles at bits sh and sh + 16 of w as bf16 (q_a - z, q_b - z); zz = bias_pair(z).
__device__ __forceinline__ uint32_t deq_pair(uint32_t w, int sh, uint32_t zz) {
  uint32_t t;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(t) : "r"(w >> sh), "r"(0x000F000Fu), "r"(0x43004300u));  // (a & b) | c
  __nv_bfloat162 a, b;
  memcpy(&a, &t, 4);
  memcpy(&b, &zz, 4);
  const __nv_bfloat162 d = __hsub2(a, b);
  uint32_t u;
  memcpy(&u, &d, 4);
  return u;
}

// ---- int8: two bytes -> an exact fp16 pair (gemv_int8_tc.cu's header explains the trick) ----
// Bytes sel (PRMT selector of the two bytes) of the flipped word u (q + 128) as the fp16 pair of their q.
__device__ __forceinline__ uint32_t deq_pair8(uint32_t u, uint32_t sel) {
  const uint32_t t = __byte_perm(u, 0x64646464u, sel);  // (0x64 << 8 | byte): 1024 + byte
  __half2 h;
  memcpy(&h, &t, 4);
  h = __hsub2(h, __half2(__ushort_as_half(0x6480), __ushort_as_half(0x6480)));  // - 1152 = - (1024 + 128)
  uint32_t r;
  memcpy(&r, &h, 4);
  return r;
}
// fp16 pair (lo, hi) from two floats, saturating at +-65504.
__device__ __forceinline__ uint32_t f16_pair(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// bf16x2 product of two packed pairs (round to nearest).
__device__ __forceinline__ uint32_t mul_bf16x2(uint32_t a, uint32_t b) {
  __nv_bfloat162 x, y;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  const __nv_bfloat162 r = __hmul2(x, y);
  uint32_t u;
  memcpy(&u, &r, 4);
  return u;
}

// bf16x2 a * b + c (one rounding).
__device__ __forceinline__ uint32_t fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
  __nv_bfloat162 x, y, z;
  memcpy(&x, &a, 4);
  memcpy(&y, &b, 4);
  memcpy(&z, &c, 4);
  const __nv_bfloat162 r = __hfma2(x, y, z);
  uint32_t u;
  memcpy(&u, &r, 4);
  return u;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

// ---- folded RMSNorm (GemvArgs / QGemvArgs: rms_ss, next_*; kernels.h explains) ----------------------
struct FoldArgs {
  const float* rms_ss = nullptr;  // consumer: rms_parts partial sums of x^2 per batch row, [part][B]
  int rms_parts = 0;
  float eps = 0.f;
  const float* next_w = nullptr;  // producer (kAddF32): the next norm's weight [N]
  void* next_h = nullptr;         // producer: [B, N] new x * next_w in the compute dtype
  float* next_ss = nullptr;       // producer: partial sums of the new x^2, [part][B]
};
constexpr int kFoldThreads = 128;  // the block size the fold helpers assume

// The fold fields of GemvArgs / QGemvArgs (same names in both).
template <typename Args>
inline FoldArgs fold_args(const Args& a) {
  FoldArgs f;
  f.rms_ss = a.rms_ss, f.rms_parts = a.rms_parts, f.eps = a.norm_eps;
  f.next_w = a.next_norm_w, f.next_h = a.next_h, f.next_ss = a.next_ss;
  return f;
}

// Consumer, batch 1: the first 1024 partials of rms_ss copied into shared memory (s_pre, 256 float4s:
// thread t copies float4s t and t + 128, zero-filled past the end) by cp.async at the kernel's start, so
// their latency hides behind the main loop without holding registers (8 live registers in the loop made
// the SwiGLU GEMV 20% slower on an H200). Nothing is copied for B > 1 (fold_inv_rms loads everything).
__device__ __forceinline__ void fold_prefetch(const FoldArgs& f, int B, float4* s_pre) {
  if (B != 1) return;
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    const int i4 = threadIdx.x + kFoldThreads * q;
    const bool ok = 4 * i4 + 4 <= f.rms_parts;
    const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(s_pre + i4));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(f.rms_ss + (ok ? 4 * i4 : 0)),
                 "r"(ok ? 16 : 0));
  }
  asm volatile("cp.async.commit_group;");
}

// Consumer: s_inv[b] = 1 / sqrt(sum_p rms_ss[p B + b] / K + eps) for b < B, summed by the whole block in
// a fixed order (thread, then warp, then the 4 warps). s_pre: fold_prefetch's copy (nullptr: everything
// is loaded here). Called by every thread; s_inv is shared memory, ready on return.
__device__ __forceinline__ void fold_inv_rms(const FoldArgs& f, int B, int K, const float4* s_pre, float* s_inv) {
  __shared__ float s_part[kFoldThreads / 32][8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // batch 1: the first min(parts / 4, 256) float4s are in s_pre (each thread reads its own copies)
  const bool pre = s_pre && B == 1;
  const int done = pre ? 4 * min(f.rms_parts / 4, 2 * kFoldThreads) : 0;
  if (pre) asm volatile("cp.async.wait_all;" ::: "memory");
  for (int b = 0; b < B; ++b) {
    float t = 0.f;
    if (pre && b == 0) {
      const float4 p0 = s_pre[threadIdx.x], p1 = s_pre[threadIdx.x + kFoldThreads];
      t = (p0.x + p0.y) + (p0.z + p0.w) + ((p1.x + p1.y) + (p1.z + p1.w));
    }
#pragma unroll 4
    for (int p = done + int(threadIdx.x); p < f.rms_parts; p += kFoldThreads) t += f.rms_ss[size_t(p) * B + b];
    t = warp_sum(t);
    if (lane == 0) s_part[warp][b] = t;
  }
  __syncthreads();
  if (threadIdx.x < B) {
    float t = 0.f;
#pragma unroll
    for (int w = 0; w < kFoldThreads / 32; ++w) t += s_part[w][threadIdx.x];
    s_inv[threadIdx.x] = rsqrtf(t / float(K) + f.eps);
  }
  __syncthreads();
}

// Producer of a kernel whose warps' lane 0 hold finished rows (the first 4 warps): sq[b] = the sum of this thread's new
// x^2 of batch row b (0 where it has none); the block's sums go to next_ss[blockIdx.x B + b]
// (the block's partials: one per block). Called by every thread.
template <int BMAX>
__device__ __forceinline__ void fold_block_ss(const FoldArgs& f, int B, const float (&sq)[BMAX]) {
  __shared__ float s_sq[kFoldThreads / 32][BMAX];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0 && warp < kFoldThreads / 32)  // (a block of more warps: the first 4 hold the rows)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) s_sq[warp][b] = sq[b];
  __syncthreads();
  if (threadIdx.x < B) {
    float t = 0.f;
#pragma unroll
    for (int w = 0; w < kFoldThreads / 32; ++w) t += s_sq[w][threadIdx.x];
    f.next_ss[size_t(blockIdx.x) * B + threadIdx.x] = t;
  }
}

// Stores the finished tile `tile` (rows 16 tile .. 16 tile + 15) from warp 0's fragments v:
// bf16 / f32 store, residual add (+ the partial sums of squares of the new rows into ss_out, see
// GemvArgs::ss_out), or SwiGLU of the fused gate/up rows (tile = 8 gate + the 8 matching up rows).
// Called by all 32 lanes of one warp (shuffles inside).
// With next_h (the folded norm's producer, kAddF32): also next_h[b, row] = bf16(new x * next_w[row]).
template <int EPI>
__device__ __forceinline__ void tile_epilogue(const float (&v)[4], int tile, int g, int c, int B, int N, void* out,
                                              int ldo, float* __restrict__ ss_out, const float* next_w = nullptr,
                                              bf16* next_h = nullptr) {
  const int row0 = tile * 16;
  if constexpr (EPI == int(GemvEpilogue::kSwiGLU)) {
    const int j = tile * 8 + g;  // N = 2 * hp with hp % 8 == 0: every tile is 8 gate + 8 up rows
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int b = 2 * c + i;
      if (b < B) static_cast<bf16*>(out)[size_t(b) * ldo + j] = __float2bfloat16(silu(v[i]) * v[i + 2]);
    }
  } else if constexpr (EPI == int(GemvEpilogue::kAddF32)) {
    // out += v; with ss_out also the sum of the new values' squares per batch row over the tile's
    // 16 rows (lanes of one c hold rows g, g + 8 of batch rows 2c, 2c + 1: reduce over g)
    float sq[2] = {0.f, 0.f};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int b = 2 * c + (i & 1), row = row0 + g + (i >> 1) * 8;
      if (b < B && row < N) {
        float* p = static_cast<float*>(out) + size_t(b) * ldo + row;
        const float nv = *p + v[i];
        *p = nv;
        sq[i & 1] = fmaf(nv, nv, sq[i & 1]);
        if (next_h) next_h[size_t(b) * N + row] = __float2bfloat16(nv * next_w[row]);
      }
    }
    if (ss_out) {
#pragma unroll
      for (int j = 0; j < 2; ++j)
        for (int o = 4; o < 32; o <<= 1) sq[j] += __shfl_xor_sync(0xffffffffu, sq[j], o);
      if (g == 0)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          if (2 * c + j < B) ss_out[size_t(tile) * B + 2 * c + j] = sq[j];
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int b = 2 * c + (i & 1), row = row0 + g + (i >> 1) * 8;
      if (b < B && row < N) epilogue_store<EPI>(out, ldo, b, row, v[i]);
    }
  }
}

// 16 bytes of weights, read once: no L1 allocation.
__device__ __forceinline__ uint4 ld_w16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t word_of4(const uint4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

// Scale i of an array of dtype code sdt (0 f32, 1 bf16, 2 f16; quant_kernels.h scale_code).
__device__ __forceinline__ float scale_at(const void* s, int sdt, size_t i) {
  if (sdt == 0) return __ldg(static_cast<const float*>(s) + i);
  const uint32_t h = __ldg(static_cast<const uint16_t*>(s) + i);
  return sdt == 1 ? __uint_as_float(h << 16) : __half2float(__ushort_as_half(uint16_t(h)));
}

// Split-K across blocks: block `split` of `splits` holds the partial tile v (warp 0's fragments). It
// writes v to ws[(split * B + b) * N + row] and bumps the tile's counter; the last block to arrive adds
// the parts in split order (deterministic) into v, resets the counter for the next launch and
// returns true (it then runs the epilogue); the others return false. Called by the 32 lanes of one warp.
__device__ __forceinline__ bool split_combine(float (&v)[4], int tile, int split, int splits, int B, int N,
                                              float* __restrict__ ws, unsigned* counters) {
  const int lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3, row0 = tile * 16;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int b = 2 * c + (i & 1), row = row0 + g + (i >> 1) * 8;
    if (b < B && row < N) ws[(size_t(split) * B + b) * N + row] = v[i];
  }
  __threadfence();
  __syncwarp();
  unsigned prev = 0;
  if (lane == 0) prev = atomicAdd(&counters[tile], 1u);
  prev = __shfl_sync(0xffffffffu, prev, 0);
  if (prev != unsigned(splits - 1)) return false;
  __threadfence();
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int b = 2 * c + (i & 1), row = row0 + g + (i >> 1) * 8;
    float s = 0.f;
    if (b < B && row < N)
      for (int sp = 0; sp < splits; ++sp) s += __ldcg(ws + (size_t(sp) * B + b) * N + row);
    v[i] = s;
  }
  if (lane == 0) counters[tile] = 0;
  return true;
}

// The end of a block of WARPS warps that each hold partial fragments acc of the same 16-row tile:
// the partials meet in shared memory and warp 0 runs tile_epilogue (with splits > 1, after
// split_combine, in the last block of the tile). Called by every thread.
// fold: the folded norm (K = the product's K; s_pre: the consumer's fold_prefetch copy): a consumer scales the tile by 1 / rms of each batch row
// (after the split sum), a producer writes next_h and one partial sum of squares per tile (next_ss).
template <int EPI, int WARPS>
__device__ __forceinline__ void finish_tile(const float (&acc)[4], int tile, int B, int N, void* out, int ldo,
                                            int split = 0, int splits = 1, float* __restrict__ ws = nullptr,
                                            unsigned* counters = nullptr, const FoldArgs& fold = FoldArgs{},
                                            int K = 0, const float4* s_pre = nullptr) {
  __shared__ float red[WARPS][4][32];
  __shared__ float s_inv[8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (fold.rms_ss) fold_inv_rms(fold, B, K, s_pre, s_inv);
#pragma unroll
  for (int i = 0; i < 4; ++i) red[warp][i][lane] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float v[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = red[0][i][lane];
#pragma unroll
    for (int w = 1; w < WARPS; ++w) v[i] += red[w][i][lane];
  }
  if (splits > 1 && !split_combine(v, tile, split, splits, B, N, ws, counters)) return;
  if (fold.rms_ss) {
    const int c = lane & 3;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int b = 2 * c + (i & 1);
      if (b < B) v[i] *= s_inv[b];
    }
  }
  tile_epilogue<EPI>(v, tile, lane >> 2, lane & 3, B, N, out, ldo, fold.next_ss, fold.next_w,
                     static_cast<bf16*>(fold.next_h));
}

// ---- mbarrier and bulk copies (Hopper): gemv_bulk.cu's pipeline, load_probe.cu's ring probe ----

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}
// bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned), completing on bar
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_u32(dst)),
               "l"(src), "r"(bytes), "r"(smem_u32(bar))
               : "memory");
}

}  // namespace ignis::cuda
