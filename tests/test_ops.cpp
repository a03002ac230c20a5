// CPU ops against straightforward double-precision references on random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "ops/ops.h"

using namespace ignis;

namespace {
std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
double rel_err(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}
}  // namespace

TEST(Ops, RmsNorm) {
  const int n = 577;
  auto x = randn(n, 1, 3.0f), w = randn(n, 2);
  std::vector<float> out(n, NAN);
  ops::rmsnorm(x.data(), w.data(), out.data(), n, 1e-5f);
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const double s = 1.0 / std::sqrt(ss / n + 1e-5);
  std::vector<double> ref(n);
  for (int i = 0; i < n; ++i) ref[size_t(i)] = x[size_t(i)] * s * w[size_t(i)];
  EXPECT_LT(rel_err(out, ref), 1e-6);
}

TEST(Ops, SiluMul) {
  auto g = randn(1000, 3, 4.0f), u = randn(1000, 4);
  std::vector<float> out(1000, NAN);
  ops::silu_mul(g.data(), u.data(), out.data(), 1000);
  std::vector<double> ref(1000);
  for (size_t i = 0; i < 1000; ++i) ref[i] = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
  EXPECT_LT(rel_err(out, ref), 1e-6);
}

// RoPE as complex multiplication: pair (a, b) -> (a + ib) * exp(i * pos * theta^(-2j/d)).
class RopeTest : public ::testing::TestWithParam<RopeStyle> {};

TEST_P(RopeTest, MatchesComplexRotation) {
  LlamaConfig c;
  c.head_dim = 64;
  c.rope_dim = 64;
  c.rope_theta = 10000.0f;
  c.rope_style = GetParam();
  ops::Rope rope(c);
  const int heads = 3, pos = 37;
  auto x = randn(size_t(heads * 64), 5);
  std::vector<float> y = x;
  rope.apply(y.data(), heads, 64, pos);
  std::vector<double> ref(x.size());
  for (int h = 0; h < heads; ++h)
    for (int j = 0; j < 32; ++j) {
      const int a = GetParam() == RopeStyle::kInterleaved ? 2 * j : j;
      const int b = GetParam() == RopeStyle::kInterleaved ? 2 * j + 1 : j + 32;
      const double ang = pos * std::pow(10000.0, -2.0 * j / 64);
      const std::complex<double> z = std::complex<double>(x[size_t(h * 64 + a)], x[size_t(h * 64 + b)]) *
                                     std::polar(1.0, ang);
      ref[size_t(h * 64 + a)] = z.real();
      ref[size_t(h * 64 + b)] = z.imag();
    }
  EXPECT_LT(rel_err(y, ref), 1e-5);
  // Position 0 is the identity.
  std::vector<float> z = x;
  rope.apply(z.data(), heads, 64, 0);
  EXPECT_EQ(z, x);
}
INSTANTIATE_TEST_SUITE_P(Styles, RopeTest, ::testing::Values(RopeStyle::kInterleaved, RopeStyle::kHalfSplit));

TEST(Ops, RopeLinearScalingDividesPositions) {
  LlamaConfig c;
  c.head_dim = c.rope_dim = 16;
  c.rope_scaling = RopeScaling::kLinear;
  c.rope_factor = 4.0f;
  ops::Rope scaled(c);
  c.rope_scaling = RopeScaling::kNone;
  ops::Rope plain(c);
  auto x = randn(16, 9);
  std::vector<float> a = x, b = x;
  scaled.apply(a.data(), 1, 16, 40);
  plain.apply(b.data(), 1, 16, 10);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(a[size_t(i)], b[size_t(i)], 1e-5);
}

TEST(Ops, CausalGqaAttentionMatchesReference) {
  ThreadPool pool(2);
  struct Case { int n_heads, n_kv, hd, pos, n; };
  // n = 1 with 128+ keys: the split decode (chunks of keys, combined; 131 keys leave a short last
  // chunk); n < 4: the decode path (AVX2: 4 keys per pass, so lengths that are not a multiple of 4
  // check the tail; register-blocked values); n >= 4 with hd % 8 == 0: the blocked
  // prompt path (transposed keys, up to 8 query vectors per pass, 4-query blocks); hd = 20:
  // the generic path for a head size that is not a multiple of 8.
  for (const Case c : {Case{6, 2, 16, 5, 4}, Case{6, 2, 16, 7, 1}, Case{9, 3, 64, 0, 13}, Case{9, 3, 64, 30, 6},
                       Case{4, 4, 24, 3, 9}, Case{8, 1, 32, 2, 5}, Case{4, 2, 20, 1, 6}, Case{2, 1, 128, 100, 1},
                       Case{9, 3, 64, 37, 1}, Case{4, 2, 64, 10, 3},
                       Case{9, 3, 64, 300, 1}, Case{8, 2, 32, 130, 1}, Case{4, 4, 16, 127, 1}}) {
    const int n_heads = c.n_heads, n_kv = c.n_kv, hd = c.hd, pos = c.pos, n = c.n, kv_stride = n_kv * hd;
    SCOPED_TRACE("heads " + std::to_string(n_heads) + "/" + std::to_string(n_kv) + " hd " + std::to_string(hd) +
                 " pos " + std::to_string(pos) + " n " + std::to_string(n));
    auto q = randn(size_t(n * n_heads * hd), 11);
    auto kc = randn(size_t((pos + n) * kv_stride), 12);
    auto vc = randn(size_t((pos + n) * kv_stride), 13);
    for (auto& v : q) v *= 3.0f;  // peaked softmax rows, not all near-uniform
    std::vector<float> out(q.size(), NAN), scratch;
    ops::attention(pool, q.data(), kc.data(), vc.data(), out.data(), n, pos, n_heads, n_kv, hd, kv_stride, scratch);
    std::vector<double> ref(q.size(), 0.0);
    for (int i = 0; i < n; ++i)
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = h / (n_heads / n_kv), len = pos + i + 1;
        std::vector<double> s(static_cast<size_t>(len));
        double mx = -1e300;
        for (int t = 0; t < len; ++t) {
          double d = 0;
          for (int j = 0; j < hd; ++j)
            d += double(q[size_t((i * n_heads + h) * hd + j)]) * kc[size_t(t * kv_stride + kvh * hd + j)];
          s[size_t(t)] = d / std::sqrt(double(hd));
          mx = std::max(mx, s[size_t(t)]);
        }
        double sum = 0;
        for (auto& v : s) sum += (v = std::exp(v - mx));
        for (int t = 0; t < len; ++t)
          for (int j = 0; j < hd; ++j)
            ref[size_t((i * n_heads + h) * hd + j)] += s[size_t(t)] / sum * vc[size_t(t * kv_stride + kvh * hd + j)];
      }
    for (float v : out) ASSERT_TRUE(std::isfinite(v)) << "an output was not written";
    EXPECT_LT(rel_err(out, ref), 1e-5);
  }
}

TEST(Ops, SoftmaxAndSiluOverWideRanges) {
  // the vectorized exp: large negative (underflow to 0), large positive differences, tails
  for (int n : {1, 7, 8, 9, 100}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) x[size_t(i)] = float((i * 37) % 23) * 9.0f - 100.0f;
    std::vector<float> y = x;
    ops::softmax(y.data(), n);
    double mx = -1e300, sum = 0;
    for (float v : x) mx = std::max(mx, double(v));
    for (float v : x) sum += std::exp(double(v) - mx);
    for (int i = 0; i < n; ++i) EXPECT_NEAR(y[size_t(i)], std::exp(double(x[size_t(i)]) - mx) / sum, 1e-6) << i;
  }
  std::vector<float> g(37), u(37), out(37, NAN);
  for (int i = 0; i < 37; ++i) {
    g[size_t(i)] = float(i - 18) * 5.5f;  // -99 .. 99
    u[size_t(i)] = 0.5f + float(i) * 0.1f;
  }
  ops::silu_mul(g.data(), u.data(), out.data(), 37);
  for (int i = 0; i < 37; ++i) {
    const double gd = g[size_t(i)], ref = gd / (1.0 + std::exp(-gd)) * u[size_t(i)];
    EXPECT_NEAR(out[size_t(i)], ref, 2e-6 * std::max(1.0, std::fabs(ref))) << i;
  }
}
