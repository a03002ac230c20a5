// RoPE on one pair of a head's elements, shared by the RoPE + KV-write kernel (rope.cu) and the
// decode attention that can do the same work itself (attention_decode.cu, AttnArgs::rope_qkv).
#pragma once
#include "cuda/common.h"
#include "cuda/kernels.h"

namespace ignis::cuda {

// Pair j (0 <= j < hd / 2) of a head: the elements (e0, e1) it rotates, (2j, 2j + 1) for
// kInterleaved or (j, j + rope_dim / 2) for kHalfSplit, with dims >= rope_dim passing through
// (after the rotated ones); x0, x1: src[e0], src[e1] (+ bias), rotated by p * inv_freq[j] when
// rotate and j < rope_dim / 2. Angles in fp32 with the accurate sincosf (p * inv_freq reaches
// thousands of radians).
template <typename T>
__device__ __forceinline__ void rope_pair(const T* __restrict__ src, const float* __restrict__ bias, int j,
                                          int rope_dim, RopeStyle style, int p, const float* __restrict__ inv_freq,
                                          bool rotate, int& e0, int& e1, float& x0, float& x1) {
  const int rhalf = rope_dim / 2;
  if (j < rhalf && style == RopeStyle::kHalfSplit) {
    e0 = j, e1 = j + rhalf;
  } else {
    e0 = 2 * j, e1 = 2 * j + 1;
  }
  if (j >= rhalf && style == RopeStyle::kHalfSplit) {  // pass-through tail, after the rotated dims
    e0 = rope_dim + 2 * (j - rhalf), e1 = e0 + 1;
  }
  x0 = to_f(src[e0]), x1 = to_f(src[e1]);
  if (bias) x0 += bias[e0], x1 += bias[e1];
  if (rotate && j < rhalf) {
    float s, c;
    sincosf(float(p) * inv_freq[j], &s, &c);
    const float r0 = x0 * c - x1 * s, r1 = x0 * s + x1 * c;
    x0 = r0, x1 = r1;
  }
}

}  // namespace ignis::cuda
