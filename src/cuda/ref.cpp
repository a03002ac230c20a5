#include "cuda/ref.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ignis::cuda::ref {

std::vector<float> rope_inv_freq(const LlamaConfig& c) {
  const int hd = c.head_dim ? c.head_dim : c.dim / c.n_heads;
  const int rd = c.rope_dim ? c.rope_dim : hd;
  std::vector<float> f(size_t(rd / 2));
  for (int j = 0; j < rd / 2; ++j) {
    double freq = 1.0 / std::pow(double(c.rope_theta), 2.0 * j / rd);
    if (c.rope_scaling == RopeScaling::kLinear) {
      freq /= c.rope_factor;
    } else if (c.rope_scaling == RopeScaling::kLlama3) {
      const double old_ctx = c.rope_original_max_pos;
      const double low_wl = old_ctx / c.rope_low_freq_factor, high_wl = old_ctx / c.rope_high_freq_factor;
      const double wl = 2.0 * M_PI / freq;
      if (wl > low_wl) {
        freq /= c.rope_factor;
      } else if (wl >= high_wl) {
        const double smooth = (old_ctx / wl - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
        freq = (1 - smooth) * freq / c.rope_factor + smooth * freq;
      }
    }
    f[size_t(j)] = float(freq);
  }
  return f;
}

void linear(const float* W, const float* x, int B, int N, int K, float* y) {
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(W[size_t(n) * K + k]) * x[size_t(b) * K + k];
      y[size_t(b) * N + n] = float(s);
    }
}

void swiglu(const float* gu, float* out, int n, int hp) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < hp; ++j) {
      const size_t gcol = size_t(j / 8) * 16 + j % 8;
      const double g = gu[size_t(i) * 2 * hp + gcol], u = gu[size_t(i) * 2 * hp + gcol + 8];
      out[size_t(i) * hp + j] = float(g / (1 + std::exp(-g)) * u);
    }
}

void rmsnorm(float* x, const float* residual, const float* w, float* h, int n, int dim, float eps) {
  for (int i = 0; i < n; ++i) {
    float* xr = x + size_t(i) * dim;
    double ss = 0;
    for (int d = 0; d < dim; ++d) {
      if (residual) xr[d] += residual[size_t(i) * dim + d];
      ss += double(xr[d]) * xr[d];
    }
    const double r = 1.0 / std::sqrt(ss / dim + eps);
    for (int d = 0; d < dim; ++d) h[size_t(i) * dim + d] = float(xr[d] * r * w[d]);
  }
}

void rope_kv(const float* qkv, const float* bias, float* q_out, float* k_cache, float* v_cache, const int* pos, int n,
             int q_per_seq, int slot0, int nh, int nkv, int hd, int ctx, int rope_dim, RopeStyle style,
             const float* inv_freq) {
  const int width = (nh + 2 * nkv) * hd;
  std::vector<float> row(static_cast<size_t>(width));
  for (int i = 0; i < n; ++i) {
    const int b = i / q_per_seq, p = pos[b] + i % q_per_seq, slot = slot0 + b;
    for (int e = 0; e < width; ++e) row[size_t(e)] = qkv[size_t(i) * width + e] + (bias ? bias[e] : 0.f);
    for (int head = 0; head < nh + nkv; ++head) {
      float* v = row.data() + size_t(head) * hd;
      for (int j = 0; j < rope_dim / 2; ++j) {
        const int e0 = style == RopeStyle::kInterleaved ? 2 * j : j;
        const int e1 = style == RopeStyle::kInterleaved ? 2 * j + 1 : j + rope_dim / 2;
        const double a = double(float(p) * inv_freq[j]);
        const double c = std::cos(a), s = std::sin(a);
        const double x0 = v[e0], x1 = v[e1];
        v[e0] = float(x0 * c - x1 * s);
        v[e1] = float(x0 * s + x1 * c);
      }
    }
    for (int e = 0; e < nh * hd; ++e) q_out[size_t(i) * nh * hd + e] = row[size_t(e)];
    if (p < 0 || p >= ctx) continue;
    for (int kh = 0; kh < nkv; ++kh)
      for (int d = 0; d < hd; ++d) {
        const size_t dst = ((size_t(slot) * nkv + kh) * ctx + p) * hd + d;
        k_cache[dst] = row[size_t(nh + kh) * hd + d];
        v_cache[dst] = row[size_t(nh + nkv + kh) * hd + d];
      }
  }
}

void attention(const float* q, const float* k_cache, const float* v_cache, float* out, const int* pos, int n,
               int q_per_seq, int slot0, int nh, int nkv, int hd, int ctx, float scale) {
  const int G = nh / nkv;
  std::vector<double> s;
  for (int i = 0; i < n; ++i) {
    const int b = i / q_per_seq, p = std::min(pos[b] + i % q_per_seq, ctx - 1), slot = slot0 + b;
    for (int h = 0; h < nh; ++h) {
      const int kh = h / G;
      const float* qh = q + (size_t(i) * nh + h) * hd;
      const float* K = k_cache + (size_t(slot) * nkv + kh) * size_t(ctx) * hd;
      const float* V = v_cache + (size_t(slot) * nkv + kh) * size_t(ctx) * hd;
      s.assign(size_t(p) + 1, 0.0);
      double m = -INFINITY;
      for (int t = 0; t <= p; ++t) {
        double d = 0;
        for (int e = 0; e < hd; ++e) d += double(qh[e]) * K[size_t(t) * hd + e];
        s[size_t(t)] = d * scale;
        m = std::max(m, s[size_t(t)]);
      }
      double den = 0;
      for (auto& v : s) den += (v = std::exp(v - m));
      for (int e = 0; e < hd; ++e) {
        double o = 0;
        for (int t = 0; t <= p; ++t) o += s[size_t(t)] * V[size_t(t) * hd + e];
        out[(size_t(i) * nh + h) * hd + e] = float(o / den);
      }
    }
  }
}

int sample(const float* logits, int vocab, float temperature, int top_k, float top_p, float u,
           std::vector<int>* kept_out) {
  if (temperature <= 0) {
    int best = 0;
    for (int i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    if (kept_out) *kept_out = {best};
    return best;
  }
  const double m = *std::max_element(logits, logits + vocab);
  std::vector<double> p(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i) p[size_t(i)] = std::exp((logits[i] - m) / temperature);
  std::vector<int> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
  double floor_v = 0;
  if (top_k > 0 && top_k < vocab) floor_v = p[size_t(order[size_t(top_k - 1)])];
  double kept = 0;
  for (int i = 0; i < vocab; ++i)
    if (p[size_t(i)] >= floor_v) kept += p[size_t(i)];
  if (top_p > 0 && top_p < 1) {
    double cum = 0;
    for (int idx : order) {
      if (p[size_t(idx)] < floor_v) break;
      cum += p[size_t(idx)];
      if (cum >= top_p * kept) {
        floor_v = std::max(floor_v, p[size_t(idx)]);
        break;
      }
    }
    kept = 0;
    for (int i = 0; i < vocab; ++i)
      if (p[size_t(i)] >= floor_v) kept += p[size_t(i)];
  }
  if (kept_out) {
    kept_out->clear();
    for (int i = 0; i < vocab; ++i)
      if (p[size_t(i)] >= floor_v) kept_out->push_back(i);
  }
  const double r = double(u) * kept;
  double run = 0;
  int last = -1;
  for (int i = 0; i < vocab; ++i) {
    if (p[size_t(i)] < floor_v) continue;
    run += p[size_t(i)];
    last = i;
    if (r < run) return i;
  }
  return last;
}

}  // namespace ignis::cuda::ref
