// CPU references of the encoder kernels (see encoder_ref.h).
#include "cuda/encoder_ref.h"

#include <algorithm>
#include <cmath>

namespace ignis::cuda::encref {

float act(Act a, float x) {
  switch (a) {
    case Act::kGeluErf: return float(0.5 * x * (1.0 + std::erf(double(x) / std::sqrt(2.0))));
    case Act::kGeluTanh: {
      const double xd = x;
      return float(0.5 * xd * (1.0 + std::tanh(0.7978845608028654 * (xd + 0.044715 * xd * xd * xd))));
    }
    case Act::kTanh: return std::tanh(x);
    case Act::kNone: break;
  }
  return x;
}

namespace {
void layernorm_row(const double* v, const float* gamma, const float* beta, int hidden, float eps, float* out) {
  double mean = 0;
  for (int i = 0; i < hidden; ++i) mean += v[i];
  mean /= hidden;
  double var = 0;
  for (int i = 0; i < hidden; ++i) var += (v[i] - mean) * (v[i] - mean);
  var /= hidden;
  const double rstd = 1.0 / std::sqrt(var + double(eps));
  for (int i = 0; i < hidden; ++i) out[i] = float((v[i] - mean) * rstd * gamma[i] + beta[i]);
}
}  // namespace

void embed_layernorm(const float* word, const float* pos_tab, const float* type_tab, const float* gamma,
                     const float* beta, const int* ids, const int* types, const int* pos, int n, int hidden, float eps,
                     float* out) {
  std::vector<double> v(static_cast<size_t>(hidden));
  for (int r = 0; r < n; ++r) {
    const float* w = word + size_t(ids[r]) * hidden;
    const float* p = pos_tab + size_t(pos[r]) * hidden;
    const float* t = type_tab + size_t(types ? types[r] : 0) * hidden;
    for (int i = 0; i < hidden; ++i) v[size_t(i)] = double(w[i]) + p[i] + t[i];
    layernorm_row(v.data(), gamma, beta, hidden, eps, out + size_t(r) * hidden);
  }
}

void add_layernorm(const float* a, float* x, const float* gamma, const float* beta, int n, int hidden, float eps) {
  std::vector<double> v(static_cast<size_t>(hidden));
  for (int r = 0; r < n; ++r) {
    float* xr = x + size_t(r) * hidden;
    for (int i = 0; i < hidden; ++i) v[size_t(i)] = double(xr[i]) + (a ? a[size_t(r) * hidden + i] : 0.f);
    layernorm_row(v.data(), gamma, beta, hidden, eps, xr);
  }
}

void linear(const float* x, const float* W, const float* bias, int M, int N, int K, Act a, float* y) {
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < N; ++j) {
      double s = bias ? bias[j] : 0.0;
      const float* xr = x + size_t(m) * K;
      const float* wr = W + size_t(j) * K;
      for (int k = 0; k < K; ++k) s += double(xr[k]) * wr[k];
      y[size_t(m) * N + j] = act(a, float(s));
    }
}

void attention(const float* qkv, const int* offsets, int B, int nh, int hd, float scale, float* out) {
  const int H = nh * hd;
  const size_t ld = size_t(3) * H;
  std::vector<double> p, o(static_cast<size_t>(hd));
  for (int b = 0; b < B; ++b) {
    const int s0 = offsets[b], s1 = offsets[b + 1];
    p.resize(size_t(s1 - s0));
    for (int h = 0; h < nh; ++h)
      for (int r = s0; r < s1; ++r) {
        const float* q = qkv + size_t(r) * ld + size_t(h) * hd;
        double mx = -INFINITY;
        for (int j = s0; j < s1; ++j) {
          const float* k = qkv + size_t(j) * ld + H + size_t(h) * hd;
          double d = 0;
          for (int e = 0; e < hd; ++e) d += double(q[e]) * k[e];
          p[size_t(j - s0)] = d * scale;
          mx = std::max(mx, d * scale);
        }
        double sum = 0;
        for (auto& v : p) sum += (v = std::exp(v - mx));
        std::fill(o.begin(), o.end(), 0.0);
        for (int j = s0; j < s1; ++j) {
          const float* v = qkv + size_t(j) * ld + 2 * H + size_t(h) * hd;
          for (int e = 0; e < hd; ++e) o[size_t(e)] += p[size_t(j - s0)] * v[e];
        }
        for (int e = 0; e < hd; ++e) out[size_t(r) * H + size_t(h) * hd + e] = float(o[size_t(e)] / sum);
      }
  }
}

void pool(const float* hidden, const int* offsets, int B, int H, bool mean, bool normalize, float* out) {
  std::vector<double> v(static_cast<size_t>(H));
  for (int b = 0; b < B; ++b) {
    const int s0 = offsets[b], rows = mean ? offsets[b + 1] - s0 : 1;
    std::fill(v.begin(), v.end(), 0.0);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < H; ++i) v[size_t(i)] += hidden[size_t(s0 + r) * H + i];
    double ss = 0;
    for (auto& x : v) {
      x /= rows;
      ss += x * x;
    }
    const double scale = normalize ? 1.0 / std::max(std::sqrt(ss), 1e-12) : 1.0;
    for (int i = 0; i < H; ++i) out[size_t(b) * H + i] = float(v[size_t(i)] * scale);
  }
}

std::vector<float> encoder_forward(const EncoderRefModel& m, const std::vector<int>& ids, const std::vector<int>& types,
                                   const std::vector<int>& pos, const std::vector<int>& offsets) {
  const int n = int(ids.size()), H = m.hidden, I = m.intermediate, B = int(offsets.size()) - 1;
  std::vector<float> x(size_t(n) * H), qkv(size_t(n) * 3 * H), ctx(size_t(n) * H), tmp(size_t(n) * H),
      ffn(size_t(n) * I);
  embed_layernorm(m.word.data(), m.pos_tab.data(), m.type_tab.data(), m.emb_g.data(), m.emb_b.data(), ids.data(),
                  types.data(), pos.data(), n, H, m.eps, x.data());
  const int hd = H / m.heads;
  for (const auto& L : m.layers) {
    linear(x.data(), L.wqkv.data(), L.bqkv.data(), n, 3 * H, H, Act::kNone, qkv.data());
    attention(qkv.data(), offsets.data(), B, m.heads, hd, 1.f / std::sqrt(float(hd)), ctx.data());
    linear(ctx.data(), L.wo.data(), L.bo.data(), n, H, H, Act::kNone, tmp.data());
    add_layernorm(tmp.data(), x.data(), L.ln1_g.data(), L.ln1_b.data(), n, H, m.eps);
    linear(x.data(), L.w1.data(), L.b1.data(), n, I, H, m.gelu, ffn.data());
    linear(ffn.data(), L.w2.data(), L.b2.data(), n, H, I, Act::kNone, tmp.data());
    add_layernorm(tmp.data(), x.data(), L.ln2_g.data(), L.ln2_b.data(), n, H, m.eps);
  }
  return x;
}

}  // namespace ignis::cuda::encref
