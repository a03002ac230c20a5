// Attention over the KV cache for any head size and dtype, split over the keys
// (flash-decoding). Used for decode (one query per sequence, B <= 8) and as the general
// fallback for prefill (fp32 models, head sizes the tensor-core kernel does not cover).
//
// attn_split_kernel: block (split s, kv head kh, query i) computes, for the G = nh / nkv query
//   heads sharing kh, softmax(q K^T * scale) V over its key range [s*chunk, (s+1)*chunk) ∩ [0, p_i],
//   with chunk = round_up(ceil((p_i + 1) / n_splits), 64) computed on the device from the position
//   read from device memory (the grid is fixed, so a captured graph serves every step; splits
//   past the end exit at once). Keys are processed in tiles of 64 staged in shared memory
//   (rows padded to an odd number of 32-bit words: conflict-free score reads), with an online
//   softmax in the exp2 domain. Scores: one thread per (head, key); P.V: one thread per (head,
//   dim) output, reading V rows in order (conflict-free). With one split the result is written
//   normalised; otherwise (o, m, l) partials go to a workspace for attn_combine_kernel.
//   Bytes: each block reads its keys' K and V rows once (G heads share them): 2 L hd sizeof(T)
//   per kv head and query. Launch: grid (n_splits, nkv, n) x 128 threads, dynamic smem
//   G hd 4 + 2 * 64 * (hd sizeof(T) + 4) + G 64 4 + small.
// attn_combine_kernel: block per (query, head): out = sum_s o_s 2^(m_s - M) / sum_s l_s 2^(m_s - M).
#include <algorithm>

#include "cuda/common.h"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kTile = 64;
constexpr int kThreads = 128;
constexpr float kLog2e = 1.4426950408889634f;

struct Smem {
  __host__ __device__ static int row_words(int hd, int elem) { return hd * elem / 4 + 1; }
  static size_t bytes(int G, int hd, int elem) {
    return size_t(G) * hd * 4 + 2 * size_t(kTile) * row_words(hd, elem) * 4 + size_t(G) * kTile * 4 + 3 * 16 * 4;
  }
};

template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t w);
template <>
__device__ __forceinline__ float2 unpack2<bf16>(uint32_t w) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}

// NACC: accumulators per thread = ceil(G * hd / kThreads).
template <typename T, int NACC>
__global__ void __launch_bounds__(kThreads) attn_split_kernel(AttnArgs a) {
  extern __shared__ float4 smem_raw[];
  const int s = blockIdx.x, kh = blockIdx.y, i = blockIdx.z;
  const int hd = a.hd, G = a.nh / a.nkv, n_splits = gridDim.x;
  const int tid = threadIdx.x;
  constexpr int kElem = int(sizeof(T));
  const int rw = Smem::row_words(hd, kElem);
  float* qs = reinterpret_cast<float*>(smem_raw);                    // [G][hd]
  uint32_t* ks = reinterpret_cast<uint32_t*>(qs + G * hd);           // [kTile][rw]
  uint32_t* vs = ks + kTile * rw;                                    // [kTile][rw]
  float* ps = reinterpret_cast<float*>(vs + kTile * rw);             // [G][kTile]
  float* st_m = ps + G * kTile;                                      // [16] running max per head
  float* st_scale = st_m + 16;                                       // [16] rescale of this tile
  float* st_l = st_scale + 16;                                       // [16] running sum per head

  pdl_trigger();
  pdl_wait();
  const int b = i / a.q_per_seq;
  const int p = min(a.pos[b] + i % a.q_per_seq, a.ctx - 1);
  const int L = p + 1;
  int chunk = (L + n_splits - 1) / n_splits;
  chunk = (chunk + kTile - 1) / kTile * kTile;
  const int t0 = s * chunk, t1 = min(L, t0 + chunk);

  const int head0 = kh * G;
  float* wsm = a.ws + size_t(a.n) * a.nh * n_splits * hd;  // (m, l) pairs after the o partials
  if (t0 >= t1) {  // empty split (only when n_splits > 1, since split 0 always has key 0)
    for (int h = tid; h < G; h += kThreads) {
      const size_t idx = (size_t(i) * a.nh + head0 + h) * n_splits + s;
      wsm[2 * idx] = -INFINITY;
      wsm[2 * idx + 1] = 0.f;
    }
    for (int e = tid; e < G * hd; e += kThreads)
      a.ws[((size_t(i) * a.nh + head0 + e / hd) * n_splits + s) * hd + e % hd] = 0.f;
    return;
  }

  const T* q = static_cast<const T*>(a.q) + (size_t(i) * a.nh + head0) * hd;
  const float qscale = a.scale * kLog2e;
  for (int e = tid; e < G * hd; e += kThreads) qs[e] = to_f(q[e]) * qscale;
  if (tid < G) st_m[tid] = -INFINITY;
  const size_t slot = size_t(a.slot0) + b;
  const T* kbase = static_cast<const T*>(a.k_cache) + (slot * a.nkv + kh) * size_t(a.ctx) * hd;
  const T* vbase = static_cast<const T*>(a.v_cache) + (slot * a.nkv + kh) * size_t(a.ctx) * hd;
  const int words = hd * kElem / 4;  // 32-bit words per row (hd even)

  float acc[NACC];
#pragma unroll
  for (int r = 0; r < NACC; ++r) acc[r] = 0.f;
  if (tid < G) st_l[tid] = 0.f;

  for (int tt = t0; tt < t1; tt += kTile) {
    const int nt = min(kTile, t1 - tt);
    __syncthreads();  // previous tile fully consumed
    for (int e = tid; e < kTile * words; e += kThreads) {
      const int t = e / words, w = e % words;
      uint32_t kw = 0, vw = 0;
      if (t < nt) {
        kw = reinterpret_cast<const uint32_t*>(kbase + size_t(tt + t) * hd)[w];
        vw = reinterpret_cast<const uint32_t*>(vbase + size_t(tt + t) * hd)[w];
      }
      ks[t * rw + w] = kw;
      vs[t * rw + w] = vw;
    }
    __syncthreads();
    // scores: thread per (head, key)
    for (int e = tid; e < G * kTile; e += kThreads) {
      const int h = e / kTile, t = e % kTile;
      float sc = -INFINITY;
      if (t < nt) {
        sc = 0.f;
        const float* qh = qs + h * hd;
        const uint32_t* kr = ks + t * rw;
        if constexpr (kElem == 4) {
          for (int d = 0; d < hd; ++d) sc = fmaf(qh[d], __uint_as_float(kr[d]), sc);
        } else {
          for (int w = 0; w < words; ++w) {
            const float2 kv = unpack2<T>(kr[w]);
            sc = fmaf(qh[2 * w], kv.x, sc);
            sc = fmaf(qh[2 * w + 1], kv.y, sc);
          }
        }
      }
      ps[h * kTile + t] = sc;
    }
    __syncthreads();
    // online softmax: warp per head
    const int warp = tid >> 5, lane = tid & 31;
    for (int h = warp; h < G; h += kThreads / 32) {
      const float s0 = ps[h * kTile + lane], s1 = ps[h * kTile + lane + 32];
      const float m_old = st_m[h];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(s0, s1)));  // finite: key tt is always valid
      const float p0 = exp2f(s0 - m_new), p1 = exp2f(s1 - m_new);
      ps[h * kTile + lane] = p0;
      ps[h * kTile + lane + 32] = p1;
      const float sum = warp_sum(p0 + p1);
      __syncwarp();
      if (lane == 0) {
        const float sc = exp2f(m_old - m_new);  // 0 on the first tile (m_old = -inf)
        st_scale[h] = sc;
        st_l[h] = st_l[h] * sc + sum;
        st_m[h] = m_new;
      }
    }
    __syncthreads();
    // P.V: thread per (head, dim)
#pragma unroll
    for (int r = 0; r < NACC; ++r) {
      const int e = tid + r * kThreads;
      if (e < G * hd) {
        const int h = e / hd, d = e % hd;
        float o = acc[r] * st_scale[h];
        const float* ph = ps + h * kTile;
        if constexpr (kElem == 4) {
          for (int t = 0; t < nt; ++t) o = fmaf(ph[t], __uint_as_float(vs[t * rw + d]), o);
        } else {
          const uint16_t* vrow = reinterpret_cast<const uint16_t*>(vs) + d;
          for (int t = 0; t < nt; ++t)
            o = fmaf(ph[t], __uint_as_float(uint32_t(vrow[size_t(t) * rw * 2]) << 16), o);
        }
        acc[r] = o;
      }
    }
  }
  __syncthreads();

#pragma unroll
  for (int r = 0; r < NACC; ++r) {
    const int e = tid + r * kThreads;
    if (e < G * hd) {
      const int h = e / hd, d = e % hd;
      if (n_splits == 1) {
        T* out = static_cast<T*>(a.out) + (size_t(i) * a.nh + head0 + h) * hd;
        out[d] = from_f<T>(acc[r] / st_l[h]);
      } else {
        a.ws[((size_t(i) * a.nh + head0 + h) * n_splits + s) * hd + d] = acc[r];
      }
    }
  }
  if (n_splits > 1 && tid < G) {
    const size_t idx = (size_t(i) * a.nh + head0 + tid) * n_splits + s;
    wsm[2 * idx] = st_m[tid];
    wsm[2 * idx + 1] = st_l[tid];
  }
}

template <typename T>
__global__ void attn_combine_kernel(AttnArgs a, int n_splits) {
  pdl_trigger();
  pdl_wait();
  const int qh = blockIdx.x;  // i * nh + h
  const int hd = a.hd;
  const float* wsm = a.ws + size_t(a.n) * a.nh * n_splits * hd;
  float M = -INFINITY;
  for (int s = 0; s < n_splits; ++s) M = fmaxf(M, wsm[2 * (size_t(qh) * n_splits + s)]);
  float den = 0.f;
  for (int s = 0; s < n_splits; ++s) {
    const size_t idx = size_t(qh) * n_splits + s;
    den += wsm[2 * idx + 1] * exp2f(wsm[2 * idx] - M);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < n_splits; ++s) {
      const size_t idx = size_t(qh) * n_splits + s;
      o += a.ws[idx * hd + d] * exp2f(wsm[2 * idx] - M);
    }
    static_cast<T*>(a.out)[size_t(qh) * hd + d] = from_f<T>(o / den);
  }
}

template <typename T, int NACC>
void launch_split(const AttnArgs& a, cudaStream_t stream) {
  const int G = a.nh / a.nkv;
  const size_t smem = Smem::bytes(G, a.hd, int(sizeof(T)));
  static int configured = 0;  // raise the dynamic smem limit once per instantiation
  if (smem > 48 * 1024 && configured < int(smem)) {
    CUDA_CHECK(cudaFuncSetAttribute(attn_split_kernel<T, NACC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem)));
    configured = int(smem);
  }
  launch(attn_split_kernel<T, NACC>, dim3(a.n_splits, a.nkv, a.n), dim3(kThreads), smem, stream, a);
  if (a.n_splits > 1)
    launch(attn_combine_kernel<T>, dim3(a.n * a.nh), dim3(std::min(256, std::max(32, (a.hd + 31) / 32 * 32))), 0,
           stream, a, a.n_splits);
}

template <typename T>
void dispatch_split(const AttnArgs& a, cudaStream_t stream) {
  const int nacc = ceil_div(int64_t(a.nh / a.nkv) * a.hd, kThreads);
  if (nacc <= 1) return launch_split<T, 1>(a, stream);
  if (nacc <= 2) return launch_split<T, 2>(a, stream);
  if (nacc <= 4) return launch_split<T, 4>(a, stream);
  if (nacc <= 8) return launch_split<T, 8>(a, stream);
  if (nacc <= 16) return launch_split<T, 16>(a, stream);
  return launch_split<T, 32>(a, stream);
}

}  // namespace

size_t attn_ws_floats(int n, int nh, int hd, int n_splits) {
  if (n_splits <= 1) return 0;
  return size_t(n) * nh * n_splits * (size_t(hd) + 2);
}

int attn_decode_splits(int B, int nkv, int ctx) {
  const int target = 2 * sm_count();
  int s = ceil_div(target, int64_t(B) * nkv);
  return std::clamp(s, 1, std::max(1, ceil_div(ctx, kTile)));
}

void launch_flash_attention(const AttnArgs& a, cudaStream_t stream);  // attention_prefill.cu

void attention(const AttnArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(a.dtype == DType::F32 || a.dtype == DType::BF16, "attention: dtype must be F32 or BF16");
  IGNIS_CHECK(a.nkv > 0 && a.nh % a.nkv == 0, "attention: ", a.nh, " heads do not group over ", a.nkv, " kv heads");
  IGNIS_CHECK(a.nh / a.nkv <= 16, "attention: more than 16 query heads per kv head is not supported");
  IGNIS_CHECK(a.hd % 2 == 0 && a.hd <= 512, "attention: head size must be even and <= 512, got ", a.hd);
  IGNIS_CHECK(a.n_splits >= 1, "attention: n_splits must be >= 1");
  IGNIS_CHECK((a.nh / a.nkv) * a.hd <= 32 * kThreads, "attention: (heads per kv head) x head size must be <= ",
              32 * kThreads);
  IGNIS_CHECK(a.n_splits == 1 || (a.ws && a.ws_floats >= attn_ws_floats(a.n, a.nh, a.hd, a.n_splits)),
              "attention: split-K needs a workspace of ", attn_ws_floats(a.n, a.nh, a.hd, a.n_splits), " floats");
  if (a.n <= 0) return;
  const bool flash = a.impl != AttnImpl::kGeneric && flash_attention_supported(a);
  if (a.impl == AttnImpl::kFlash) IGNIS_CHECK(flash, "attention: the flash kernel does not support this shape");
  if (flash) return launch_flash_attention(a, stream);
  if (a.dtype == DType::F32)
    dispatch_split<float>(a, stream);
  else
    dispatch_split<bf16>(a, stream);
}

}  // namespace ignis::cuda
