// Pieces shared by the two decode attention kernels over the KV cache: the tile kernel
// (attention_decode.cu: K/V tiles in shared memory, any head size) and the warp kernel
// (attention_decode_warp.cu: K/V straight into registers, low latency, head 64/128/256).
//
// Split-K partials (AttnArgs::n_splits > 1) live in the workspace as
//   o[(i * nh + h) * n_splits + s][hd]   unnormalised output of split s (relative to its max m)
//   (m, l)[(i * nh + h) * n_splits + s]  after all o: running max (log2 domain) and sum of 2^(s - m)
// and are combined either by attn_combine_kernel (attention_decode.cu) or, with AttnArgs::counters,
// by the last split block of each (query, kv head) itself (combine_if_last).
#pragma once
#include "cuda/common.h"
#include "cuda/kernels.h"
#include "cuda/rope_common.cuh"

namespace ignis::cuda::attn_detail {

constexpr int kSplitKeys = 64;  // a split's key range is a multiple of this (chunk, below)
constexpr float kLog2e = 1.4426950408889634f;

// Key range [t0, t1) of split s of a query at position p: chunk = round_up(ceil((p + 1) / n_splits), 64),
// and the number of non-empty splits, active = ceil((p + 1) / chunk) (the first ones; split 0 always
// holds key 0). The blocks of empty splits exit at once. With one active split its block writes the
// normalised output itself; otherwise the active splits write partials and the combine reads those.
__device__ __forceinline__ void split_range(int p, int s, int n_splits, int& t0, int& t1, int& active) {
  const int L = p + 1;
  int chunk = (L + n_splits - 1) / n_splits;
  chunk = (chunk + kSplitKeys - 1) / kSplitKeys * kSplitKeys;
  t0 = s * chunk, t1 = min(L, t0 + chunk);
  active = (L + chunk - 1) / chunk;
}

// The position of query i (AttnArgs::pos of its sequence + its offset, clamped to the cache).
__device__ __forceinline__ int query_pos(const AttnArgs& a, int i) {
  return min(a.pos[i / a.q_per_seq] + i % a.q_per_seq, a.ctx - 1);
}

// Called by every thread of an active split block after its partials are written: the last block
// of (query i, kv head kh) to arrive combines the `active` partials of its G heads into a.out.
template <typename T>
__device__ void combine_if_last(const AttnArgs& a, int i, int kh, int G, int n_splits, int active) {
  __shared__ unsigned s_prev;
  const int tid = threadIdx.x, hd = a.hd, head0 = kh * G;
  __threadfence();  // make this block's partials visible before counting it
  __syncthreads();
  if (tid == 0) s_prev = atomicAdd(&a.counters[size_t(i) * a.nkv + kh], 1u);
  __syncthreads();
  if (s_prev != unsigned(active - 1)) return;
  __threadfence();
  const float* wsm = a.ws + size_t(a.n) * a.nh * n_splits * hd;
  for (int e = tid; e < G * hd; e += blockDim.x) {
    const int h = e / hd, d = e % hd;
    const size_t qh = size_t(i) * a.nh + head0 + h;
    float M = -INFINITY;
    for (int s = 0; s < active; ++s) M = fmaxf(M, __ldcg(wsm + 2 * (qh * n_splits + s)));
    float den = 0.f, o = 0.f;
    for (int s = 0; s < active; ++s) {
      const size_t idx = qh * n_splits + s;
      const float w = exp2f(__ldcg(wsm + 2 * idx) - M);
      den += __ldcg(wsm + 2 * idx + 1) * w;
      o += __ldcg(a.ws + idx * hd + d) * w;
    }
    static_cast<T*>(a.out)[qh * hd + d] = from_f<T>(o / den);
  }
  if (tid == 0) a.counters[size_t(i) * a.nkv + kh] = 0;  // ready for the next launch
}

// The queries of the G heads of kv head kh into qs[G][hd] (fp32, times qscale), by all threads of
// the block. With a.rope_qkv they are rotated from the raw projection (and rounded to T, as
// rope_kv's q_out); when holds_p (the block that processes key p), the rotated k and the v of
// position p also go into knew / vnew[hd] and into the cache (if p is inside it): no other block
// of the launch reads key p, and this block must take it from knew / vnew, since its own reads of
// the cache row may have happened before this write. Needs a __syncthreads before qs / knew are read.
template <typename T>
__device__ void decode_queries(const AttnArgs& a, int i, int kh, int G, int p, size_t slot, bool holds_p,
                               float qscale, float* qs, T* knew, T* vnew) {
  const int tid = threadIdx.x, nthr = blockDim.x, hd = a.hd, head0 = kh * G;
  if (!a.rope_qkv) {
    const T* q = static_cast<const T*>(a.q) + (size_t(i) * a.nh + head0) * hd;
    for (int e = tid; e < G * hd; e += nthr) qs[e] = to_f(q[e]) * qscale;
    return;
  }
  const T* src = static_cast<const T*>(a.rope_qkv) + size_t(i) * (a.nh + 2 * a.nkv) * hd;
  const int half = hd / 2;
  for (int u = tid; u < G * half; u += nthr) {
    const int h = u / half, base = (head0 + h) * hd;
    int e0, e1;
    float x0, x1;
    rope_pair(src + base, a.rope_bias ? a.rope_bias + base : nullptr, u % half, a.rope_dim, a.style, p, a.inv_freq,
              true, e0, e1, x0, x1);
    qs[h * hd + e0] = to_f(from_f<T>(x0)) * qscale;
    qs[h * hd + e1] = to_f(from_f<T>(x1)) * qscale;
  }
  if (!holds_p) return;
  const int b = i / a.q_per_seq;
  const bool in_cache = a.pos[b] < a.ctx;
  for (int u = tid; u < 2 * half; u += nthr) {
    const bool is_k = u < half;
    const int base = (is_k ? a.nh + kh : a.nh + a.nkv + kh) * hd;
    int e0, e1;
    float x0, x1;
    rope_pair(src + base, a.rope_bias ? a.rope_bias + base : nullptr, is_k ? u : u - half, a.rope_dim, a.style, p,
              a.inv_freq, is_k, e0, e1, x0, x1);
    T* nw = is_k ? knew : vnew;
    nw[e0] = from_f<T>(x0), nw[e1] = from_f<T>(x1);
    if (in_cache) {
      T* dst = static_cast<T*>(const_cast<void*>(is_k ? a.k_cache : a.v_cache)) +
               ((slot * a.nkv + kh) * size_t(a.ctx) + p) * hd;
      dst[e0] = nw[e0], dst[e1] = nw[e1];
    }
  }
}

}  // namespace ignis::cuda::attn_detail
