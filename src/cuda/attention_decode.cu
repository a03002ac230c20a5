// Attention over the KV cache for any head size and dtype, split over the keys
// (flash-decoding), and the entry point attention() that picks this kernel, the warp decode kernel
// (attention_decode_warp.cu) or the tensor-core prefill (attention_prefill.cu), and launches the
// separate combine after either decode kernel. Split ranges, partials and the fused RoPE are shared
// with the warp kernel (attention_decode_common.cuh). Used for decode (one query per sequence,
// B <= 8) where the warp kernel does not apply, and as the general fallback for prefill (fp32
// models, head sizes the tensor-core kernel does not cover).
//
// attn_split_kernel: block (split s, kv head kh, query i) computes, for the G = nh / nkv query
//   heads sharing kh, softmax(q K^T * scale) V over its key range [s*chunk, (s+1)*chunk) ∩ [0, p_i],
//   with chunk = round_up(ceil((p_i + 1) / n_splits), 64) computed on the device from the position
//   read from device memory (the grid is fixed, so a captured graph serves every step; splits
//   past the end exit at once, and with a single non-empty split its block writes the output).
//   Keys are processed in tiles of 64 copied to shared memory with cp.async, double-buffered (the
//   next tile streams in while this one is used), with an online softmax in the exp2 domain.
//   Scores: one thread per (head, key); P.V: one thread per (head, dim) output, reading V rows in
//   order (conflict-free). With one non-empty split the result is written normalised; otherwise
//   (o, m, l) partials go to a workspace for attn_combine_kernel.
//   Bytes: each block reads its keys' K and V rows once (G heads share them): 2 L hd sizeof(T)
//   per kv head and query. Launch: grid (n_splits, nkv, n) x 128 threads, dynamic smem
//   G hd 4 + stages * 2 * 64 * (hd sizeof(T) + 16) + G 64 4 + small (69 KB for bf16 hd 128).
// attn_combine_kernel: block per (query, head): out = sum_s o_s 2^(m_s - M) / sum_s l_s 2^(m_s - M).
//   With AttnArgs::counters the split kernel does this itself: each block bumps a counter of its
//   (query, kv head) after writing its partials, and the last one combines (one launch less per
//   layer; the order of the sum is fixed, so results do not depend on which block is last).
//   With AttnArgs::rope_qkv (decode) the split kernel also does rope_kv's work: every block rotates
//   the q of its G heads from the raw projection, and the block holding position p (the last
//   non-empty split: no other block of the launch reads key p) writes the rotated k and v into the
//   cache and patches them into its shared-memory tile, since the tile copy may have raced them.
#include <algorithm>

#include "cuda/common.h"
#include "cuda/kernels.h"
#include "cuda/attention_decode_common.cuh"

namespace ignis::cuda {
namespace {

using namespace attn_detail;
constexpr int kTile = kSplitKeys;
constexpr int kThreads = 128;

// Shared memory: q (fp32, pre-scaled) | K/V tiles (1 or 2 stages) | scores | per-head state.
// K/V rows are padded to an odd number of 16-byte chunks: 8 threads reading 16 bytes of 8
// consecutive rows hit 8 different bank groups.
struct Smem {
  __host__ __device__ static int row_bytes(int hd, int elem) { return (hd * elem + 15) / 16 * 16 + 16; }
  __host__ __device__ static int q_bytes(int G, int hd) { return (G * hd * 4 + 15) / 16 * 16; }
  static size_t bytes(int G, int hd, int elem, int stages) {
    return size_t(q_bytes(G, hd)) + size_t(stages) * 2 * kTile * row_bytes(hd, elem) + size_t(G) * kTile * 4 +
           3 * 16 * 4 + size_t(2 * hd * elem + 15) / 16 * 16;  // + the new k, v row (AttnArgs::rope_qkv)
  }
};

__device__ __forceinline__ void cp_async(void* dst, const void* src, int bytes, bool valid) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  const int n = valid ? bytes : 0;  // 0 source bytes: the destination is zero-filled
  if (bytes == 16)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(n));
  else if (bytes == 8)
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(d), "l"(src), "r"(n));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(n));
}

// q . K row (bf16 / f32), read 16 bytes at a time when the row allows it (VEC16), else by element.
template <typename T, bool VEC16>
__device__ __forceinline__ float dot_row(const float* q, const uint8_t* krow, int hd) {
  float sc = 0.f;
  if constexpr (VEC16) {
    constexpr int kPer = 16 / int(sizeof(T));
    for (int d0 = 0; d0 < hd; d0 += kPer) {
      const uint4 v = *reinterpret_cast<const uint4*>(krow + d0 * int(sizeof(T)));
      const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
      for (int j = 0; j < kPer; ++j) sc = fmaf(q[d0 + j], to_f(e[j]), sc);
    }
  } else {
    const T* e = reinterpret_cast<const T*>(krow);
    for (int d = 0; d < hd; ++d) sc = fmaf(q[d], to_f(e[d]), sc);
  }
  return sc;
}

// NACC: accumulators per thread = ceil(G * hd / kThreads).
template <typename T, int NACC, bool VEC16>
__global__ void __launch_bounds__(kThreads) attn_split_kernel(AttnArgs a, int stages) {
  extern __shared__ float4 smem_raw[];
  const int s = blockIdx.x, kh = blockIdx.y, i = blockIdx.z;
  const int hd = a.hd, G = a.nh / a.nkv, n_splits = gridDim.x;
  const int tid = threadIdx.x;
  constexpr int kElem = int(sizeof(T));
  const int rb = Smem::row_bytes(hd, kElem);
  uint8_t* base = reinterpret_cast<uint8_t*>(smem_raw);
  float* qs = reinterpret_cast<float*>(base);                                 // [G][hd]
  uint8_t* kv = base + Smem::q_bytes(G, hd);                                  // [stages][K, V][kTile][rb]
  float* ps = reinterpret_cast<float*>(kv + size_t(stages) * 2 * kTile * rb); // [G][kTile]
  float* st_m = ps + G * kTile;                                               // [16] running max per head
  float* st_scale = st_m + 16;                                                // [16] rescale of this tile
  float* st_l = st_scale + 16;                                                // [16] running sum per head
  T* knew = reinterpret_cast<T*>(st_l + 16);                                  // [hd] rotated k at p (rope_qkv)
  T* vnew = knew + hd;                                                        // [hd] v at p

  pdl_trigger();
  pdl_wait();
  const int b = i / a.q_per_seq;
  const int p = query_pos(a, i);
  const int L = p + 1;
  int t0, t1, active;
  split_range(p, s, n_splits, t0, t1, active);
  const int head0 = kh * G;
  float* wsm = a.ws + size_t(a.n) * a.nh * n_splits * hd;  // (m, l) pairs after the o partials
  if (t0 >= t1) return;  // an empty split

  const size_t slot = size_t(a.slot0) + b;
  const uint8_t* kbase =
      reinterpret_cast<const uint8_t*>(static_cast<const T*>(a.k_cache) + (slot * a.nkv + kh) * size_t(a.ctx) * hd);
  const uint8_t* vbase =
      reinterpret_cast<const uint8_t*>(static_cast<const T*>(a.v_cache) + (slot * a.nkv + kh) * size_t(a.ctx) * hd);
  const int row_src = hd * kElem;  // bytes of a cache row
  const int cb = row_src % 16 == 0 ? 16 : (row_src % 8 == 0 ? 8 : 4);
  const int chunks = row_src / cb;
  auto issue = [&](int tt, int buf) {  // tile starting at key tt -> stage buf (zero-filled past t1)
    uint8_t* kd = kv + size_t(buf) * 2 * kTile * rb;
    uint8_t* vd = kd + size_t(kTile) * rb;
    for (int e = tid; e < kTile * chunks; e += kThreads) {
      const int t = e / chunks, off = (e % chunks) * cb;
      const bool ok = tt + t < t1;
      const size_t src = ok ? size_t(tt + t) * row_src + off : 0;
      cp_async(kd + t * rb + off, kbase + src, cb, ok);
      cp_async(vd + t * rb + off, vbase + src, cb, ok);
    }
    asm volatile("cp.async.commit_group;");
  };
  issue(t0, 0);

  const float qscale = a.scale * kLog2e;
  const bool holds_p = a.rope_qkv && t1 == L;  // fused RoPE: this block writes key p (the last split)
  decode_queries<T>(a, i, kh, G, p, slot, holds_p, qscale, qs, knew, vnew);
  if (tid < G) st_m[tid] = -INFINITY, st_l[tid] = 0.f;

  float acc[NACC];
#pragma unroll
  for (int r = 0; r < NACC; ++r) acc[r] = 0.f;

  const int n_tiles = (t1 - t0 + kTile - 1) / kTile;
  for (int it = 0; it < n_tiles; ++it) {
    const int tt = t0 + it * kTile;
    const int nt = min(kTile, t1 - tt);
    if (stages == 2 && it + 1 < n_tiles) {
      issue(tt + kTile, (it + 1) & 1);
      asm volatile("cp.async.wait_group 1;" ::: "memory");
    } else {
      asm volatile("cp.async.wait_group 0;" ::: "memory");
    }
    __syncthreads();
    const uint8_t* ks = kv + size_t(stages == 2 ? (it & 1) : 0) * 2 * kTile * rb;
    const uint8_t* vs = ks + size_t(kTile) * rb;
    if (holds_p && p >= tt && p < tt + nt) {  // key p from this step's knew / vnew, not the stale copy
      T* kr = reinterpret_cast<T*>(const_cast<uint8_t*>(ks) + size_t(p - tt) * rb);
      T* vr = reinterpret_cast<T*>(const_cast<uint8_t*>(vs) + size_t(p - tt) * rb);
      for (int d = tid; d < hd; d += kThreads) kr[d] = knew[d], vr[d] = vnew[d];
      __syncthreads();
    }
    // scores: thread per (head, key)
    for (int e = tid; e < G * kTile; e += kThreads) {
      const int h = e / kTile, t = e % kTile;
      ps[h * kTile + t] = t < nt ? dot_row<T, VEC16>(qs + h * hd, ks + t * rb, hd) : -INFINITY;
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
    // P.V: thread per (head, dim); V rows read in order (consecutive threads, consecutive dims)
#pragma unroll
    for (int r = 0; r < NACC; ++r) {
      const int e = tid + r * kThreads;
      if (e < G * hd) {
        const int h = e / hd, d = e % hd;
        float o = acc[r] * st_scale[h];
        const float* ph = ps + h * kTile;
        const T* vcol = reinterpret_cast<const T*>(vs) + d;
        const int stride = rb / kElem;
        for (int t = 0; t < nt; ++t) o = fmaf(ph[t], to_f(vcol[t * stride]), o);
        acc[r] = o;
      }
    }
    __syncthreads();  // the stage just read is refilled next
    if (stages == 1 && it + 1 < n_tiles) issue(tt + kTile, 0);
  }

#pragma unroll
  for (int r = 0; r < NACC; ++r) {
    const int e = tid + r * kThreads;
    if (e < G * hd) {
      const int h = e / hd, d = e % hd;
      if (active == 1) {
        T* out = static_cast<T*>(a.out) + (size_t(i) * a.nh + head0 + h) * hd;
        out[d] = from_f<T>(acc[r] / st_l[h]);
      } else {
        a.ws[((size_t(i) * a.nh + head0 + h) * n_splits + s) * hd + d] = acc[r];
      }
    }
  }
  if (active > 1 && tid < G) {
    const size_t idx = (size_t(i) * a.nh + head0 + tid) * n_splits + s;
    wsm[2 * idx] = st_m[tid];
    wsm[2 * idx + 1] = st_l[tid];
  }
  if (active > 1 && a.counters) combine_if_last<T>(a, i, kh, G, n_splits, active);
}

template <typename T>
__global__ void attn_combine_kernel(AttnArgs a, int n_splits) {
  pdl_trigger();
  pdl_wait();
  const int qh = blockIdx.x;  // i * nh + h
  const int hd = a.hd;
  int t0, t1, active;
  split_range(query_pos(a, qh / a.nh), 0, n_splits, t0, t1, active);
  if (active == 1) return;  // the split block wrote the output itself
  const float* wsm = a.ws + size_t(a.n) * a.nh * n_splits * hd;
  float M = -INFINITY;
  for (int s = 0; s < active; ++s) M = fmaxf(M, wsm[2 * (size_t(qh) * n_splits + s)]);
  float den = 0.f;
  for (int s = 0; s < active; ++s) {
    const size_t idx = size_t(qh) * n_splits + s;
    den += wsm[2 * idx + 1] * exp2f(wsm[2 * idx] - M);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < active; ++s) {
      const size_t idx = size_t(qh) * n_splits + s;
      o += a.ws[idx * hd + d] * exp2f(wsm[2 * idx] - M);
    }
    static_cast<T*>(a.out)[size_t(qh) * hd + d] = from_f<T>(o / den);
  }
}

template <typename T, int NACC, bool VEC16>
void launch_split(const AttnArgs& a, cudaStream_t stream) {
  const int G = a.nh / a.nkv;
  int dev = 0, max_smem = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  int stages = 2;  // double-buffered K/V tiles when they fit, else one stage
  size_t smem = Smem::bytes(G, a.hd, int(sizeof(T)), stages);
  if (smem > size_t(max_smem)) stages = 1, smem = Smem::bytes(G, a.hd, int(sizeof(T)), stages);
  IGNIS_CHECK(smem <= size_t(max_smem), "attention: head size ", a.hd, " needs ", smem, " bytes of shared memory");
  static int configured = 0;  // raise the dynamic smem limit once per instantiation (and size)
  if (smem > 48 * 1024 && configured < int(smem)) {
    CUDA_CHECK(cudaFuncSetAttribute(attn_split_kernel<T, NACC, VEC16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem)));
    configured = int(smem);
  }
  launch(attn_split_kernel<T, NACC, VEC16>, dim3(a.n_splits, a.nkv, a.n), dim3(kThreads), smem, stream, a, stages);
}

template <typename T, int NACC>
void dispatch_vec(const AttnArgs& a, cudaStream_t stream) {
  if ((a.hd * int(sizeof(T))) % 16 == 0)
    launch_split<T, NACC, true>(a, stream);
  else
    launch_split<T, NACC, false>(a, stream);
}

template <typename T>
void dispatch_split(const AttnArgs& a, cudaStream_t stream) {
  const int nacc = ceil_div(int64_t(a.nh / a.nkv) * a.hd, kThreads);
  if (nacc <= 1) return dispatch_vec<T, 1>(a, stream);
  if (nacc <= 2) return dispatch_vec<T, 2>(a, stream);
  if (nacc <= 4) return dispatch_vec<T, 4>(a, stream);
  if (nacc <= 8) return dispatch_vec<T, 8>(a, stream);
  if (nacc <= 16) return dispatch_vec<T, 16>(a, stream);
  return dispatch_vec<T, 32>(a, stream);
}

}  // namespace

size_t attn_ws_floats(int n, int nh, int hd, int n_splits) {
  if (n_splits <= 1) return 0;
  return size_t(n) * nh * n_splits * (size_t(hd) + 2);
}

int attn_decode_splits(int B, int nkv, int ctx) {
  const int target = 4 * sm_count();  // ~3 blocks of 70 KB fit per SM: a little over one wave
  int s = ceil_div(target, int64_t(B) * nkv);
  return std::clamp(s, 1, std::max(1, ceil_div(ctx, kTile)));
}

void launch_flash_attention(const AttnArgs& a, cudaStream_t stream);  // attention_prefill.cu
void launch_attn_warp(const AttnArgs& a, cudaStream_t stream);        // attention_decode_warp.cu

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
  IGNIS_CHECK(!a.rope_qkv || (a.q_per_seq == 1 && (a.impl == AttnImpl::kGeneric || a.impl == AttnImpl::kWarp) &&
                               a.inv_freq && a.rope_dim <= a.hd),
              "attention: the fused RoPE is for decode (one query per sequence, the tile or warp kernel)");
  if (a.impl == AttnImpl::kWarp) IGNIS_CHECK(attn_warp_supported(a), "attention: the warp kernel does not support this shape");
  if (a.n <= 0) return;
  const bool flash = (a.impl == AttnImpl::kAuto || a.impl == AttnImpl::kFlash) && flash_attention_supported(a);
  if (a.impl == AttnImpl::kFlash) IGNIS_CHECK(flash, "attention: the flash kernel does not support this shape");
  if (flash) return launch_flash_attention(a, stream);
  const bool f32 = a.dtype == DType::F32;
  if (a.impl == AttnImpl::kWarp || (a.impl == AttnImpl::kAuto && a.q_per_seq == 1 && attn_warp_supported(a)))
    launch_attn_warp(a, stream);
  else if (f32)
    dispatch_split<float>(a, stream);
  else
    dispatch_split<bf16>(a, stream);
  if (a.n_splits > 1 && !a.counters) {  // either decode kernel's partials, combined by a separate launch
    const dim3 grid(a.n * a.nh), block(std::min(256, std::max(32, (a.hd + 31) / 32 * 32)));
    if (f32)
      launch(attn_combine_kernel<float>, grid, block, 0, stream, a, a.n_splits);
    else
      launch(attn_combine_kernel<bf16>, grid, block, 0, stream, a, a.n_splits);
  }
}

}  // namespace ignis::cuda
