// AVX2+FMA inner loops of the CPU attention (compiled with -mavx2 -mfma; only called after
// a run-time check). Float reductions do not vectorize on their own without -ffast-math.
#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace ignis::ops::avx2 {

float dot(const float* a, const float* b, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float s = _mm_cvtss_f32(h);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy(float alpha, const float* x, float* y, int n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace ignis::ops::avx2

namespace ignis::ops::avx2 {

// exp(x) for 8 lanes: x = k ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 Taylor/Horner
// polynomial (relative error ~2e-7 on that interval), 2^k through the exponent bits.
// Inputs below -87.3 give 0 (as expf underflows), above 88.7 are clamped.
static inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.7f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - k ln2, ln2 split in two parts so the product is exact enough
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// Mask of the first n (0..8) lanes.
static inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// x[i] = exp(x[i] - max) for i < n; returns the sum and stores the max in *max_out
// (the unnormalised half of a softmax, for attention split over chunks of keys).
float exp_shifted(float* x, int n, float* max_out) {
  __m256 mx = _mm256_set1_ps(-INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + i));
  float m = -INFINITY;
  alignas(32) float t[8];
  _mm256_store_ps(t, mx);
  for (float v : t) m = v > m ? v : m;
  for (int j = i; j < n; ++j) m = x[j] > m ? x[j] : m;
  const __m256 vm = _mm256_set1_ps(m);
  __m256 sum = _mm256_setzero_ps();
  for (i = 0; i < n; i += 8) {
    const __m256i keep = first_lanes(n - i);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, keep), vm));
    _mm256_maskstore_ps(x + i, keep, e);
    sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(keep)));
  }
  _mm256_store_ps(t, sum);
  *max_out = m;
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

void softmax(float* x, int n) {
  float m;
  const __m256 inv = _mm256_set1_ps(1.0f / exp_shifted(x, n, &m));
  for (int i = 0; i < n; i += 8) {
    const __m256i keep = first_lanes(n - i);
    _mm256_maskstore_ps(x + i, keep, _mm256_mul_ps(_mm256_maskload_ps(x + i, keep), inv));
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// s[r * lds + t] = scale * dot(q[r], k_t) for r < nr (<= 8), t < len, with the keys given
// transposed: kt[d * ldk + t]. An outer product: per dimension d one load of 8 keys and
// nr FMAs with q[r][d] broadcast, no horizontal sums.
void scores_kt(const float* const* q, int nr, const float* kt, int ldk, int hd, int len, float scale, float* s,
               int lds) {
  for (int t = 0; t < len; t += 8) {
    const __m256i keep = first_lanes(len - t);
    __m256 acc[8];
    for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
    for (int d = 0; d < hd; ++d) {
      const __m256 k = _mm256_maskload_ps(kt + size_t(d) * ldk + t, keep);
      for (int r = 0; r < 8; ++r)
        if (r < nr) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(q[r] + d), k, acc[r]);
    }
    for (int r = 0; r < nr; ++r)
      _mm256_maskstore_ps(s + size_t(r) * lds + t, keep, _mm256_mul_ps(acc[r], _mm256_set1_ps(scale)));
  }
}

// s[t] = scale * dot(q, k_t) for t < len, keys in rows of ldk floats (the KV cache as it
// is, for decode): 4 keys per pass share the loads of q and one horizontal reduction
// (hd a multiple of 8).
void scores(const float* q, const float* k, int ldk, int hd, int len, float scale, float* s) {
  int t = 0;
  for (; t + 4 <= len; t += 4) {
    const float* k0 = k + size_t(t) * ldk;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int d = 0; d < hd; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
      a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + ldk + d), a1);
      a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * size_t(ldk) + d), a2);
      a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * size_t(ldk) + d), a3);
    }
    const __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
    const __m256 h = _mm256_hadd_ps(h01, h23);  // per 128-bit half: partial sums of keys 0..3
    const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(s + t, _mm_mul_ps(sum, _mm_set1_ps(scale)));
  }
  for (; t < len; ++t) s[t] = dot(q, k + size_t(t) * ldk, hd) * scale;
}

// o[j] = sum over t < len of p[t] * v[t * ldv + j], for j < hd (hd a multiple of 8),
// 64 output values (8 accumulators) at a time.
void pv(const float* p, int len, const float* v, int ldv, int hd, float* o) {
  for (int j0 = 0; j0 < hd; j0 += 64) {
    const int nv = (hd - j0) / 8 < 8 ? (hd - j0) / 8 : 8;
    __m256 acc[8];
    for (int a = 0; a < 8; ++a) acc[a] = _mm256_setzero_ps();
    for (int t = 0; t < len; ++t) {
      const __m256 pt = _mm256_broadcast_ss(p + t);
      const float* vt = v + size_t(t) * ldv + j0;
      for (int a = 0; a < 8; ++a)
        if (a < nv) acc[a] = _mm256_fmadd_ps(pt, _mm256_loadu_ps(vt + 8 * a), acc[a]);
    }
    for (int a = 0; a < nv; ++a) _mm256_storeu_ps(o + j0 + 8 * a, acc[a]);
  }
}

}  // namespace ignis::ops::avx2
