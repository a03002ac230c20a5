// The tensor-core flash attention of one encoder work item (query tile of 64 rows of one sequence,
// head h), as a block-level device function: the body of encoder_attention.cu's flash kernel, and
// the attention phase of the persistent small-bucket encoder (encoder_fused.cu). 4 warps (128
// threads) of the calling block; shared memory (64 + 4 * 64) * (HD + 8) * 2 bytes at `smem`
// (16-byte aligned). q / k / v are read with cp.async.cg (through L2, never a stale L1 line: the
// fused kernel reads what other blocks of the same launch wrote). Also the mma / ldmatrix /
// cp.async helpers both files use. nvcc only.
#pragma once
#include <cuda_fp16.h>

#include <type_traits>

#include "cuda/encoder_common.cuh"
#include "cuda/encoder_kernels.h"

namespace ignis::cuda::enc {

constexpr int kFlashBM = kEncoderAttnTile, kFlashBN = 64, kFlashThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// D += A B for 16x16 A (row) and 16x8 B (col) of T (half or bf16), fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
// Two floats as a packed pair of T (lo in the low half).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// Shared memory of enc_flash_tile<T, HD> in bytes.
constexpr int enc_flash_smem(int hd) { return (kFlashBM + 4 * kFlashBN) * (hd + 8) * 2; }

// Attention of work item t (the t-th entry of a.batch.tiles) for head h. Ends with a block barrier
// after its last shared-memory read (the caller may reuse the buffers at once).
template <typename T, int HD>
__device__ __forceinline__ void enc_flash_tile(const EncAttnArgs& a, int t, int h, float4* smem_raw) {
  constexpr int LD = HD + 8;  // shared row stride in elements
  constexpr int CH = HD / 8;  // 16-byte chunks per row
  constexpr int KS = HD / 16; // k-steps over the head dim
  constexpr int DB = HD / 8;  // 8-wide output column blocks
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = Qs + kFlashBM * LD;      // [2][kFlashBN][LD]
  T* Vs = Ks + 2 * kFlashBN * LD;  // [2][kFlashBN][LD]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const int H = a.nh * HD;
  const size_t ld = size_t(3) * H;  // row stride of qkv
  const float sl2 = a.scale * kLog2e;
  const int b = a.batch.tiles[2 * t], q0 = a.batch.tiles[2 * t + 1];
  const int s0 = a.batch.offsets[b], len = a.batch.offsets[b + 1] - s0;
  const int rows = min(kFlashBM, len - q0);
  const int n_tiles = (len + kFlashBN - 1) / kFlashBN;
  const T* Q = static_cast<const T*>(a.qkv) + size_t(s0 + q0) * ld + h * HD;
  const T* K = static_cast<const T*>(a.qkv) + size_t(s0) * ld + H + h * HD;
  const T* V = K + H;

  for (int e = tid; e < kFlashBM * CH; e += kFlashThreads) {
    const int r = e / CH, col = (e % CH) * 8;
    cp_async16(Qs + r * LD + col, r < rows ? Q + r * ld + col : Q, r < rows);
  }
  auto load_kv = [&](int j, int buf) {
    T* kd = Ks + buf * kFlashBN * LD;
    T* vd = Vs + buf * kFlashBN * LD;
    for (int e = tid; e < kFlashBN * CH; e += kFlashThreads) {
      const int r = e / CH, col = (e % CH) * 8, key = j * kFlashBN + r;
      const bool ok = key < len;  // rows past the end are zero-filled (never NaN garbage)
      cp_async16(kd + r * LD + col, ok ? K + size_t(key) * ld + col : K, ok);
      cp_async16(vd + r * LD + col, ok ? V + size_t(key) * ld + col : V, ok);
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  uint32_t qa[KS][4];
  float o[DB][4];
#pragma unroll
  for (int i = 0; i < DB; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int j = 0; j < n_tiles; ++j) {
    if (j + 1 < n_tiles) {
      load_kv(j + 1, (j + 1) & 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks)
        ldsm_x4(qa[ks], Qs + (warp * 16 + (lane & 15)) * LD + ks * 16 + (lane >> 4) * 8);
    }
    const T* kt = Ks + (j & 1) * kFlashBN * LD;
    const T* vt = Vs + (j & 1) * kFlashBN * LD;
    // S = Q K^T for this warp's 16 rows x 64 keys
    float s[8][4];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int nb = 0; nb < 8; nb += 2) {
        uint32_t bb[4];
        const int mi = lane >> 3;
        ldsm_x4(bb, kt + ((nb + (mi >> 1)) * 8 + (lane & 7)) * LD + ks * 16 + (mi & 1) * 8);
        mma16816<T>(s[nb], qa[ks], bb[0], bb[1]);
        mma16816<T>(s[nb + 1], qa[ks], bb[2], bb[3]);
      }
    }
    // mask keys past the end of the sequence (only the last tile has any), scale (log2 domain),
    // running max of each row
    const bool full = (j + 1) * kFlashBN <= len;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j * kFlashBN + nb * 8 + 2 * c + (e & 1);
        const float v = full || key < len ? s[nb][e] * sl2 : -INFINITY;
        s[nb][e] = v;
        if (e < 2)
          mx0 = fmaxf(mx0, v);
        else
          mx1 = fmaxf(mx1, v);
      }
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    // key 0 is in the first tile, so mn is finite from then on; guard anyway
    const float b0 = mn0 == -INFINITY ? 0.f : mn0, b1 = mn1 == -INFINITY ? 0.f : mn1;
    const float al0 = exp2f(m0 - b0), al1 = exp2f(m1 - b1);
    m0 = mn0, m1 = mn1;
    float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
      s[nb][0] = exp2f(s[nb][0] - b0), s[nb][1] = exp2f(s[nb][1] - b0);
      s[nb][2] = exp2f(s[nb][2] - b1), s[nb][3] = exp2f(s[nb][3] - b1);
      rs0 += s[nb][0] + s[nb][1];
      rs1 += s[nb][2] + s[nb][3];
    }
    l0 = l0 * al0 + rs0;
    l1 = l1 * al1 + rs1;
#pragma unroll
    for (int db = 0; db < DB; ++db) o[db][0] *= al0, o[db][1] *= al0, o[db][2] *= al1, o[db][3] *= al1;
    // O += P V (the S accumulators re-packed as A fragments of P)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t pa[4];
      pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int db = 0; db < DB; db += 2) {
        uint32_t bb[4];
        const int mi = lane >> 3;
        ldsm_x4_t(bb, vt + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * LD + (db + (mi >> 1)) * 8);
        mma16816<T>(o[db], pa, bb[0], bb[1]);
        mma16816<T>(o[db + 1], pa, bb[2], bb[3]);
      }
    }
    __syncthreads();  // the next iteration (or work item) overwrites the buffers just read
  }

#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float inv0 = 1.f / l0, inv1 = 1.f / l1;
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  T* out = static_cast<T*>(a.out) + size_t(s0 + q0) * H + h * HD;
#pragma unroll
  for (int db = 0; db < DB; ++db) {
    const int col = db * 8 + 2 * c;
    if (r0 < rows) *reinterpret_cast<uint32_t*>(out + size_t(r0) * H + col) = pack2<T>(o[db][0] * inv0, o[db][1] * inv0);
    if (r1 < rows) *reinterpret_cast<uint32_t*>(out + size_t(r1) * H + col) = pack2<T>(o[db][2] * inv1, o[db][3] * inv1);
  }
}

}  // namespace ignis::cuda::enc
