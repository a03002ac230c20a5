// Skinny GEMM for decode: y[B, N] = x[B, K] W[N, K]^T for B = 1..8 sequences, fp32 accumulation,
// with the epilogues of kernels.h (store, store f32, residual add, SwiGLU of a fused gate/up weight).
//
// Decode is memory-bound: every weight byte is read once per step and used B <= 8 times, so the
// only goal is to stream W at the memory bandwidth. Bytes moved: N*K*sizeof(T) of W (+ B*K of x,
// served from L1/L2, + B*N outputs). Two kernels:
//
// gemv_tc_kernel (bf16, K % 8 == 0): tensor cores as a bandwidth trick, not for flops. A warp owns
//   a tile of 16 rows of W and walks K in steps of 32: lane (g = lane/4, c = lane%4) loads 16 bytes
//   (8 bf16) of rows g and g+8 at k = 8c, which are exactly the A fragments of two
//   mma.m16n8k16 (the dot product does not care in which order k is summed, so the "k" slots of
//   a fragment may hold any physical k as long as A and B agree); the B fragment is x[b = g] at the
//   same k (lanes with g >= B load zeros). So each 16-byte load of W is used as-is, for every B
//   at once, with no shuffles, no conversions and no FMA pipe pressure (at B = 8 the CUDA-core
//   version needs ~13 instructions per weight). U = 4 steps are loaded per batch, and two
//   batches are in flight (double-buffered registers): 16 x 16 B per lane, 8 KB per warp.
//   Launch: grid (ceil(N/16), splits), 128 threads; the 4 warps of a block share the 16 rows and
//   take super-blocks of 128 k in turn; partial sums meet in shared memory. When N is small
//   (few tiles for the 132 SMs) K is also split across `splits` blocks: partials go to a fp32
//   workspace, the last block of a tile (atomic counter) adds them in a fixed order (deterministic)
//   and runs the epilogue, then re-zeroes the counter for the next launch.
//   With PDL the first weights are loaded before griddepcontrol.wait, overlapping the previous
//   kernel's tail (weights never depend on it).
//   Fused RMSNorm (NORM = true, GemvArgs::norm_w set): x is the fp32 residual stream and the
//   product uses h = bf16(x / rms(x) * norm_w), the exact values the rmsnorm kernel would have
//   written. Each block first sums x^2 over K for its B rows (one warp per row, 4*K bytes from
//   L2 per row: small next to the block's 16 rows of W), then builds the B fragments from x and
//   norm_w on the fly. This removes the separate RMSNorm launch before the q/k/v, gate/up and
//   output-head products (65 of a 7B step's ~290 launches). The sum of squares pass (every block
//   re-reads all of x from L2 before its first mma) measured slower on an H100 than the separate
//   kernel, so the model takes the sum from the previous GEMV instead (ss_in / ss_out): the
//   residual-add GEMV (Wo, down) that last wrote x has each tile's finishing warp write the sum
//   of the squares of its 16 new x values per batch row (a few shuffles), and the next fused-norm
//   GEMV adds those ceil(K/16) partials (1 KB for K = 4096) in a fixed order. Only layer 0's first
//   product, whose x comes from the embedding, sums x itself.
//
// gemv_simple_kernel (any T, any K): one warp per output row (two rows for SwiGLU), lanes stride
//   over K with vector loads as wide as K's alignment allows, warp-shuffle reduction. Used for
//   fp32 models, odd K, batch 1 (where it streams best), and as a fallback (IGNIS_GEMV=simple).
//   Launch: ceil(outputs/4) x 128. Tried and removed: a batch-1 K loop with two register buffers
//   of U 16-byte vectors a lane (all U loads issued before the FMAs; H200, 2026-12-03, Llama-2-7B
//   b1: U = 4 260.1, U = 8 243.3 tok/s against 264.2 for this loop, whose ptxas schedule keeps
//   ~2 loads a lane in flight; docs/results/abattn-H200-20261203.txt).
//   Folded RMSNorm (GemvArgs::rms_ss / next_ss, batch-1 decode): rmsnorm(x) * w = (x * w) / rms(x),
//   and the division commutes with the product, so the residual GEMV that writes x also writes
//   bf16(x * w_next) and per-block sums of x^2 in its epilogue, and the next GEMV multiplies its dot
//   products by 1 / rms at the end. The sums are loaded before the main loop and added after it:
//   unlike the fused norm above, nothing waits for the rms before the weights stream, and the
//   RMSNorm launch between the two products goes (64 of the ~290 launches of a 7B step).
//   The input the product sees is bf16(x * w) instead of bf16(x / rms * w): the same relative
//   rounding, other ties.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cuda/common.h"
#include "cuda/gemv_common.cuh"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kU = 4;            // 32-k steps loaded per warp per batch (8 measured no better)
constexpr int kSuper = 32 * kU;  // k per super-block

// Weights are read once: no L1 allocation. HINT adds the L2::256B prefetch-size hint (a miss
// fetches the whole 256-byte block: the warp reads the rest of each row's block next steps).
template <bool HINT>
__device__ __forceinline__ uint4 ld_stream(const bf16* p) {
  uint4 v;
  if constexpr (HINT)
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
  else
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
  return v;
}

template <int EPI, bool NORM, bool HINT>
__global__ void __launch_bounds__(kWarps * 32) gemv_tc_kernel(const bf16* __restrict__ W, const void* __restrict__ xin,
                                                              int B, int N, int K, void* out, int ldo,
                                                              float* __restrict__ ws, unsigned* counters,
                                                              const float* __restrict__ norm_w, float eps,
                                                              const float* __restrict__ ss_in,
                                                              float* __restrict__ ss_out) {
  const bf16* x = static_cast<const bf16*>(xin);
  const float* xf = static_cast<const float*>(xin);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int tile = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const int row0 = tile * 16;
  const int nsb = (K + kSuper - 1) / kSuper;
  const int per = (nsb + splits - 1) / splits;
  const int sb_begin = split * per, sb_end = min(nsb, sb_begin + per);

  // Rows past N read row N-1 (valid memory); their results are never stored.
  const bf16* wa = W + size_t(min(row0 + g, N - 1)) * K + 8 * c;
  const bf16* wb = W + size_t(min(row0 + g + 8, N - 1)) * K + 8 * c;
  const bf16* xp = x + size_t(min(g, B - 1)) * K + 8 * c;
  const float* xfp = xf + size_t(min(g, B - 1)) * K + 8 * c;
  const float* nwp = norm_w + 8 * c;
  const bool x_row = g < B;

  // Two register buffers of kU steps: the loads of super-block sb + 2*kWarps are issued before
  // the data of sb + kWarps is used, so two batches (8 KB per warp) are always in flight.
  uint4 a0_lo[kU], a0_hi[kU], a1_lo[kU], a1_hi[kU];
  auto load_w = [&](uint4 (&lo)[kU], uint4 (&hi)[kU], int sb) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int k = sb * kSuper + 32 * u + 8 * c;
      if (k < K) {
        lo[u] = ld_stream<HINT>(wa + sb * kSuper + 32 * u);
        hi[u] = ld_stream<HINT>(wb + sb * kSuper + 32 * u);
      } else {
        lo[u] = make_uint4(0, 0, 0, 0);
        hi[u] = make_uint4(0, 0, 0, 0);
      }
    }
  };

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  int sb = sb_begin + warp;
  // weights are constant: safe to load before the PDL wait
  if (sb < sb_end) load_w(a0_lo, a0_hi, sb);
  if (sb + kWarps < sb_end) load_w(a1_lo, a1_hi, sb + kWarps);
  pdl_wait();
  float inv_rms = 0.f;  // 1 / rms of this lane's batch row (NORM)
  if constexpr (NORM) {
    __shared__ float s_part[8][kWarps];
    const int gb = min(g, B - 1);
    float ss = 0.f;
    if (ss_in) {
      // the producer's per-tile partials: warp w adds those of batch rows w, w + 4
      const int parts = (K + 15) / 16;
      for (int b = warp; b < B; b += kWarps) {
        float t = 0.f;
        for (int p = lane; p < parts; p += 32) t += __ldg(ss_in + size_t(p) * B + b);
        t = warp_sum(t);
        if (lane == 0) s_part[b][0] = t;
      }
      __syncthreads();
      ss = s_part[gb][0];
    } else {
      // all 128 threads sum x^2 of each batch row, loads unrolled so they are in flight together
      for (int b = 0; b < B; ++b) {
        const float4* xr = reinterpret_cast<const float4*>(xf + size_t(b) * K);
        float t = 0.f;
#pragma unroll 8
        for (int i = threadIdx.x; i < K / 4; i += kWarps * 32) {
          const float4 v = __ldg(xr + i);
          t = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, t))));
        }
        t = warp_sum(t);
        if (lane == 0) s_part[b][warp] = t;
      }
      __syncthreads();
#pragma unroll
      for (int w = 0; w < kWarps; ++w) ss += s_part[gb][w];
    }
    inv_rms = rsqrtf(ss / float(K) + eps);
  }
  // x fragments of super-block sb, then the mma of the weights held in lo/hi
  auto step = [&](const uint4 (&lo)[kU], const uint4 (&hi)[kU], int sb) {
    uint4 xv[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int k = sb * kSuper + 32 * u + 8 * c;
      if (!(x_row && k < K)) {
        xv[u] = make_uint4(0, 0, 0, 0);
      } else if constexpr (NORM) {
        // h = x * inv_rms * w, in the rmsnorm kernel's order of operations, rounded to bf16
        const float4 x0 = __ldg(reinterpret_cast<const float4*>(xfp + sb * kSuper + 32 * u));
        const float4 x1 = __ldg(reinterpret_cast<const float4*>(xfp + sb * kSuper + 32 * u + 4));
        const float4 w0 = __ldg(reinterpret_cast<const float4*>(nwp + sb * kSuper + 32 * u));
        const float4 w1 = __ldg(reinterpret_cast<const float4*>(nwp + sb * kSuper + 32 * u + 4));
        xv[u].x = pack_bf16x2(x0.x * inv_rms * w0.x, x0.y * inv_rms * w0.y);
        xv[u].y = pack_bf16x2(x0.z * inv_rms * w0.z, x0.w * inv_rms * w0.w);
        xv[u].z = pack_bf16x2(x1.x * inv_rms * w1.x, x1.y * inv_rms * w1.y);
        xv[u].w = pack_bf16x2(x1.z * inv_rms * w1.z, x1.w * inv_rms * w1.w);
      } else {
        xv[u] = __ldg(reinterpret_cast<const uint4*>(xp + sb * kSuper + 32 * u));
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      mma_bf16(acc, lo[u].x, hi[u].x, lo[u].y, hi[u].y, xv[u].x, xv[u].y);
      mma_bf16(acc, lo[u].z, hi[u].z, lo[u].w, hi[u].w, xv[u].z, xv[u].w);
    }
  };
  while (sb < sb_end) {
    step(a0_lo, a0_hi, sb);
    if (sb + 2 * kWarps < sb_end) load_w(a0_lo, a0_hi, sb + 2 * kWarps);
    sb += kWarps;
    if (sb >= sb_end) break;
    step(a1_lo, a1_hi, sb);
    if (sb + 2 * kWarps < sb_end) load_w(a1_lo, a1_hi, sb + 2 * kWarps);
    sb += kWarps;
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)

  // acc: [0] = (row g, b 2c), [1] = (row g, b 2c+1), [2] = (row g+8, b 2c), [3] = (row g+8, b 2c+1)
  __shared__ float red[kWarps][4][32];
#pragma unroll
  for (int i = 0; i < 4; ++i) red[warp][i][lane] = acc[i];
  __syncthreads();
  if (warp != 0) return;
  float v[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    v[i] = red[0][i][lane];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) v[i] += red[w][i][lane];
  }

  if (splits > 1 && !split_combine(v, tile, split, splits, B, N, ws, counters)) return;

  tile_epilogue<EPI>(v, tile, g, c, B, N, out, ldo, ss_out);
}

// ---- simple CUDA-core version ----------------------------------------------------------------------

template <typename T, int EPI>
__device__ __forceinline__ void simple_store(void* out, int ldo, int b, int row, float v) {
  if constexpr (EPI == int(GemvEpilogue::kStore) || EPI == int(GemvEpilogue::kSwiGLU)) {
    static_cast<T*>(out)[size_t(b) * ldo + row] = from_f<T>(v);
  } else if constexpr (EPI == int(GemvEpilogue::kStoreF32)) {
    static_cast<float*>(out)[size_t(b) * ldo + row] = v;
  } else {
    static_cast<float*>(out)[size_t(b) * ldo + row] += v;
  }
}

constexpr int kSimpleWarps = kFoldThreads / 32;  // rows (outputs) per block of the CUDA-core kernel

// FIN: the input is h = x * norm_w (not yet divided by rms(x)); every dot product is multiplied by
// 1 / rms from rms_ss. At batch 1 the block copies the first 1024 partials into shared memory before
// its main loop (fold_prefetch: their latency hides behind the weight stream) and sums them after it,
// so nothing waits for the rms before the first FMA.
// FOUT (kAddF32): after x += y, lane 0 of each row also writes T(x * next_w) and the block the sum of
// its rows' new x^2 per batch row: the next FIN GEMV's input, without an RMSNorm launch in between.
// KS = 2 (the batch-1 producer only, FOUT): 8 warps a block, two per row, each taking every other
// 32 VEC chunk of K; the upper four hand their sums to the lower four, which run the epilogue. Twice
// the warps for the products with few rows (Wo, down: 4096 rows = 31 warps a SM at KS = 1).
template <typename T, int VEC, int BMAX, int EPI, bool FIN, bool FOUT, int KS = 1>
__global__ void __launch_bounds__(128 * KS) gemv_simple_kernel(const T* __restrict__ W, const T* __restrict__ x, int B,
                                                                int N, int K, void* out, int ldo, FoldArgs f) {
  static_assert(KS == 1 || (KS == 2 && FOUT && !FIN), "K split over two warps: the folded producer only");
  constexpr int R = EPI == int(GemvEpilogue::kSwiGLU) ? 2 : 1;
  const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) % kSimpleWarps, half = (threadIdx.x >> 5) / kSimpleWarps;
  const int j = blockIdx.x * kSimpleWarps + warp;
  const int n_out = R == 2 ? N / 2 : N;
  const bool active = j < n_out;
  if constexpr (!FIN && !FOUT) {
    if (!active) return;
  }
  pdl_wait();
  __shared__ float4 s_pre[FIN ? 2 * kFoldThreads : 1];
  if constexpr (FIN) fold_prefetch(f, B, s_pre);
  int rows[R];
  // (FIN / FOUT: warps past the end compute the last row again, not stored: they stay for the block's sums)
  const int jr = min(j, n_out - 1);
  rows[0] = R == 2 ? int(swiglu_row_of_gate(jr)) : jr;
  if constexpr (R == 2) rows[1] = rows[0] + 8;
  float acc[R][BMAX];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.f;
  for (int k = (half * 32 + lane) * VEC; k < K; k += 32 * VEC * KS) {
    float w[R][VEC];
#pragma unroll
    for (int r = 0; r < R; ++r) load_vec<T, VEC>(W + size_t(rows[r]) * K + k, w[r]);
#pragma unroll
    for (int b = 0; b < BMAX; ++b) {
      if (b < B) {
        float xv[VEC];
        load_vec<T, VEC>(x + size_t(b) * K + k, xv);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[r][b] = fmaf(w[r][e], xv[e], acc[r][b]);
      }
    }
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  __shared__ float s_inv[8];
  if constexpr (FIN) fold_inv_rms(f, B, K, s_pre, s_inv);
  [[maybe_unused]] float sq[BMAX];  // FOUT: lane 0's new x^2 per batch row (0 for inactive rows)
  if constexpr (KS == 2) {  // the upper half's sums to the lower half
    __shared__ float s_half[kSimpleWarps][BMAX];
    float t[BMAX];
#pragma unroll
    for (int b = 0; b < BMAX; ++b) {
      t[b] = warp_sum(acc[0][b]);
      if (half == 1 && lane == 0) s_half[warp][b] = t[b];
    }
    __syncthreads();
#pragma unroll  // lane 0 of the lower warp holds the row's sum (the warp sum below adds zeros to it)
    for (int b = 0; b < BMAX; ++b) acc[0][b] = lane == 0 && half == 0 ? t[b] + s_half[warp][b] : 0.f;
  }
#pragma unroll
  for (int b = 0; b < BMAX; ++b) {
    if constexpr (FOUT) sq[b] = 0.f;
    if (b >= B) break;
    float s[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      s[r] = warp_sum(acc[r][b]);
      if constexpr (FIN) s[r] *= s_inv[b];
    }
    if (lane == 0 && active && half == 0) {
      if constexpr (R == 2) {
        simple_store<T, EPI>(out, ldo, b, j, silu(s[0]) * s[1]);
      } else if constexpr (FOUT) {  // kAddF32: x += y, and the next norm's input
        float* xo = static_cast<float*>(out) + size_t(b) * ldo + j;
        const float xn = *xo + s[0];
        *xo = xn;
        static_cast<T*>(f.next_h)[size_t(b) * N + j] = from_f<T>(xn * f.next_w[j]);
        sq[b] = xn * xn;
      } else {
        simple_store<T, EPI>(out, ldo, b, j, s[0]);
      }
    }
  }
  if constexpr (FOUT) fold_block_ss(f, B, sq);
}

// The batch-1 folded producer (Wo, down) runs with two warps per row (KS = 2) unless IGNIS_GEMV_KSPLIT=1.
// H200 2026-12-03 (same call, `gpu-check.sh abenv`): Llama-2-7B b1 275.3-275.8 -> 279.8-280.9 tok/s,
// Llama-3-8B 238.9-239.7 -> 241.8-242.4 (4,096-row products: 31 warps an SM at KS = 1, 62 at KS = 2).
int producer_ksplit() {
  static const int v = [] {
    const char* e = std::getenv("IGNIS_GEMV_KSPLIT");
    return e && std::strcmp(e, "1") == 0 ? 1 : 2;
  }();
  return v;
}

template <typename T, int VEC, int BMAX, int EPI>
void launch_simple_b(const GemvArgs& a, dim3 grid, int ldo, cudaStream_t stream) {
  const T* W = static_cast<const T*>(a.W);
  const T* x = static_cast<const T*>(a.x);
  FoldArgs f = fold_args(a);
  if (f.rms_parts <= 0) f.rms_parts = gemv_fold_parts(a.K);  // (GemvArgs::rms_parts: 0 = this kernel's producer)
  const bool fin = a.rms_ss != nullptr;
  if constexpr (EPI == int(GemvEpilogue::kAddF32)) {
    if constexpr (BMAX == 1) {
      if (a.next_ss && producer_ksplit() == 2)
        return launch(gemv_simple_kernel<T, VEC, BMAX, EPI, false, true, 2>, grid, dim3(256), 0, stream, W, x, a.B, a.N,
                      a.K, a.out, ldo, f);
    }
    if (a.next_ss)  // (not with rms_ss: gemv() checks)
      return launch(gemv_simple_kernel<T, VEC, BMAX, EPI, false, true>, grid, dim3(128), 0, stream, W, x, a.B, a.N, a.K,
                    a.out, ldo, f);
  }
  if (fin)
    return launch(gemv_simple_kernel<T, VEC, BMAX, EPI, true, false>, grid, dim3(128), 0, stream, W, x, a.B, a.N, a.K,
                  a.out, ldo, f);
  launch(gemv_simple_kernel<T, VEC, BMAX, EPI, false, false>, grid, dim3(128), 0, stream, W, x, a.B, a.N, a.K, a.out,
         ldo, f);
}

template <typename T, int VEC, int EPI>
void launch_simple(const GemvArgs& a, int ldo, cudaStream_t stream) {
  const int n_out = a.epi == GemvEpilogue::kSwiGLU ? a.N / 2 : a.N;
  const dim3 grid(ceil_div(n_out, kSimpleWarps));
  if (a.B <= 1) return launch_simple_b<T, VEC, 1, EPI>(a, grid, ldo, stream);
  if (a.B <= 4) return launch_simple_b<T, VEC, 4, EPI>(a, grid, ldo, stream);
  launch_simple_b<T, VEC, 8, EPI>(a, grid, ldo, stream);
}

template <typename T, int EPI>
void dispatch_simple_vec(const GemvArgs& a, int ldo, cudaStream_t stream) {
  constexpr int kMax = 16 / int(sizeof(T));
  if (a.K % kMax == 0)
    launch_simple<T, kMax, EPI>(a, ldo, stream);
  else if (a.K % 4 == 0)
    launch_simple<T, 4, EPI>(a, ldo, stream);
  else if (a.K % 2 == 0)
    launch_simple<T, 2, EPI>(a, ldo, stream);
  else
    launch_simple<T, 1, EPI>(a, ldo, stream);
}

template <typename T>
void dispatch_simple(const GemvArgs& a, int ldo, cudaStream_t stream) {
  switch (a.epi) {
    case GemvEpilogue::kStore: return dispatch_simple_vec<T, int(GemvEpilogue::kStore)>(a, ldo, stream);
    case GemvEpilogue::kStoreF32: return dispatch_simple_vec<T, int(GemvEpilogue::kStoreF32)>(a, ldo, stream);
    case GemvEpilogue::kAddF32: return dispatch_simple_vec<T, int(GemvEpilogue::kAddF32)>(a, ldo, stream);
    case GemvEpilogue::kSwiGLU: return dispatch_simple_vec<T, int(GemvEpilogue::kSwiGLU)>(a, ldo, stream);
  }
}

// IGNIS_GEMV=simple|tc|bulk: the kernel kAuto takes (where it applies).
GemvImpl env_impl() {
  static const GemvImpl v = [] {
    const char* e = std::getenv("IGNIS_GEMV");
    if (!e) return GemvImpl::kAuto;
    if (std::strcmp(e, "simple") == 0) return GemvImpl::kSimple;
    if (std::strcmp(e, "tc") == 0) return GemvImpl::kTensorCore;
    if (std::strcmp(e, "bulk") == 0) return GemvImpl::kBulk;
    return GemvImpl::kAuto;
  }();
  return v;
}
bool force_simple() { return env_impl() == GemvImpl::kSimple; }


template <bool NORM, bool U>
void launch_tc(const GemvArgs& a, dim3 grid, dim3 block, int ldo, cudaStream_t stream) {
  const bf16* W = static_cast<const bf16*>(a.W);
  switch (a.epi) {
    case GemvEpilogue::kStore:
      return launch(gemv_tc_kernel<int(GemvEpilogue::kStore), NORM, U>, grid, block, 0, stream, W, a.x, a.B, a.N,
                    a.K, a.out, ldo, a.ws, a.counters, a.norm_w, a.norm_eps, a.ss_in, a.ss_out);
    case GemvEpilogue::kStoreF32:
      return launch(gemv_tc_kernel<int(GemvEpilogue::kStoreF32), NORM, U>, grid, block, 0, stream, W, a.x, a.B, a.N,
                    a.K, a.out, ldo, a.ws, a.counters, a.norm_w, a.norm_eps, a.ss_in, a.ss_out);
    case GemvEpilogue::kAddF32:
      return launch(gemv_tc_kernel<int(GemvEpilogue::kAddF32), NORM, U>, grid, block, 0, stream, W, a.x, a.B, a.N,
                    a.K, a.out, ldo, a.ws, a.counters, a.norm_w, a.norm_eps, a.ss_in, a.ss_out);
    case GemvEpilogue::kSwiGLU:
      return launch(gemv_tc_kernel<int(GemvEpilogue::kSwiGLU), NORM, U>, grid, block, 0, stream, W, a.x, a.B, a.N,
                    a.K, a.out, ldo, a.ws, a.counters, a.norm_w, a.norm_eps, a.ss_in, a.ss_out);
  }
}

// IGNIS_GEMV_L2_256=1: loads with the L2::256B prefetch hint (for A/B measurements).
bool gemv_l2_hint() {
  static const bool v = [] {
    const char* e = std::getenv("IGNIS_GEMV_L2_256");
    return e && std::strcmp(e, "1") == 0;
  }();
  return v;
}

}  // namespace

bool device_has_bulk_copy() {  // sm_90+ (cached for the current device at first use)
  static const bool v = [] {
    int dev = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major >= 9;
  }();
  return v;
}

int gemv_fold_parts(int N) { return ceil_div(N, kSimpleWarps); }
bool gemv_fold_ok(int B) { return B == 1 && (env_impl() == GemvImpl::kAuto || env_impl() == GemvImpl::kSimple); }

bool gemv_fused_norm_ok(DType dtype, int K) { return dtype == DType::BF16 && K % 8 == 0 && !force_simple(); }

int gemv_splits(int N, int K, int max_splits_by_ws) {
  const int tiles = ceil_div(N, 16);
  const int nsb = ceil_div(K, kSuper);
  // Blocks per SM to aim for (IGNIS_GEMV_BLOCKS_PER_SM to tune). Measured on an H100 for a
  // Llama-2-7B step, batch 1 (scripts/gpu-check.sh tune): single-buffered 4 -> 135.5 tok/s,
  // 8 -> 149.9, 16 -> 152.1; double-buffered 8 -> 160.6, 16 -> 154.8, 32 -> 152.8.
  static const int per_sm = [] {
    const char* e = std::getenv("IGNIS_GEMV_BLOCKS_PER_SM");
    const int v = e ? std::atoi(e) : 0;
    return v > 0 ? v : 8;
  }();
  const int target = per_sm * sm_count();
  int s = (target + tiles / 2) / tiles;
  s = std::min(s, std::max(1, nsb / 8));  // keep >= 2 super-blocks per warp
  s = std::min(s, max_splits_by_ws);
  return std::max(1, s);
}

int gemv(const GemvArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(a.dtype == DType::F32 || a.dtype == DType::BF16, "gemv: dtype must be F32 or BF16");
  IGNIS_CHECK(a.B >= 1 && a.B <= 8, "gemv: batch must be 1..8, got ", a.B);
  IGNIS_CHECK(a.N > 0 && a.K > 0, "gemv: empty shape ", a.N, "x", a.K);
  const bool swiglu = a.epi == GemvEpilogue::kSwiGLU;
  IGNIS_CHECK(!swiglu || a.N % 16 == 0, "gemv: SwiGLU needs N = 2 * (multiple of 8), got ", a.N);
  const int ldo = a.ldo ? a.ldo : (swiglu ? a.N / 2 : a.N);

  // kAuto: at B = 1 the CUDA-core kernel (one warp per row, 16-byte loads) streamed best on an
  // H200 (CudaKernels.DISABLED_GemvBandwidth, 2026-12-01: 3.9 / 4.2 / 3.7 / 4.3 TB/s for the 7B
  // qkv / gate-up / down / logits shapes, against 3.4 / 3.6 / 3.3 / 3.7 for the tensor-core kernel
  // and 2.9 / 3.6 / 2.8 / 3.8 for the bulk-copy one); from B = 2 the tensor-core kernel, whose cost
  // does not grow with B (the CUDA-core one does B FMAs per weight). A fused norm needs the
  // tensor-core kernel. The bulk-copy kernel is taken only when asked for (kBulk, IGNIS_GEMV=bulk).
  const bool fold = a.rms_ss || a.next_ss;
  if (fold) {
    IGNIS_CHECK(!a.norm_w && !a.ss_in && !a.ss_out, "gemv: the folded RMSNorm (rms_ss / next_ss) and the fused one "
                "(norm_w / ss_in / ss_out) exclude each other");
    IGNIS_CHECK(!(a.rms_ss && a.next_ss), "gemv: rms_ss and next_ss on one product are not supported");
    IGNIS_CHECK(!a.next_ss || (a.epi == GemvEpilogue::kAddF32 && a.next_norm_w && a.next_h),
                "gemv: next_ss needs the kAddF32 epilogue, next_norm_w and next_h");
    IGNIS_CHECK(a.impl == GemvImpl::kAuto || a.impl == GemvImpl::kSimple,
                "gemv: the folded RMSNorm runs on the CUDA-core kernel only");
    if (a.dtype == DType::F32)
      dispatch_simple<float>(a, ldo, stream);
    else
      dispatch_simple<bf16>(a, ldo, stream);
    return a.next_ss ? gemv_fold_parts(a.N) : 0;
  }
  GemvImpl want = a.impl == GemvImpl::kAuto ? env_impl() : a.impl;
  if (want == GemvImpl::kAuto) want = a.B == 1 && !a.norm_w && !a.ss_out ? GemvImpl::kSimple : GemvImpl::kTensorCore;
  const bool tc = a.dtype == DType::BF16 && a.K % 8 == 0 && (want != GemvImpl::kSimple || a.norm_w || a.ss_out);
  if (tc && !a.norm_w && want == GemvImpl::kBulk && device_has_bulk_copy()) {
    gemv_bulk(a, ldo, stream);
    return 0;
  }
  IGNIS_CHECK(!a.norm_w || tc, "gemv: the fused RMSNorm needs bf16 weights with K % 8 == 0 (tensor-core path)");
  IGNIS_CHECK(!a.ss_in || a.norm_w, "gemv: ss_in is the input of the fused RMSNorm (norm_w)");
  IGNIS_CHECK(!a.ss_out || (tc && a.epi == GemvEpilogue::kAddF32),
              "gemv: ss_out needs the tensor-core path and the kAddF32 epilogue");
  if (!tc) {
    if (a.dtype == DType::F32)
      dispatch_simple<float>(a, ldo, stream);
    else
      dispatch_simple<bf16>(a, ldo, stream);
    return 0;
  }
  const int tiles = ceil_div(a.N, 16);
  int max_by_ws = 1;
  if (a.ws && a.counters && a.n_counters >= tiles)
    max_by_ws = int(std::min<size_t>(64, a.ws_floats / (size_t(a.B) * a.N)));
  const int splits = gemv_splits(a.N, a.K, max_by_ws);
  const dim3 grid(tiles, splits), block(kWarps * 32);
  const bool hint = gemv_l2_hint();
  if (a.norm_w)
    hint ? launch_tc<true, true>(a, grid, block, ldo, stream) : launch_tc<true, false>(a, grid, block, ldo, stream);
  else
    hint ? launch_tc<false, true>(a, grid, block, ldo, stream) : launch_tc<false, false>(a, grid, block, ldo, stream);
  return 0;
}

}  // namespace ignis::cuda
