#include <algorithm>
#include <cmath>
#include <numbers>

#include "ops/ops.h"

namespace ignis::ops {

namespace avx2 {
float dot(const float* a, const float* b, int n);
void axpy(float alpha, const float* x, float* y, int n);
void softmax(float* x, int n);
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
void scores_kt(const float* const* q, int nr, const float* kt, int ldk, int hd, int len, float scale, float* s,
               int lds);
void pv(const float* p, int len, const float* v, int ldv, int hd, float* o);
void scores(const float* q, const float* k, int ldk, int hd, int len, float scale, float* s);
float exp_shifted(float* x, int n, float* max_out);
}  // namespace avx2

namespace {
const bool kHaveAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
constexpr int kSplitMinKeys = 128;

// Portable versions: four independent sums so the compiler can use SSE without reassociating.
float dot_portable(const float* a, const float* b, int n) {
  float s[4] = {0, 0, 0, 0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) s[k] += a[i + k] * b[i + k];
  float r = (s[0] + s[1]) + (s[2] + s[3]);
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}
void axpy_portable(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}
inline float dot(const float* a, const float* b, int n) { return kHaveAvx2 ? avx2::dot(a, b, n) : dot_portable(a, b, n); }
inline void axpy(float alpha, const float* x, float* y, int n) {
  kHaveAvx2 ? avx2::axpy(alpha, x, y, n) : axpy_portable(alpha, x, y, n);
}
}  // namespace

void rmsnorm(const float* x, const float* w, float* out, int n, float eps) {
  double ss = 0;  // double: the sum of squares of thousands of values keeps its precision
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float scale = float(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  if (kHaveAvx2) return avx2::silu_mul(gate, up, out, n);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

Rope::Rope(const LlamaConfig& c) : style_(c.rope_style), rope_dim_(c.rope_dim) {
  const int half = c.rope_dim / 2;
  inv_freq_.resize(size_t(half));
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(double(c.rope_theta), 2.0 * i / c.rope_dim);
    if (c.rope_scaling == RopeScaling::kLlama3) {
      // Llama 3.1: wavelengths longer than original_ctx / low_freq_factor are slowed down by
      // `factor`, shorter than original_ctx / high_freq_factor kept, and blended in between.
      const double wavelen = 2 * std::numbers::pi / f;
      const double low_wavelen = c.rope_original_max_pos / c.rope_low_freq_factor;
      const double high_wavelen = c.rope_original_max_pos / c.rope_high_freq_factor;
      if (wavelen > low_wavelen) {
        f /= c.rope_factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (c.rope_original_max_pos / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        f = (1 - smooth) * f / c.rope_factor + smooth * f;
      }
    }
    inv_freq_[size_t(i)] = float(f);
  }
  if (c.rope_scaling == RopeScaling::kLinear) pos_scale_ = 1.0f / c.rope_factor;
}

void Rope::apply(float* x, int n_heads, int head_dim, int pos) const {
  const int half = rope_dim_ / 2;
  const float p = float(pos) * pos_scale_;
  for (int i = 0; i < half; ++i) {
    const float angle = p * inv_freq_[size_t(i)];
    const float c = std::cos(angle), s = std::sin(angle);
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + size_t(h) * head_dim;
      // interleaved: pair (2i, 2i+1); half-split: pair (i, i + rope_dim/2)
      const int a = style_ == RopeStyle::kInterleaved ? 2 * i : i;
      const int b = style_ == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * c - x1 * s;
      v[b] = x0 * s + x1 * c;
    }
  }
}

void softmax(float* x, int n) {
  if (kHaveAvx2) return avx2::softmax(x, n);
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

namespace {

// Prompt processing (AVX2, head_dim a multiple of 8): the keys of each KV head are first
// transposed to kt[d][t], then a task takes one KV head and a block of 4 queries with all
// the query heads that share it (up to 8 query vectors at a time): their scores come from
// one outer-product pass over kt (scores_kt), then softmax and P.V per query vector.
// Compared with one dot product per (query, key), each key is loaded once per 8 queries
// and there are no horizontal sums.
void attention_prefill(ThreadPool& pool, const float* q, const float* kcache, const float* vcache, float* out, int n,
                       int pos, int n_heads, int n_kv_heads, int head_dim, int kv_stride, std::vector<float>& scratch) {
  constexpr int kQueryBlock = 4, kRows = 8;
  const int group = n_heads / n_kv_heads, L = pos + n;
  const size_t kt_size = size_t(n_kv_heads) * head_dim * L;
  scratch.resize(kt_size + size_t(pool.size()) * kRows * L);
  float* kt = scratch.data();
  for (int t = 0; t < L; ++t)
    for (int h = 0; h < n_kv_heads; ++h)
      for (int d = 0; d < head_dim; ++d)
        kt[(size_t(h) * head_dim + d) * L + t] = kcache[size_t(t) * kv_stride + size_t(h) * head_dim + d];
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int q_stride = n_heads * head_dim;
  const int n_blocks = (n + kQueryBlock - 1) / kQueryBlock;
  pool.run(int64_t(n_kv_heads) * n_blocks, [&](int64_t task, int thread) {
    const int hk = int(task % n_kv_heads), i0 = int(task / n_kv_heads) * kQueryBlock;
    const int i1 = std::min(n, i0 + kQueryBlock);
    // the query vectors of this task: (query i, head hk*group + g)
    const int total = (i1 - i0) * group;
    float* s = scratch.data() + kt_size + size_t(thread) * kRows * L;
    for (int r0 = 0; r0 < total; r0 += kRows) {
      const int nr = std::min(kRows, total - r0);
      const float* qs[kRows];
      int len[kRows];
      float* os[kRows];
      int len_max = 0;
      for (int r = 0; r < nr; ++r) {
        const int i = i0 + (r0 + r) / group, h = hk * group + (r0 + r) % group;
        qs[r] = q + size_t(i) * q_stride + size_t(h) * head_dim;
        os[r] = out + size_t(i) * q_stride + size_t(h) * head_dim;
        len[r] = pos + i + 1;  // causal: query at pos+i sees keys [0, pos+i]
        len_max = std::max(len_max, len[r]);
      }
      avx2::scores_kt(qs, nr, kt + size_t(hk) * head_dim * L, L, head_dim, len_max, scale, s, L);
      for (int r = 0; r < nr; ++r) {
        avx2::softmax(s + size_t(r) * L, len[r]);
        avx2::pv(s + size_t(r) * L, len[r], vcache + size_t(hk) * head_dim, kv_stride, head_dim, os[r]);
      }
    }
  });
}

// Decode of one query over a long cache (AVX2, head_dim a multiple of 8), flash-decoding
// style: the positions are cut into S chunks and a task takes one KV head and one chunk with
// all the query heads that share it (their keys and values stay in L1/L2 between the heads).
// Each task leaves, per query head, the chunk's max score m, sum of exp(s - m) and the
// unnormalised P.V; the combine rescales the chunks to the overall max. S makes the task count
// a multiple of the threads, so that both cores finish together (9 heads on 2 threads did not).
void attention_decode_split(ThreadPool& pool, const float* q, const float* kcache, const float* vcache, float* out,
                            int pos, int n_heads, int n_kv_heads, int head_dim, int kv_stride, std::vector<float>& scratch) {
  const int L = pos + 1, group = n_heads / n_kv_heads, T = pool.size();
  int S = (2 * T + n_kv_heads - 1) / n_kv_heads;
  while ((n_kv_heads * S) % T) ++S;
  const int chunk = (L + S - 1) / S;
  S = (L + chunk - 1) / chunk;
  // per (head, chunk): hd values of P.V, then m and l; then per thread a score buffer of chunk floats
  const size_t part = size_t(head_dim) + 2, parts = size_t(n_heads) * size_t(S) * part;
  scratch.resize(parts + size_t(T) * size_t(chunk));
  float* P = scratch.data();
  const float scale = 1.0f / std::sqrt(float(head_dim));
  pool.run(int64_t(n_kv_heads) * S, [&](int64_t task, int thread) {
    const int kvh = int(task / S), c = int(task % S);
    const int t0 = c * chunk, len = std::min(L, t0 + chunk) - t0;
    const float* k = kcache + size_t(t0) * kv_stride + size_t(kvh) * head_dim;
    const float* v = vcache + size_t(t0) * kv_stride + size_t(kvh) * head_dim;
    float* s = scratch.data() + parts + size_t(thread) * size_t(chunk);
    for (int g = 0; g < group; ++g) {
      const int h = kvh * group + g;
      float* dst = P + (size_t(h) * S + c) * part;
      avx2::scores(q + size_t(h) * head_dim, k, kv_stride, head_dim, len, scale, s);
      dst[head_dim + 1] = avx2::exp_shifted(s, len, &dst[head_dim]);
      avx2::pv(s, len, v, kv_stride, head_dim, dst);
    }
  });
  for (int h = 0; h < n_heads; ++h) {
    const float* ph = P + size_t(h) * S * part;
    float m = -INFINITY;
    for (int c = 0; c < S; ++c) m = std::max(m, ph[c * part + head_dim]);
    float l = 0;
    float* o = out + size_t(h) * head_dim;
    std::fill(o, o + head_dim, 0.0f);
    for (int c = 0; c < S; ++c) {
      const float w = std::exp(ph[c * part + head_dim] - m);
      l += w * ph[c * part + head_dim + 1];
      for (int d = 0; d < head_dim; ++d) o[d] += w * ph[c * part + d];
    }
    const float inv = 1.0f / l;
    for (int d = 0; d < head_dim; ++d) o[d] *= inv;
  }
}

}  // namespace

void attention(ThreadPool& pool, const float* q, const float* kcache, const float* vcache, float* out, int n,
               int pos, int n_heads, int n_kv_heads, int head_dim, int kv_stride, std::vector<float>& scratch) {
  if (kHaveAvx2 && n >= 4 && head_dim % 8 == 0)
    return attention_prefill(pool, q, kcache, vcache, out, n, pos, n_heads, n_kv_heads, head_dim, kv_stride, scratch);
  // one query and a long cache: split the keys too (below ~128 keys the per-head tasks are cheaper)
  if (kHaveAvx2 && n == 1 && head_dim % 8 == 0 && pos + 1 >= kSplitMinKeys && pool.size() > 1)
    return attention_decode_split(pool, q, kcache, vcache, out, pos, n_heads, n_kv_heads, head_dim, kv_stride, scratch);
  const int group = n_heads / n_kv_heads;
  const int max_len = pos + n;
  scratch.resize(size_t(pool.size()) * size_t(max_len));
  const float scale = 1.0f / std::sqrt(float(head_dim));
  const int q_stride = n_heads * head_dim;
  pool.run(int64_t(n) * n_heads, [&](int64_t task, int thread) {
    const int i = int(task / n_heads), h = int(task % n_heads);
    const int len = pos + i + 1;  // causal: query at pos+i sees keys [0, pos+i]
    const float* qh = q + size_t(i) * q_stride + size_t(h) * head_dim;
    const size_t kv_off = size_t(h / group) * head_dim;
    float* s = scratch.data() + size_t(thread) * size_t(max_len);
    float* o = out + size_t(i) * q_stride + size_t(h) * head_dim;
    if (kHaveAvx2 && head_dim % 8 == 0) {  // keys 4 at a time, values into register accumulators
      avx2::scores(qh, kcache + kv_off, kv_stride, head_dim, len, scale, s);
      avx2::softmax(s, len);
      avx2::pv(s, len, vcache + kv_off, kv_stride, head_dim, o);
      return;
    }
    for (int t = 0; t < len; ++t) {
      s[t] = dot(qh, kcache + size_t(t) * kv_stride + kv_off, head_dim) * scale;
    }
    softmax(s, len);
    std::fill(o, o + head_dim, 0.0f);
    for (int t = 0; t < len; ++t) axpy(s[t], vcache + size_t(t) * kv_stride + kv_off, o, head_dim);
  });
}

}  // namespace ignis::ops
