// Flash attention for prefill (bf16, head size 64 or 128, one sequence): causal, grouped-query,
// online softmax, tensor cores (mma.sync m16n8k16, fp32 accumulation), as in FlashAttention-2.
//
// Block (query tile of 64, head h) with 4 warps; warp w owns query rows 16w..16w+15. Keys come
// from the KV cache of the sequence (so a chunked / continued prefill attends to everything
// before it): tiles of 64 keys of K and V are copied to shared memory with cp.async, double
// buffered, rows padded by 16 bytes (ldmatrix reads 8 rows at once: the pad puts them in 8
// different bank groups). Per key tile: S = Q K^T (Q fragments held in registers for the whole
// loop, K fragments by ldmatrix), causal mask, running max / sum per row in the exp2 domain, the
// S accumulators re-packed as bf16 A fragments of P (their layouts coincide), O += P V with V
// fragments by ldmatrix.trans. Nothing of size S x S touches global memory.
// Bytes: Q, O once; K and V once per query tile (n/64 times per kv head, L2-resident).
// Launch: grid (ceil(n / 64), nh), 128 threads, 5 * 64 * (hd + 8) * 2 bytes of shared memory.
#include "cuda/common.h"
#include "cuda/flash_common.cuh"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

using namespace flash;
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  flash::mma16816<bf16>(d, a, b0, b1);
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) { return pack2<bf16>(lo, hi); }

template <int HD>
__global__ void __launch_bounds__(kThreads, HD == 128 ? 2 : 4) flash_attn_kernel(AttnArgs a) {
  constexpr int LD = HD + 8;      // shared row stride in elements
  constexpr int CH = HD / 8;      // 16-byte chunks per row
  constexpr int KS = HD / 16;     // k-steps over the head dim
  constexpr int DB = HD / 8;      // 8-wide output column blocks
  constexpr int RP = kThreads / CH, NP = kBN / RP;  // rows copied per pass of the block, passes per tile
  static_assert(kThreads % CH == 0 && kBN % RP == 0 && kBM % RP == 0, "copy passes must tile the rows");
  extern __shared__ float4 smem_raw[];
  bf16* Qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* Ks = Qs + kBM * LD;       // [2][kBN][LD]
  bf16* Vs = Ks + 2 * kBN * LD;   // [2][kBN][LD]

  pdl_trigger();
  pdl_wait();
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const int h = blockIdx.y, kh = h / (a.nh / a.nkv);
  const int q0 = blockIdx.x * kBM;
  const int rows = min(kBM, a.n - q0);
  const int pos0 = a.pos[0];
  const int kv_end = min(a.ctx, pos0 + q0 + rows);  // keys [0, kv_end)
  const int n_tiles = (kv_end + kBN - 1) / kBN;
  const bf16* Q = static_cast<const bf16*>(a.q) + (size_t(q0) * a.nh + h) * HD;
  const size_t qstride = size_t(a.nh) * HD;
  const size_t cache_off = (size_t(a.slot0) * a.nkv + kh) * size_t(a.ctx) * HD;
  const bf16* K = static_cast<const bf16*>(a.k_cache) + cache_off;
  const bf16* V = static_cast<const bf16*>(a.v_cache) + cache_off;

  // Thread tid copies 16-byte chunk lc of rows lr, lr + RP, ... of every tile (running pointers,
  // compile-time shared offsets; see encoder_attention.cu for what the generic loop cost).
  const int lr = tid / CH, lc = (tid % CH) * 8;
  {
    const bf16* src = Q + size_t(lr) * qstride + lc;
#pragma unroll
    for (int i = 0; i < kBM / RP; ++i, src += size_t(RP) * qstride) {
      const int r = lr + i * RP;
      cp_async16(Qs + r * LD + lc, r < rows ? src : Q, r < rows);
    }
  }
  auto load_kv = [&](int j, int buf) {
    bf16* kd = Ks + buf * kBN * LD + lr * LD + lc;
    bf16* vd = Vs + buf * kBN * LD + lr * LD + lc;
    const size_t off = (size_t(j) * kBN + lr) * HD + lc;
#pragma unroll
    for (int i = 0; i < NP; ++i) {
      const bool ok = j * kBN + lr + i * RP < kv_end;  // rows past the end are zero-filled (never NaN garbage)
      cp_async16(kd + i * RP * LD, ok ? K + off + i * RP * HD : K, ok);
      cp_async16(vd + i * RP * LD, ok ? V + off + i * RP * HD : V, ok);
    }
  };
  load_kv(0, 0);
  cp_async_commit();

  const float sl2 = a.scale * kLog2e;
  const int qpos0 = pos0 + q0 + warp * 16 + g, qpos1 = qpos0 + 8;  // positions of this lane's two rows
  const int warp_last = pos0 + q0 + warp * 16 + 15;
  uint32_t qa[KS][4];
  float o[DB][4];
#pragma unroll
  for (int i = 0; i < DB; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int j = 0; j < n_tiles; ++j) {
    // One barrier per key tile: it publishes tile j (and Q) and tells every warp that all are done
    // with tile j - 1, whose buffer the copy of tile j + 1 then overwrites while tile j is computed.
    cp_async_wait<0>();
    __syncthreads();
    if (j + 1 < n_tiles) {
      load_kv(j + 1, (j + 1) & 1);
      cp_async_commit();
    }
    if (j == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) ldsm_x4(qa[ks], Qs + (warp * 16 + (lane & 15)) * LD + ks * 16 + (lane >> 4) * 8);
    }
    const bf16* kt = Ks + (j & 1) * kBN * LD;
    const bf16* vt = Vs + (j & 1) * kBN * LD;
    if (j * kBN <= warp_last) {  // else every key of the tile is in this warp's future
      float s[8][4];
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
        for (int nb = 0; nb < 8; nb += 2) {
          uint32_t b[4];
          const int mi = lane >> 3;
          ldsm_x4(b, kt + ((nb + (mi >> 1)) * 8 + (lane & 7)) * LD + ks * 16 + (mi & 1) * 8);
          mma16816(s[nb], qa[ks], b[0], b[1]);
          mma16816(s[nb + 1], qa[ks], b[2], b[3]);
        }
      }
      // causal mask (none where the tile's last key is visible to the warp's first row), running max
      // of the raw scores (the scale is positive: it is applied inside the exponent below)
      const bool visible = (j + 1) * kBN - 1 <= warp_last - 15;
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = j * kBN + nb * 8 + 2 * c + (e & 1);
          const int qp = e < 2 ? qpos0 : qpos1;
          const float v = visible || key <= qp ? s[nb][e] : -INFINITY;
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
      // b = the running max in the log2 domain; key 0 is never masked, so mn is finite once the first
      // tile is seen; guard anyway. p = 2^(s * scale * log2e - b): one FFMA and one MUFU per score.
      const float b0 = mn0 == -INFINITY ? 0.f : mn0 * sl2, b1 = mn1 == -INFINITY ? 0.f : mn1 * sl2;
      const float al0 = fast_exp2(m0 * sl2 - b0), al1 = fast_exp2(m1 * sl2 - b1);
      m0 = mn0, m1 = mn1;
      float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) {
        s[nb][0] = fast_exp2(fmaf(s[nb][0], sl2, -b0)), s[nb][1] = fast_exp2(fmaf(s[nb][1], sl2, -b0));
        s[nb][2] = fast_exp2(fmaf(s[nb][2], sl2, -b1)), s[nb][3] = fast_exp2(fmaf(s[nb][3], sl2, -b1));
        rs0 += s[nb][0] + s[nb][1];
        rs1 += s[nb][2] + s[nb][3];
      }
      l0 = l0 * al0 + rs0;
      l1 = l1 * al1 + rs1;
#pragma unroll
      for (int db = 0; db < DB; ++db) o[db][0] *= al0, o[db][1] *= al0, o[db][2] *= al1, o[db][3] *= al1;
      // O += P V
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[4];
        pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int db = 0; db < DB; db += 2) {
          uint32_t b[4];
          const int mi = lane >> 3;
          ldsm_x4_t(b, vt + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * LD + (db + (mi >> 1)) * 8);
          mma16816(o[db], pa, b[0], b[1]);
          mma16816(o[db + 1], pa, b[2], b[3]);
        }
      }
    }
  }

#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float inv0 = 1.f / l0, inv1 = 1.f / l1;
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  bf16* out = static_cast<bf16*>(a.out) + (size_t(q0) * a.nh + h) * HD;
#pragma unroll
  for (int db = 0; db < DB; ++db) {
    const int col = db * 8 + 2 * c;
    if (r0 < rows)
      *reinterpret_cast<uint32_t*>(out + r0 * qstride + col) = pack_bf16(o[db][0] * inv0, o[db][1] * inv0);
    if (r1 < rows)
      *reinterpret_cast<uint32_t*>(out + r1 * qstride + col) = pack_bf16(o[db][2] * inv1, o[db][3] * inv1);
  }
}

template <int HD>
void launch_hd(const AttnArgs& a, cudaStream_t stream) {
  const size_t smem = size_t(5) * kBM * (HD + 8) * 2;
  static bool configured = false;
  if (!configured) {
    CUDA_CHECK(cudaFuncSetAttribute(flash_attn_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
  }
  launch(flash_attn_kernel<HD>, dim3(ceil_div(a.n, kBM), a.nh), dim3(kThreads), smem, stream, a);
}

}  // namespace

bool flash_attention_supported(const AttnArgs& a) {
  return a.dtype == DType::BF16 && (a.hd == 64 || a.hd == 128) && a.q_per_seq == a.n && a.n_splits == 1 &&
         a.nkv > 0 && a.nh % a.nkv == 0;
}

void launch_flash_attention(const AttnArgs& a, cudaStream_t stream) {
  if (a.hd == 64)
    launch_hd<64>(a, stream);
  else
    launch_hd<128>(a, stream);
}

}  // namespace ignis::cuda
