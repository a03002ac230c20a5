// Token selection on the GPU, one block of 1024 threads per sequence; only the chosen id leaves
// the device. Greedy: argmax (lowest index on ties). Otherwise, with p_i = exp((z_i - max) / T):
//  1. top-k: the k-th largest p by radix select on the float bits (4 passes of 8 bits, a 256-bin
//     histogram in shared memory); keep p >= that value.
//  2. top-p: the same radix walk, but the histogram sums probability mass instead of counts: the
//     largest threshold whose kept mass reaches top_p of the top-k mass.
//  3. draw: r = u * kept mass, u from Philox(seed, counter[b], b); a block-wide prefix sum over
//     the kept p in token order finds the token where the running mass passes r.
// Bytes: ~11 passes over vocab floats per row (L2-resident: 128-513 KB). Launch: B x 1024.
#include "cuda/common.h"
#include "cuda/kernels.h"
#include "cuda/philox.h"

namespace ignis::cuda {
namespace {

constexpr int kThreads = 1024;

struct Shared {
  float red[32];
  int redi[32];
  unsigned hist_u[256];
  float hist_f[256];
  float scan[32];
  unsigned prefix;
  float target;
  int chosen;
};

// Radix select over the keys bits(p_i) of items with p_i >= floor. Mass == false: returns the
// key of the k-th largest (k = target); mass == true: the largest key v such that the sum of
// p over items >= v reaches target.
__device__ unsigned radix_select(const float* p, int vocab, float floor_v, float target, bool mass, Shared& sh) {
  const int tid = threadIdx.x;
  unsigned prefix = 0, mask = 0;
  if (tid == 0) sh.target = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += kThreads) sh.hist_u[d] = 0, sh.hist_f[d] = 0.f;
    __syncthreads();
    for (int i = tid; i < vocab; i += kThreads) {
      const float v = p[i];
      const unsigned key = __float_as_uint(v);
      if (v >= floor_v && (key & mask) == prefix) {
        const unsigned d = (key >> shift) & 255u;
        if (mass)
          atomicAdd(&sh.hist_f[d], v);
        else
          atomicAdd(&sh.hist_u[d], 1u);
      }
    }
    __syncthreads();
    if (tid == 0) {
      float t = sh.target, cum = 0.f;
      int digit = -1, lowest = -1;
      for (int d = 255; d >= 0; --d) {
        const float h = mass ? sh.hist_f[d] : float(sh.hist_u[d]);
        if (h > 0.f) lowest = d;
        if (digit < 0 && h > 0.f && cum + h >= t) {
          digit = d;
          t -= cum;
        }
        cum += h;
      }
      if (digit < 0) digit = lowest < 0 ? 0 : lowest, t = 0.f;  // rounding: take the smallest present
      sh.prefix = prefix | (unsigned(digit) << shift);
      sh.target = t;
    }
    __syncthreads();
    prefix = sh.prefix;
    mask |= 255u << shift;
  }
  return prefix;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* __restrict__ logits, int vocab, int ld,
                                                          const SamplingParamsDev* __restrict__ prm,
                                                          uint32_t* counters, float* __restrict__ scratch,
                                                          int* __restrict__ tokens) {
  __shared__ Shared sh;
  pdl_trigger();
  pdl_wait();
  const int b = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float* z = logits + size_t(b) * ld;
  const SamplingParamsDev P = *prm;

  // max and argmax (lowest index among the maxima)
  float best = -INFINITY;
  int best_i = 0x7fffffff;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = z[i];
    if (v > best || (v == best && i < best_i)) best = v, best_i = i;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (ov > best || (ov == best && oi < best_i)) best = ov, best_i = oi;
  }
  if (lane == 0) sh.red[warp] = best, sh.redi[warp] = best_i;
  __syncthreads();
  if (warp == 0) {
    best = sh.red[lane], best_i = sh.redi[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
      if (ov > best || (ov == best && oi < best_i)) best = ov, best_i = oi;
    }
    if (lane == 0) sh.chosen = best_i == 0x7fffffff ? 0 : best_i, sh.red[0] = best;
  }
  __syncthreads();
  const float zmax = sh.red[0];
  const uint32_t counter = counters[b];
  if (P.temperature <= 0.f || !(zmax > -INFINITY)) {
    if (tid == 0) tokens[b] = sh.chosen, counters[b] = counter + 1;
    return;
  }

  float* p = scratch + size_t(b) * vocab;
  const float inv_t = 1.f / P.temperature;
  float total = 0.f;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = expf((z[i] - zmax) * inv_t);
    p[i] = v;
    total += v;
  }
  __syncthreads();  // p visible to the block (same block wrote it: global memory, block scope)
  total = block_sum(total, sh.red);

  float floor_v = 0.f;
  if (P.top_k > 0 && P.top_k < vocab) floor_v = __uint_as_float(radix_select(p, vocab, 0.f, float(P.top_k), false, sh));
  float kept = total;
  if (floor_v > 0.f) {
    float s = 0.f;
    for (int i = tid; i < vocab; i += kThreads) s += p[i] >= floor_v ? p[i] : 0.f;
    kept = block_sum(s, sh.red);
  }
  if (P.top_p < 1.f && P.top_p > 0.f) {
    const float th = __uint_as_float(radix_select(p, vocab, floor_v, P.top_p * kept, true, sh));
    if (th > floor_v) {
      floor_v = th;
      float s = 0.f;
      for (int i = tid; i < vocab; i += kThreads) s += p[i] >= floor_v ? p[i] : 0.f;
      kept = block_sum(s, sh.red);
    }
  }

  // draw: thread t owns the contiguous range [t * seg, (t + 1) * seg)
  const float r = philox_uniform(P.seed_lo, P.seed_hi, counter, uint32_t(b)) * kept;
  const int seg = (vocab + kThreads - 1) / kThreads;
  const int lo = min(vocab, tid * seg), hi = min(vocab, lo + seg);
  float mine = 0.f;
  int last_kept = -1;
  for (int i = lo; i < hi; ++i)
    if (p[i] >= floor_v) mine += p[i], last_kept = i;
  float incl = mine;  // inclusive scan over threads
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const float v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) sh.scan[warp] = incl;
  if (tid == 0) sh.chosen = -1;
  __syncthreads();
  if (warp == 0) {
    float w = sh.scan[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += v;
    }
    sh.scan[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  incl += warp > 0 ? sh.scan[warp - 1] : 0.f;
  const float excl = incl - mine;
  if (mine > 0.f && r >= excl && r < incl) {
    float run = excl;
    int pick = last_kept;
    for (int i = lo; i < hi; ++i) {
      if (p[i] >= floor_v) {
        run += p[i];
        if (r < run) {
          pick = i;
          break;
        }
      }
    }
    sh.chosen = pick;  // at most one thread's range contains r
  }
  __syncthreads();
  if (sh.chosen < 0) {  // r fell past the end by rounding: the last kept token
    int m = last_kept;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) sh.redi[warp] = m;
    __syncthreads();
    if (tid == 0) {
      int mm = -1;
      for (int w = 0; w < kThreads / 32; ++w) mm = max(mm, sh.redi[w]);
      sh.chosen = mm;
    }
    __syncthreads();
  }
  if (tid == 0) tokens[b] = sh.chosen, counters[b] = counter + 1;
}

}  // namespace

void sample(const float* logits, int B, int vocab, int ld, const SamplingParamsDev* params, uint32_t* counters,
            float* scratch, int* tokens, cudaStream_t stream) {
  IGNIS_CHECK(B >= 1 && vocab >= 1 && ld >= vocab, "sample: bad shape B=", B, " vocab=", vocab, " ld=", ld);
  launch(sample_kernel, dim3(B), dim3(kThreads), 0, stream, logits, vocab, ld, params, counters, scratch, tokens);
}

}  // namespace ignis::cuda
