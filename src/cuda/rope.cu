// RoPE on q and k, fused with writing k and v into the KV cache. Blocks (token, unit range):
//   qkv row (+ bias) -> q_out[i] = rot(q), k_cache[slot][kvh][p] = rot(k), v_cache[slot][kvh][p] = v
// where p = pos[b] + i % q_per_seq is read from device memory (so a CUDA graph replays at any
// position) and rot rotates the pairs (2j, 2j+1) (kInterleaved) or (j, j + rope_dim/2) (kHalfSplit)
// by the angle p * inv_freq[j] for j < rope_dim/2; dims >= rope_dim pass through. inv_freq is
// precomputed on the host (theta, linear or llama3 scaling). Angles in fp32 with the accurate
// sincosf (p * inv_freq reaches thousands of radians).
// Bytes: reads (nh + 2 nkv) hd T, writes as many; launch: grid (n, ceil(pairs / 128)) x 128
// threads, one thread per pair of elements (decode is latency-bound: spread one token wide).
#include <algorithm>

#include "cuda/common.h"
#include "cuda/kernels.h"
#include "cuda/rope_common.cuh"

namespace ignis::cuda {
namespace {

template <typename T>
__global__ void rope_kv_kernel(RopeArgs a) {
  pdl_trigger();
  pdl_wait();
  const int i = blockIdx.x;
  const int b = i / a.q_per_seq;
  const int p = a.pos[b] + i % a.q_per_seq;
  const int slot = a.slot0 + b;
  const int hd = a.hd, half = hd / 2;
  const int width = (a.nh + 2 * a.nkv) * hd;
  const T* src = static_cast<const T*>(a.qkv) + size_t(i) * width;
  T* q_out = static_cast<T*>(a.q_out) + size_t(i) * a.nh * hd;
  T* kc = static_cast<T*>(a.k_cache);
  T* vc = static_cast<T*>(a.v_cache);
  const bool in_cache = p >= 0 && p < a.ctx;
  const int n_units = (a.nh + 2 * a.nkv) * half;  // q pairs, k pairs, v pairs
  for (int u = blockIdx.y * blockDim.x + threadIdx.x; u < n_units; u += gridDim.y * blockDim.x) {
    const int head = u / half, j = u % half;  // head counts q heads, then k heads, then v heads
    const int base = head * hd;
    int e0, e1;
    float x0, x1;
    rope_pair(src + base, a.bias ? a.bias + base : nullptr, j, a.rope_dim, a.style, p, a.inv_freq,
              head < a.nh + a.nkv, e0, e1, x0, x1);
    if (head < a.nh) {
      q_out[base + e0] = from_f<T>(x0);
      q_out[base + e1] = from_f<T>(x1);
    } else if (in_cache) {
      const bool is_k = head < a.nh + a.nkv;
      const int kvh = is_k ? head - a.nh : head - a.nh - a.nkv;
      T* dst = (is_k ? kc : vc) + ((size_t(slot) * a.nkv + kvh) * a.ctx + p) * hd;
      dst[e0] = from_f<T>(x0);
      dst[e1] = from_f<T>(x1);
    }
  }
}

}  // namespace

void rope_kv(const RopeArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(a.dtype == DType::F32 || a.dtype == DType::BF16, "rope_kv: dtype must be F32 or BF16");
  IGNIS_CHECK(a.hd % 2 == 0 && a.rope_dim % 2 == 0 && a.rope_dim <= a.hd && a.q_per_seq >= 1,
              "rope_kv: bad head_dim ", a.hd, " / rope_dim ", a.rope_dim);
  if (a.n <= 0) return;
  const int units = (a.nh + 2 * a.nkv) * (a.hd / 2);
  const dim3 grid(a.n, std::min(ceil_div(units, 128), 64));
  if (a.dtype == DType::F32)
    launch(rope_kv_kernel<float>, grid, dim3(128), 0, stream, a);
  else
    launch(rope_kv_kernel<bf16>, grid, dim3(128), 0, stream, a);
}

}  // namespace ignis::cuda
