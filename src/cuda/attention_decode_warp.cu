// Decode attention over the KV cache with the keys spread over warps and K / V read straight
// into registers (AttnImpl::kWarp; head size 64, 128 or 256, up to 8 query heads per kv head).
//
// Why: at batch 1 the attention of a layer reads little (2 L hd bytes per kv head) and its time
// is latency: the tile kernel (attention_decode.cu) waits for a whole 64-key tile in shared
// memory, then computes the scores with one thread per key (a serial 128-long dot product) and
// P.V with one thread per output dim (a serial loop over the keys). Here the first loads are
// issued right after the position is read, before the queries are rotated, and every step after
// them is short and parallel.
//
// attn_warp_kernel: block (split s, kv head kh, query i), 8 warps, the same key range and
//   split-K partials as the tile kernel (attention_decode_common.cuh). The range is walked in
//   rounds of 64 keys; in a round warp w takes the 8 keys r0 + 8 w + j. Lane l holds dims
//   [l DPL, (l + 1) DPL) (DPL = hd / 32): it loads DPL elements of each of its 8 K rows and 8 V
//   rows (a warp reads whole rows, coalesced; all 16 loads in flight together), the partial dot
//   products with the G queries go through a butterfly warp sum (every lane gets every score),
//   and each lane keeps its own online softmax (max m, sum l, in the exp2 domain) and its DPL
//   output dims per head. Keys past the range read the last valid row and are masked to -inf.
//   At the end the 8 warps' (m, l, o) are merged in shared memory, then written normalised
//   (one non-empty split) or as partials (several; the last block combines with AttnArgs::counters).
//   With AttnArgs::rope_qkv the block rotates q itself, and the block holding key p writes the
//   new k and v into the cache and uses them from shared memory for key p.
//   Bytes: K and V rows of the range once per (kv head, query); registers: 16 loads of DPL
//   elements, G x 8 scores, G x DPL outputs and queries per lane.
#include "cuda/attention_decode_common.cuh"

namespace ignis::cuda {

namespace {

using namespace attn_detail;
constexpr int kWarps = 8, kThreads = 32 * kWarps;
constexpr int kKeysPerWarp = 8;                        // per round
constexpr int kRound = kWarps * kKeysPerWarp;          // keys per round
static_assert(kSplitKeys % kRound == 0 || kRound % kSplitKeys == 0, "rounds and split ranges must nest");

// N 32-bit words: DPL elements of T (a lane's slice of one cache row), one vector load.
template <int N>
struct Words {
  uint32_t w[N];
};
template <int N>
__device__ __forceinline__ Words<N> load_words(const void* p) {
  Words<N> r;
  if constexpr (N == 1) {
    r.w[0] = *static_cast<const uint32_t*>(p);
  } else if constexpr (N == 2) {
    const uint2 v = *static_cast<const uint2*>(p);
    r.w[0] = v.x, r.w[1] = v.y;
  } else {
#pragma unroll
    for (int k = 0; k < N; k += 4) {
      const uint4 v = static_cast<const uint4*>(p)[k / 4];
      r.w[k] = v.x, r.w[k + 1] = v.y, r.w[k + 2] = v.z, r.w[k + 3] = v.w;
    }
  }
  return r;
}
template <typename T, int DPL>
__device__ __forceinline__ void unpack(const Words<DPL * int(sizeof(T)) / 4>& r, float (&f)[DPL]) {
  if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int d = 0; d < DPL; ++d) f[d] = __uint_as_float(r.w[d]);
  } else {  // two bf16 a word, the lower half first
#pragma unroll
    for (int k = 0; k < DPL / 2; ++k) {
      f[2 * k] = __uint_as_float(r.w[k] << 16);
      f[2 * k + 1] = __uint_as_float(r.w[k] & 0xffff0000u);
    }
  }
}

template <typename T, int DPL, int GMAX>
__global__ void __launch_bounds__(kThreads) attn_warp_kernel(AttnArgs a) {
  constexpr int kHd = 32 * DPL, kWords = DPL * int(sizeof(T)) / 4;
  __shared__ __align__(16) float qs[GMAX * kHd];               // queries, times scale * log2(e)
  __shared__ __align__(16) float wo[kWarps][GMAX][kHd];        // each warp's unnormalised output
  __shared__ float wm[kWarps][GMAX], wl[kWarps][GMAX];         // each warp's max and sum
  __shared__ __align__(16) T knew[kHd], vnew[kHd];             // k (rotated) and v at p (rope_qkv)
  const int s = blockIdx.x, kh = blockIdx.y, i = blockIdx.z;
  const int G = a.nh / a.nkv, n_splits = gridDim.x, head0 = kh * G;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  pdl_trigger();
  pdl_wait();
  const int b = i / a.q_per_seq;
  const int p = query_pos(a, i);
  int t0, t1, active;
  split_range(p, s, n_splits, t0, t1, active);
  if (t0 >= t1) return;  // an empty split

  const size_t slot = size_t(a.slot0) + b;
  const T* kbase = static_cast<const T*>(a.k_cache) + (slot * a.nkv + kh) * size_t(a.ctx) * kHd + lane * DPL;
  const T* vbase = static_cast<const T*>(a.v_cache) + (slot * a.nkv + kh) * size_t(a.ctx) * kHd + lane * DPL;
  Words<kWords> kr[kKeysPerWarp], vr[kKeysPerWarp];
  auto load_round = [&](int r0) {  // this warp's 8 keys of the round at r0 (past t1: the last row again)
#pragma unroll
    for (int j = 0; j < kKeysPerWarp; ++j) {
      const size_t t = size_t(min(r0 + warp * kKeysPerWarp + j, t1 - 1)) * kHd;
      kr[j] = load_words<kWords>(kbase + t);
      vr[j] = load_words<kWords>(vbase + t);
    }
  };
  load_round(t0);  // in flight while the queries are prepared

  const bool holds_p = a.rope_qkv && t1 == p + 1;
  decode_queries<T>(a, i, kh, G, p, slot, holds_p, a.scale * kLog2e, qs, knew, vnew);
  __syncthreads();
  float q[GMAX][DPL], o[GMAX][DPL], m[GMAX], l[GMAX];
#pragma unroll
  for (int h = 0; h < GMAX; ++h) {
    m[h] = -INFINITY, l[h] = 0.f;
#pragma unroll
    for (int d = 0; d < DPL; ++d) q[h][d] = h < G ? qs[h * kHd + lane * DPL + d] : 0.f, o[h][d] = 0.f;
  }

  for (int r0 = t0; r0 < t1; r0 += kRound) {
    if (r0 != t0) load_round(r0);
    if (holds_p) {  // key p: this step's k / v, not the cache row read above
#pragma unroll
      for (int j = 0; j < kKeysPerWarp; ++j)
        if (r0 + warp * kKeysPerWarp + j == p) {
          kr[j] = load_words<kWords>(knew + lane * DPL);
          vr[j] = load_words<kWords>(vnew + lane * DPL);
        }
    }
    float sc[GMAX][kKeysPerWarp];
#pragma unroll
    for (int j = 0; j < kKeysPerWarp; ++j) {
      float kf[DPL];
      unpack<T, DPL>(kr[j], kf);
      const bool valid = r0 + warp * kKeysPerWarp + j < t1;
#pragma unroll
      for (int h = 0; h < GMAX; ++h) {
        if (h >= G) break;
        float part = 0.f;
#pragma unroll
        for (int d = 0; d < DPL; ++d) part = fmaf(q[h][d], kf[d], part);
        part = warp_sum(part);
        sc[h][j] = valid ? part : -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < GMAX; ++h) {
      if (h >= G) break;
      float mr = sc[h][0];
#pragma unroll
      for (int j = 1; j < kKeysPerWarp; ++j) mr = fmaxf(mr, sc[h][j]);
      const float m_new = fmaxf(m[h], mr);
      if (m_new == -INFINITY) continue;  // no valid key for this warp yet (the same in every lane)
      const float scale = exp2f(m[h] - m_new);  // 0 when m was -inf
      l[h] *= scale;
#pragma unroll
      for (int d = 0; d < DPL; ++d) o[h][d] *= scale;
#pragma unroll
      for (int j = 0; j < kKeysPerWarp; ++j) {
        const float pj = exp2f(sc[h][j] - m_new);
        float vf[DPL];
        unpack<T, DPL>(vr[j], vf);
        l[h] += pj;
#pragma unroll
        for (int d = 0; d < DPL; ++d) o[h][d] = fmaf(pj, vf[d], o[h][d]);
      }
      m[h] = m_new;
    }
  }

  // merge the warps: out = sum_w o_w 2^(m_w - M) / sum_w l_w 2^(m_w - M)
#pragma unroll
  for (int h = 0; h < GMAX; ++h) {
    if (h >= G) break;
    if (lane == 0) wm[warp][h] = m[h], wl[warp][h] = l[h];
#pragma unroll
    for (int d = 0; d < DPL; ++d) wo[warp][h][lane * DPL + d] = o[h][d];
  }
  __syncthreads();
  float* wsm = a.ws + size_t(a.n) * a.nh * n_splits * kHd;  // (m, l) pairs after the o partials
  for (int e = tid; e < G * kHd; e += kThreads) {
    const int h = e / kHd, d = e % kHd;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm[w][h]);  // finite: warp 0 holds key t0
    float den = 0.f, acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = exp2f(wm[w][h] - M);
      den += wl[w][h] * f;
      acc += wo[w][h][d] * f;
    }
    const size_t qh = size_t(i) * a.nh + head0 + h;
    if (active == 1) {
      static_cast<T*>(a.out)[qh * kHd + d] = from_f<T>(acc / den);
    } else {
      a.ws[(qh * n_splits + s) * kHd + d] = acc;
      if (d == 0) wsm[2 * (qh * n_splits + s)] = M, wsm[2 * (qh * n_splits + s) + 1] = den;
    }
  }
  if (active > 1 && a.counters) combine_if_last<T>(a, i, kh, G, n_splits, active);
}

template <typename T, int DPL>
void launch_dpl(const AttnArgs& a, cudaStream_t stream) {
  const int G = a.nh / a.nkv;
  const dim3 grid(a.n_splits, a.nkv, a.n);
  if (G <= 1) return launch(attn_warp_kernel<T, DPL, 1>, grid, dim3(kThreads), 0, stream, a);
  if (G <= 2) return launch(attn_warp_kernel<T, DPL, 2>, grid, dim3(kThreads), 0, stream, a);
  if (G <= 4) return launch(attn_warp_kernel<T, DPL, 4>, grid, dim3(kThreads), 0, stream, a);
  if constexpr (DPL * 8 <= 32) launch(attn_warp_kernel<T, DPL, 8>, grid, dim3(kThreads), 0, stream, a);
}

template <typename T>
void launch_t(const AttnArgs& a, cudaStream_t stream) {
  if (a.hd == 64) launch_dpl<T, 2>(a, stream);
  if (a.hd == 128) launch_dpl<T, 4>(a, stream);
  if (a.hd == 256) launch_dpl<T, 8>(a, stream);
}

}  // namespace

bool attn_warp_supported(const AttnArgs& a) {
  if (a.dtype != DType::F32 && a.dtype != DType::BF16) return false;
  if (a.hd != 64 && a.hd != 128 && a.hd != 256) return false;
  const int G = a.nkv > 0 ? a.nh / a.nkv : 0;
  return G >= 1 && G <= (a.hd == 256 ? 4 : 8);  // shared memory: GMAX x hd <= 1024
}

// (without AttnArgs::counters, attention() launches the combine after it)
void launch_attn_warp(const AttnArgs& a, cudaStream_t stream) {
  if (a.dtype == DType::F32)
    launch_t<float>(a, stream);
  else
    launch_t<bf16>(a, stream);
}

}  // namespace ignis::cuda
