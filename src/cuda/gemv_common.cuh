// Device helpers shared by the tensor-core decode GEMVs (gemv.cu's register-streaming kernel and
// gemv_bulk.cu's bulk-copy kernel): the bf16 mma, and the epilogue of a finished 16-row tile.
//
// Fragment layout of a tile's result (mma.m16n8k16, accumulators of lane (g = lane / 4, c = lane % 4)):
//   v[0] = (row g, batch 2c), v[1] = (row g, batch 2c+1), v[2] = (row g+8, batch 2c), v[3] = (row g+8, batch 2c+1).
#pragma once
#include <cuda_fp16.h>

#include "cuda/common.h"
#include "cuda/kernels.h"

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

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &h, 4);
  return u;
}

// Stores the finished tile `tile` (rows 16 tile .. 16 tile + 15) from warp 0's fragments v:
// bf16 / f32 store, residual add (+ the partial sums of squares of the new rows into ss_out, see
// GemvArgs::ss_out), or SwiGLU of the fused gate/up rows (tile = 8 gate + the 8 matching up rows).
// Called by all 32 lanes of one warp (shuffles inside).
template <int EPI>
__device__ __forceinline__ void tile_epilogue(const float (&v)[4], int tile, int g, int c, int B, int N, void* out,
                                              int ldo, float* __restrict__ ss_out) {
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

// The end of a block of WARPS warps that each hold partial fragments acc of the same 16-row tile:
// the partials meet in shared memory and warp 0 runs tile_epilogue. Called by every thread.
template <int EPI, int WARPS>
__device__ __forceinline__ void finish_tile(const float (&acc)[4], int tile, int B, int N, void* out, int ldo) {
  __shared__ float red[WARPS][4][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
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
  tile_epilogue<EPI>(v, tile, lane >> 2, lane & 3, B, N, out, ldo, nullptr);
}

}  // namespace ignis::cuda
