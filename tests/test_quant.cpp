// Quantized CPU kernels (src/ops/quant.h): GGML block layouts, quantize/dequantize round
// trips, dot products (dispatched vs scalar vs float), matmul (vs float, edge tiles, every
// element written, forced scalar vs AVX2), get_rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "ops/quant.h"

using namespace ignis;
using namespace ignis::quant;

namespace {

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                           DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K, DType::Q3_K, DType::Q4_K,
                           DType::Q5_K, DType::Q6_K, DType::Q8_K};
// Types that can be a matmul weight (everything but the activation-only Q8_K).
const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                              DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Random values, never all zero: blocks of 32 with magnitudes spread over three decades
// and, every third block, a positive offset (exercises the min of Q4_1 / Q5_1 / K-quants).
std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f), e(-2.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; b += 32) {
    const float scale = std::pow(10.f, e(rng));
    const float off = (b / 32) % 3 == 2 ? scale * 0.7f : 0.f;
    for (int64_t i = b; i < std::min(n, b + 32); ++i) v[size_t(i)] = u(rng) * scale + off;
  }
  return v;
}

std::vector<uint8_t> quantized(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> q(row_bytes(t, int64_t(v.size())));
  quantize_row(t, v.data(), q.data(), int64_t(v.size()));
  return q;
}

std::vector<float> dequantized(DType t, const void* q, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  dequantize_row(t, q, v.data(), n);
  return v;
}

// Largest round-trip error of a value, as a fraction of the largest |x| of its block
// (the 32-value block, or the 256-value super-block for K-quants). Derivations:
//   q4_0: scale = max/-8, the other sign clips at +7: amax/8.  q5_0: amax/16.
//   q4_1: (max-min)/15/2 <= amax/15.  q5_1: amax/31.  q8_*: amax/254 (+fp16 scale).
//   q2_k: sub-block scale (range/3, rounded up to the 4-bit grid) / 2 + dmin/2 ~ 0.4.
//   q3_k: sub-block amax/4 (the clipping side).  q4_k: ~amax/15 + amax/126.
//   q5_k: ~amax/31 + amax/126.  q6_k: amax/32 + scale rounding.
double round_trip_bound(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1.0 / 2048;
    case DType::BF16: return 1.0 / 256;
    case DType::Q4_0: return 0.13;
    case DType::Q4_1: return 0.075;
    case DType::Q5_0: return 0.065;
    case DType::Q5_1: return 0.036;
    case DType::Q8_0:
    case DType::Q8_1:
    case DType::Q8_K: return 0.0045;
    case DType::Q2_K: return 0.45;
    case DType::Q3_K: return 0.28;
    case DType::Q4_K: return 0.085;
    case DType::Q5_K: return 0.045;
    case DType::Q6_K: return 0.036;
    default: return 0;
  }
}

}  // namespace

TEST(QuantRoundTrip, EveryTypeWithinItsBound) {
  for (DType t : kAllTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t bs = dtype_info(t).block_size;
    const int64_t n = std::max<int64_t>(bs, 32) * 7;
    const auto x = random_values(n, 7 + uint32_t(t));
    const auto q = quantized(t, x);
    const auto y = dequantized(t, q.data(), n);
    const int64_t group = std::max<int64_t>(bs, 32);
    double err2 = 0;
    for (int64_t g = 0; g < n; g += group) {
      float amax = 0;
      for (int64_t i = g; i < g + group; ++i) amax = std::max(amax, std::fabs(x[size_t(i)]));
      for (int64_t i = g; i < g + group; ++i) {
        const double err = std::fabs(double(y[size_t(i)]) - x[size_t(i)]);
        const double bound = bs == 1 ? round_trip_bound(t) * std::fabs(x[size_t(i)]) : round_trip_bound(t) * amax;
        ASSERT_LE(err, bound + 1e-30) << "value " << i << " x=" << x[size_t(i)] << " y=" << y[size_t(i)];
        const double rel = bs == 1 ? err / std::fabs(x[size_t(i)]) : err / amax;
        err2 += rel * rel;
      }
    }
    // The typical error (RMS, same normalisation) is well below the worst case.
    const double rms = std::sqrt(err2 / double(n));
    std::printf("%-5s round-trip error: max bound %.4f, rms %.5f\n", std::string(dtype_name(t)).c_str(),
                round_trip_bound(t), rms);
    EXPECT_LE(rms, std::max(1e-7, round_trip_bound(t) * 0.7));
  }
}

TEST(QuantRoundTrip, Q8BitPatternsAreStable) {
  // Quantize -> dequantize -> quantize reproduces the same bytes for the activation types.
  // (Not Q8_1: GGML computes its s = d*sum from the unrounded f32 d, so s may move an ulp.)
  for (DType t : {DType::Q8_0, DType::Q8_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t n = 256 * 5;
    auto q1 = quantized(t, random_values(n, 11));
    const auto y = dequantized(t, q1.data(), n);
    auto q2 = quantized(t, y);
    ASSERT_EQ(q1.size(), q2.size());
    if (t == DType::Q8_K) {
      // Q8_K's scale is -max/127 for the value `max` of largest magnitude (the first one):
      // after a round trip a +127 and a -127 tie, so a block may come back negated
      // (d -> -d, qs -> -qs): the same values. Undo that before comparing bytes.
      auto* b1 = reinterpret_cast<blocks::Q8_K*>(q1.data());
      auto* b2 = reinterpret_cast<blocks::Q8_K*>(q2.data());
      for (int64_t b = 0; b < n / 256; ++b)
        if (b2[b].d == -b1[b].d && b1[b].d != 0) {
          b2[b].d = -b2[b].d;
          for (auto& q : b2[b].qs) q = int8_t(-q);
          for (auto& s : b2[b].bsums) s = int16_t(-s);
        }
    }
    for (size_t i = 0; i < q1.size(); ++i) ASSERT_EQ(int(q1[i]), int(q2[i])) << "byte " << i;
    EXPECT_EQ(dequantized(t, q2.data(), n), y);
  }
}

TEST(QuantRoundTrip, Q8_0MatchesGGMLReferenceRounding) {
  // amax = 127 -> d = 1 exactly, id = 1: values round half away from zero (roundf).
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = 0;
  x[0] = 127.f;
  x[1] = 2.5f;   // -> 3
  x[2] = -2.5f;  // -> -3
  x[3] = 1.49f;  // -> 1
  blocks::Q8_0 b;
  quantize_row(DType::Q8_0, x, &b, 32);
  EXPECT_EQ(b.d, 0x3C00);
  EXPECT_EQ(b.qs[0], 127);
  EXPECT_EQ(b.qs[1], 3);
  EXPECT_EQ(b.qs[2], -3);
  EXPECT_EQ(b.qs[3], 1);
  // Q8_K: iscale = -127/max with max the signed value of largest magnitude; here max = -254
  // so iscale = 0.5, d = 2; 3.0 * 0.5 = 1.5 rounds to even (2), 5 * 0.5 = 2.5 -> 2.
  std::vector<float> xk(256, 0.f);
  xk[0] = -254.f;
  xk[1] = 3.f;
  xk[2] = 5.f;
  blocks::Q8_K k;
  quantize_row(DType::Q8_K, xk.data(), &k, 256);
  EXPECT_EQ(k.d, 2.f);
  EXPECT_EQ(k.qs[0], -127);
  EXPECT_EQ(k.qs[1], 2);
  EXPECT_EQ(k.qs[2], 2);
  EXPECT_EQ(k.bsums[0], -123);
  EXPECT_EQ(k.bsums[1], 0);
}

// ---- hand-built blocks: fixed bytes, values derived by hand from the GGML layouts -------------

TEST(QuantLayout, Q4_0NibbleOrder) {
  // d = 1.0 (fp16 0x3C00); byte j holds value j in its low nibble and value j+16 in its
  // high nibble, each minus 8. qs[0] = 0x1F: y[0] = 15-8 = 7, y[16] = 1-8 = -7.
  blocks::Q4_0 b{};
  b.d = 0x3C00;
  std::memset(b.qs, 0x88, 16);
  b.qs[0] = 0x1F;
  b.qs[5] = 0x80;  // y[5] = 0-8 = -8, y[21] = 0
  const auto y = dequantized(DType::Q4_0, &b, 32);
  EXPECT_EQ(y[0], 7.f);
  EXPECT_EQ(y[16], -7.f);
  EXPECT_EQ(y[5], -8.f);
  EXPECT_EQ(y[21], 0.f);
  EXPECT_EQ(y[1], 0.f);
}

TEST(QuantLayout, Q4_1AndQ5) {
  // Q4_1: d = 0.5 (0x3800), m = -1 (0xBC00); qs[1] = 0x3A: y[1] = 10*0.5-1 = 4, y[17] = 3*0.5-1 = 0.5.
  blocks::Q4_1 a{};
  a.d = 0x3800;
  a.m = 0xBC00;
  a.qs[1] = 0x3A;
  auto y = dequantized(DType::Q4_1, &a, 32);
  EXPECT_EQ(y[1], 4.f);
  EXPECT_EQ(y[17], 0.5f);
  EXPECT_EQ(y[0], -1.f);
  // Q5_0: d = 1; qh (little-endian u32) bit j is the 5th bit of value j. qh = 0x00010001:
  // value 0 and value 16 have it. qs[0] = 0x21: y[0] = (1|16)-16 = 1, y[16] = (2|16)-16 = 2,
  // y[1] = 0-16 = -16.
  blocks::Q5_0 b{};
  b.d = 0x3C00;
  b.qh[0] = 0x01;
  b.qh[2] = 0x01;
  b.qs[0] = 0x21;
  y = dequantized(DType::Q5_0, &b, 32);
  EXPECT_EQ(y[0], 1.f);
  EXPECT_EQ(y[16], 2.f);
  EXPECT_EQ(y[1], -16.f);
  // Q5_1: d = 1, m = 0.5 (0x3800); qh bit 31 -> value 31 gets 16: qs[15] = 0x30 -> y[31] = (3|16)+0.5.
  blocks::Q5_1 c{};
  c.d = 0x3C00;
  c.m = 0x3800;
  c.qh[3] = 0x80;
  c.qs[15] = 0x30;
  y = dequantized(DType::Q5_1, &c, 32);
  EXPECT_EQ(y[31], 19.5f);
  EXPECT_EQ(y[15], 0.5f);
}

TEST(QuantLayout, Q2_K) {
  // d = 1, dmin = 0.5. Values 0..15 use scales[0] = 0x12 (scale 2, min 1); values 32..47 use
  // scales[2] = 0x03 (scale 3, min 0). qs[0] = 0xE4 = 0b11'10'01'00: value 0 = bits 0-1 = 0,
  // value 32 = bits 2-3 = 1, value 64 = bits 4-5 = 2, value 96 = bits 6-7 = 3.
  // y[0] = 2*0 - 0.5*1 = -0.5; y[32] = 3*1 - 0 = 3; y[64] uses scales[4] = 0x01: 1*2 = 2;
  // y[96] uses scales[6] = 0x24 (scale 4, min 2): 4*3 - 0.5*2 = 11.
  blocks::Q2_K b{};
  b.d = 0x3C00;
  b.dmin = 0x3800;
  b.scales[0] = 0x12;
  b.scales[2] = 0x03;
  b.scales[4] = 0x01;
  b.scales[6] = 0x24;
  b.qs[0] = 0xE4;
  const auto y = dequantized(DType::Q2_K, &b, 256);
  EXPECT_EQ(y[0], -0.5f);
  EXPECT_EQ(y[32], 3.f);
  EXPECT_EQ(y[64], 2.f);
  EXPECT_EQ(y[96], 11.f);
  EXPECT_EQ(y[1], -0.5f);  // q = 0 in the same sub-block
}

TEST(QuantLayout, Q3_K) {
  // Scales are 6-bit, stored +32: scale i has its low nibble in byte i (i < 8; i >= 8 uses the
  // high nibble of byte i-8) and its top 2 bits in byte 8 + i%4 at bit 2*(i/4).
  // scales[8..11] = 0xAA put top bits 0b10 (=32) everywhere -> every scale is 0 except scale 0,
  // whose low nibble scales[0] = 0x02 makes it 34-32 = 2. d = 1.
  // qs[0] = 0x03, hmask[0] bit 0 set -> q = 3 (no -4): y[0] = 2*3 = 6.
  // qs[1] = 0x01, hmask[1] bit 0 clear -> q = 1-4 = -3: y[1] = -6.
  blocks::Q3_K b{};
  b.d = 0x3C00;
  b.scales[0] = 0x02;
  for (int i = 8; i < 12; ++i) b.scales[i] = 0xAA;
  b.qs[0] = 0x03;
  b.qs[1] = 0x01;
  b.hmask[0] = 0x01;
  const auto y = dequantized(DType::Q3_K, &b, 256);
  EXPECT_EQ(y[0], 6.f);
  EXPECT_EQ(y[1], -6.f);
  EXPECT_EQ(y[16], 0.f);  // scale 1 is 0
}

TEST(QuantLayout, Q4_KAndQ5_K) {
  // d = 1, dmin = 1. Sub-block j (32 values) has 6-bit scale/min: for j < 4 in the low 6 bits
  // of scales[j] / scales[j+4]; for j >= 4 the low nibbles in scales[j+4] (scale low, min
  // high) and the top 2 bits in bits 6-7 of scales[j-4] / scales[j].
  // Sub-block 0: scale 2, min 1; sub-block 1: scale 3, min 0; sub-block 4: scale 33
  // (0b10'0001: low nibble 1 in scales[8], top bits 2 in scales[0] bits 6-7), min 2.
  // qs[0] = 0x74: y[0] = 2*4 - 1 = 7, y[32] = 3*7 - 0 = 21.
  // Sub-block 4 = values 128..159 = low nibbles of qs[64..95]: qs[64] = 0x02 -> 33*2 - 2 = 64.
  blocks::Q4_K b{};
  b.d = 0x3C00;
  b.dmin = 0x3C00;
  b.scales[0] = 2 | (2 << 6);
  b.scales[4] = 1;
  b.scales[1] = 3;
  b.scales[8] = 0x21;  // scale low nibble 1, min low nibble 2
  b.qs[0] = 0x74;
  b.qs[64] = 0x02;
  auto y = dequantized(DType::Q4_K, &b, 256);
  EXPECT_EQ(y[0], 7.f);
  EXPECT_EQ(y[32], 21.f);
  EXPECT_EQ(y[128], 64.f);
  EXPECT_EQ(y[1], -1.f);  // q = 0 in sub-block 0
  // Q5_K: same scales; qh[l] bit 2c is the 5th bit of value 64c+l, bit 2c+1 of value 64c+32+l.
  // qs[0] = 0x0F, qh[0] = 0x01: y[0] = 2*(15+16) - 1 = 61. qh[0] bit 1 clear: y[32] = 0.
  // qh[0] bit 4 (c = 2) -> value 128: 33*(0+16) - 2 = 526.
  blocks::Q5_K c{};
  c.d = 0x3C00;
  c.dmin = 0x3C00;
  std::memcpy(c.scales, b.scales, 12);
  c.qs[0] = 0x0F;
  c.qh[0] = 0x01 | 0x10;
  y = dequantized(DType::Q5_K, &c, 256);
  EXPECT_EQ(y[0], 61.f);
  EXPECT_EQ(y[32], 0.f);
  EXPECT_EQ(y[128], 526.f);
}

TEST(QuantLayout, Q6_K) {
  // d = 1. For l < 32 of the first half: ql[l] low nibble -> value l, ql[l+32] low -> l+32,
  // ql[l] high -> l+64, ql[l+32] high -> l+96; qh[l] bits 0-1, 2-3, 4-5, 6-7 are their top
  // 2 bits; q - 32; int8 scale per 16 values. ql[0] = 0x51, ql[32] = 0x00, qh[0] = 0xE4.
  // y[0] = 2*((1|0<<4)-32) = -62; y[32] = -1*((0|1<<4)-32) = 16; y[64] = 5*((5|2<<4)-32) = 25;
  // y[96] = 3*((0|3<<4)-32) = 48.
  blocks::Q6_K b{};
  b.d = 0x3C00;
  b.scales[0] = 2;
  b.scales[2] = -1;
  b.scales[4] = 5;
  b.scales[6] = 3;
  b.ql[0] = 0x51;
  b.qh[0] = 0xE4;
  const auto y = dequantized(DType::Q6_K, &b, 256);
  EXPECT_EQ(y[0], -62.f);
  EXPECT_EQ(y[32], 16.f);
  EXPECT_EQ(y[64], 25.f);
  EXPECT_EQ(y[96], 48.f);
}

// ---- dot products ---------------------------------------------------------------------------

TEST(QuantVecDot, DispatchedVsReferenceVsFloat) {
  for (DType t : kWeightTypes) {
    const DType vt = vec_dot_type(t);
    const int64_t bs = std::max(dtype_info(t).block_size, dtype_info(vt).block_size);
    for (int64_t nblocks : {1, 3, 7, 9}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " blocks " + std::to_string(nblocks));
      const int64_t n = bs * nblocks * (bs == 1 ? 37 : 1);
      const auto wq = quantized(t, random_values(n, 100 + uint32_t(t)));
      const auto xq = quantized(vt, random_values(n, 200 + uint32_t(nblocks)));
      const auto wf = dequantized(t, wq.data(), n);
      const auto xf = dequantized(vt, xq.data(), n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        exact += double(wf[size_t(i)]) * xf[size_t(i)];
        mag += std::fabs(double(wf[size_t(i)]) * xf[size_t(i)]);
      }
      const float ref = vec_dot_ref(t, wq.data(), xq.data(), n);
      const float fast = vec_dot(t, wq.data(), xq.data(), n);
      // Integer block sums are exact; only the float scaling and summation order differ:
      // a few float ulps of the sum of |terms|.
      EXPECT_NEAR(ref, exact, 2e-6 * mag + 1e-30);
      EXPECT_NEAR(fast, ref, 2e-6 * mag + 1e-30);
    }
  }
}

// ---- matmul ---------------------------------------------------------------------------------

namespace {

Tensor make_weight(DType t, int64_t N, int64_t K, uint32_t seed) {
  Tensor W = Tensor::empty({N, K}, t);
  const auto v = random_values(N * K, seed);
  for (int64_t r = 0; r < N; ++r) quantize_row(t, v.data() + r * K, W.row<uint8_t>(r), K);
  return W;
}

Tensor make_input(int64_t M, int64_t K, uint32_t seed) {
  Tensor x = Tensor::empty({M, K});
  const auto v = random_values(M * K, seed);
  std::memcpy(x.data(), v.data(), v.size() * 4);
  return x;
}

// y = x W^T in double from dequantized W and x as the kernels see it (quantized to the
// activation type and back), plus the sum of |terms| for a tolerance.
// quantize_x = false: x as given, in f32 (the reference of Activations::kF32).
void reference_matmul(const Tensor& W, const Tensor& x, std::vector<double>& y, std::vector<double>& mag,
                      bool quantize_x = true) {
  const int64_t N = W.rows(), K = W.cols(), M = x.rows();
  const DType vt = quantize_x ? vec_dot_type(W.dtype()) : DType::F32;
  std::vector<float> wf(size_t(N * K)), xf(size_t(M * K));
  for (int64_t r = 0; r < N; ++r) dequantize_row(W.dtype(), W.row<uint8_t>(r), wf.data() + r * K, K);
  std::vector<uint8_t> xq(row_bytes(vt, K));
  for (int64_t m = 0; m < M; ++m) {
    quantize_row(vt, x.row<float>(m), xq.data(), K);
    dequantize_row(vt, xq.data(), xf.data() + m * K, K);
  }
  y.assign(size_t(M * N), 0);
  mag.assign(size_t(M * N), 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const double p = double(xf[size_t(m * K + k)]) * wf[size_t(n * K + k)];
        y[size_t(m * N + n)] += p;
        mag[size_t(m * N + n)] += std::fabs(p);
      }
}

void fill_nan(Tensor& y) {
  float* p = y.ptr<float>();
  for (int64_t i = 0; i < y.numel(); ++i) p[i] = std::nanf("");
}

// Two 8-block chunks plus a tail for the 32-value formats (the decode kernel works on 8
// blocks at a time); two super-blocks for the K-quants.
int64_t k_for(DType t) { return dtype_info(vec_dot_type(t)).block_size == 256 ? 512 : 32 * 19; }

}  // namespace

TEST(QuantMatmul, MatchesFloatReferenceEveryType) {
  ThreadPool pool(2);
  for (DType t : kWeightTypes) {
    const int64_t K = k_for(t);
    for (int64_t N : {13, 37}) {
      const Tensor W = make_weight(t, N, K, 300 + uint32_t(t));
      for (int64_t M : {1, 3, 8, 17}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(M) + " N=" + std::to_string(N));
        const Tensor x = make_input(M, K, 400 + uint32_t(M));
        Tensor y = Tensor::empty({M, N});
        fill_nan(y);
        matmul(pool, W, x, y);
        std::vector<double> ref, mag;
        reference_matmul(W, x, ref, mag);
        for (int64_t i = 0; i < M * N; ++i) {
          ASSERT_TRUE(std::isfinite(y.ptr<float>()[i])) << "element " << i << " not written";
          ASSERT_NEAR(y.ptr<float>()[i], ref[size_t(i)], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
        }
      }
    }
  }
}

// Activations::kF32: the products of the stored weights with the f32 activations (no 8-bit
// rounding of x), for every block type and the x8-packed layouts; and for the 4-bit types visibly
// different from the default path, so the test would notice if the mode were ignored.
TEST(QuantMatmul, F32ActivationsMatchFloatReference) {
  ThreadPool pool(2);
  std::vector<Tensor> weights;
  for (DType t : kWeightTypes) weights.push_back(make_weight(t, 37, k_for(t), 900 + uint32_t(t)));
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) weights.push_back(pack_x8(make_weight(t, 37, k_for(t), 950)));
  for (const Tensor& W : weights) {
    const int64_t N = W.rows(), K = W.cols();
    const Tensor plain = is_packed(W.dtype()) ? unpack_x8(W) : Tensor();
    const Tensor& Wref = is_packed(W.dtype()) ? plain : W;
    for (int64_t M : {1, 5}) {
      SCOPED_TRACE(std::string(dtype_name(W.dtype())) + " M=" + std::to_string(M));
      const Tensor x = make_input(M, K, 960 + uint32_t(M));
      Tensor y = Tensor::empty({M, N}), yq = Tensor::empty({M, N});
      fill_nan(y);
      matmul(pool, W, x, y, Activations::kF32);
      matmul(pool, W, x, yq);
      std::vector<double> ref, mag;
      reference_matmul(Wref, x, ref, mag, /*quantize_x=*/false);
      double max_q_dev = 0;  // how far the default (8-bit activations) path is from this reference
      for (int64_t i = 0; i < M * N; ++i) {
        ASSERT_TRUE(std::isfinite(y.ptr<float>()[i])) << "element " << i << " not written";
        ASSERT_NEAR(y.ptr<float>()[i], ref[size_t(i)], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
        max_q_dev = std::max(max_q_dev, std::fabs(yq.ptr<float>()[i] - ref[size_t(i)]) / mag[size_t(i)]);
      }
      if (vec_dot_type(W.dtype()) != DType::F32 && W.dtype() != DType::Q8_0 && W.dtype() != DType::Q8_0x8)
        EXPECT_GT(max_q_dev, 1e-4) << "the default path should differ by the activations' 8-bit rounding";
    }
  }
}

TEST(QuantMatmul, ForcedScalarMatchesAVX2) {
  if (!using_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  ThreadPool pool(2);
  for (DType t : kWeightTypes)
    for (int64_t M : {1, 6}) {
    const int64_t K = k_for(t) * 3;
    const int64_t N = 45;
    SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(M));
    const Tensor W = make_weight(t, N, K, 500 + uint32_t(t));
    const Tensor x = make_input(M, K, 600);
    Tensor y_fast = Tensor::empty({M, N}), y_ref = Tensor::empty({M, N});
    fill_nan(y_fast);
    fill_nan(y_ref);
    matmul(pool, W, x, y_fast);
    set_force_scalar(true);
    EXPECT_FALSE(using_avx2());
    matmul(pool, W, x, y_ref);
    set_force_scalar(false);
    std::vector<double> ref, mag;
    reference_matmul(W, x, ref, mag);
    for (int64_t i = 0; i < M * N; ++i)
      ASSERT_NEAR(y_fast.ptr<float>()[i], y_ref.ptr<float>()[i], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
    }
}

TEST(QuantMatmul, ForcedScalarQuantizersAreBitIdentical) {
  // matmul quantizes activations with AVX2 when it can: it must give GGML's reference bytes.
  if (!using_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  for (DType t : {DType::Q8_0, DType::Q8_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    auto v = random_values(256 * 9, 700);
    // Ties: exact halves after scaling (block amax 127 -> id = 1 for Q8_0).
    for (int i = 0; i < 32; ++i) v[size_t(i)] = i == 0 ? 127.f : float(i % 7) - 3.5f;
    std::vector<uint8_t> a(row_bytes(t, int64_t(v.size()))), b(a.size());
    quantize_row(t, v.data(), a.data(), int64_t(v.size()));
    quant::detail::avx2_quantize_row(t, v.data(), b.data(), int64_t(v.size()));
    EXPECT_EQ(a, b);
  }
}

TEST(QuantMatmul, FloatWeightsAreExactToRounding) {
  ThreadPool pool(2);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t M : {1, 5}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " M=" + std::to_string(M));
      const int64_t N = 19, K = 100;  // K not a multiple of 8: the vector loops' tails
      const Tensor W = make_weight(t, N, K, 800);
      const Tensor x = make_input(M, K, 801);
      Tensor y = Tensor::empty({M, N});
      fill_nan(y);
      matmul(pool, W, x, y);
      std::vector<double> ref, mag;
      reference_matmul(W, x, ref, mag);
      for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(y.ptr<float>()[i], ref[size_t(i)], 2e-6 * mag[size_t(i)]);
    }
  }
}

TEST(QuantMatmul, BadShapesThrow) {
  ThreadPool pool(1);
  const Tensor W = make_weight(DType::Q8_0, 8, 64, 1);
  const Tensor x = make_input(2, 32, 2);
  Tensor y = Tensor::empty({2, 8});
  EXPECT_THROW(matmul(pool, W, x, y), Error);
}

TEST(QuantGetRows, DequantizesSelectedRows) {
  for (DType t : {DType::F16, DType::Q8_0, DType::Q4_1, DType::Q6_K}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t K = 256;
    const Tensor table = make_weight(t, 10, K, 900);
    const int32_t ids[3] = {7, 0, 7};
    std::vector<float> out(3 * K, std::nanf(""));
    get_rows(table, ids, 3, out.data());
    for (int i = 0; i < 3; ++i) {
      const auto want = dequantized(t, table.row<uint8_t>(ids[i]), K);
      for (int64_t k = 0; k < K; ++k) ASSERT_EQ(out[size_t(i * K + k)], want[size_t(k)]);
    }
    const int32_t bad[1] = {10};
    EXPECT_THROW(get_rows(table, bad, 1, out.data()), Error);
  }
}

TEST(QuantMatmul, Avx512VnniMatchesAvx2AndReference) {
  if (!using_avx512_vnni()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU (or IGNIS_NO_AVX512 set)";
  ThreadPool pool(2);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0})
    for (int64_t K : {int64_t(32), int64_t(128), int64_t(32 * 19), int64_t(32 * 48)})
      for (int64_t M : {1, 2, 3, 8, 17}) {  // decode rows (M < 4) and 16-row panels
        const int64_t N = 16 * 2 + 4 * 2 + 3;  // full panels / 4-row groups, and the rest
        SCOPED_TRACE(std::string(dtype_name(t)) + " K=" + std::to_string(K) + " M=" + std::to_string(M));
        const Tensor W = make_weight(t, N, K, 800 + uint32_t(t) + uint32_t(K));
        const Tensor x = make_input(M, K, 900 + uint32_t(M));
        Tensor y_vnni = Tensor::empty({M, N}), y_avx2 = Tensor::empty({M, N});
        fill_nan(y_vnni);
        fill_nan(y_avx2);
        matmul(pool, W, x, y_vnni);
        set_disable_avx512(true);
        EXPECT_FALSE(using_avx512_vnni());
        matmul(pool, W, x, y_avx2);
        set_disable_avx512(false);
        std::vector<double> ref, mag;
        reference_matmul(W, x, ref, mag);
        for (int64_t i = 0; i < M * N; ++i) {
          ASSERT_TRUE(std::isfinite(y_vnni.ptr<float>()[i])) << "element " << i << " not written";
          ASSERT_NEAR(y_vnni.ptr<float>()[i], ref[size_t(i)], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
          ASSERT_NEAR(y_vnni.ptr<float>()[i], y_avx2.ptr<float>()[i], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
        }
      }
}

TEST(QuantMatmul, MultiMatchesSeparateProducts) {
  ThreadPool pool(2);
  const int64_t K = 32 * 18;
  for (int64_t M : {1, 5}) {
    SCOPED_TRACE("M=" + std::to_string(M));
    // same dtype (one job), then mixed dtypes (falls back to one product each)
    for (bool mixed : {false, true}) {
      const Tensor wq = make_weight(DType::Q4_1, 64, K, 1001), wk = make_weight(DType::Q4_1, 24, K, 1002);
      const Tensor wv = make_weight(mixed ? DType::Q8_0 : DType::Q4_1, 24, K, 1003);
      const Tensor x = make_input(M, K, 1004);
      Tensor q = Tensor::empty({M, 64}), k = Tensor::empty({M, 24}), v = Tensor::empty({M, 24});
      fill_nan(q);
      fill_nan(k);
      fill_nan(v);
      const Tensor* ws[] = {&wq, &wk, &wv};
      Tensor* ys[] = {&q, &k, &v};
      matmul_multi(pool, ws, ys, 3, x);
      for (int i = 0; i < 3; ++i) {
        Tensor ref = Tensor::empty({M, ys[i]->cols()});
        matmul(pool, *ws[i], x, ref);
        for (int64_t j = 0; j < ref.numel(); ++j)
          ASSERT_EQ(ys[i]->ptr<float>()[j], ref.ptr<float>()[j]) << "weight " << i << " element " << j;
      }
    }
  }
  // shapes that do not fit are refused
  const Tensor a = make_weight(DType::Q4_1, 8, K, 1), b = make_weight(DType::Q4_1, 8, K + 32, 2);
  const Tensor x = make_input(1, K, 3);
  Tensor ya = Tensor::empty({1, 8}), yb = Tensor::empty({1, 8});
  const Tensor* ws[] = {&a, &b};
  Tensor* ys[] = {&ya, &yb};
  EXPECT_THROW(matmul_multi(pool, ws, ys, 2, x), Error);
}

// ---- x8 layouts (8 interleaved rows, quant.h) -----------------------------------------------

TEST(QuantX8, PackUnpackIsBitExact) {
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0})
    for (int64_t N : {1, 8, 13, 40}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " N=" + std::to_string(N));
      const int64_t K = 32 * 7;
      const Tensor W = make_weight(t, N, K, 1100 + uint32_t(N));
      const Tensor P = pack_x8(W);
      EXPECT_EQ(P.dtype(), *packed_type(t));
      EXPECT_EQ(P.rows(), N);
      EXPECT_EQ(P.cols(), K);
      EXPECT_TRUE(is_packed(P.dtype()));
      const Tensor U = unpack_x8(P);
      ASSERT_EQ(U.dtype(), t);
      ASSERT_EQ(0, std::memcmp(U.data(), W.data(), W.nbytes()));
      // The layout itself, spot-checked: block 1 of group 0, row 3's scale and qs word 2.
      const size_t bb = dtype_info(t).block_bytes;
      const uint8_t* blk = static_cast<const uint8_t*>(P.data()) + 8 * bb;
      const uint8_t* plain = W.row<const uint8_t>(std::min<int64_t>(3, N - 1)) + bb;
      EXPECT_EQ(0, std::memcmp(blk + 2 * 3, plain, 2));
      const size_t head = t == DType::Q4_1 ? 32 : 16, qs = t == DType::Q4_1 ? 4 : 2;
      EXPECT_EQ(0, std::memcmp(blk + head + 32 * 2 + 4 * 3, plain + qs + 4 * 2, 4));
    }
  EXPECT_FALSE(packed_type(DType::Q4_K).has_value());
  EXPECT_THROW(pack_x8(make_weight(DType::Q6_K, 8, 256, 1)), Error);
  // A packed row cannot be read on its own.
  const Tensor P = pack_x8(make_weight(DType::Q4_1, 8, 32, 2));
  std::vector<float> row(32);
  EXPECT_THROW(dequantize_row(P.dtype(), P.data(), row.data(), 32), Error);
}

TEST(QuantX8, MatmulMatchesPlainLayoutAndReference) {
  ThreadPool pool(2);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0})
    for (bool scalar : {false, true})
      for (int64_t M : {1, 2, 3, 4, 8, 17}) {  // decode kernels (M < 4), panels / x8 tiles (M >= 4)
        if (scalar && !using_avx2()) continue;
        const int64_t K = 32 * 19, N = 8 * 5 + 3;  // whole groups and a short last group
        SCOPED_TRACE(std::string(dtype_name(t)) + (scalar ? " scalar" : "") + " M=" + std::to_string(M));
        const Tensor W = make_weight(t, N, K, 1200 + uint32_t(t));
        const Tensor P = pack_x8(W);
        const Tensor x = make_input(M, K, 1300 + uint32_t(M));
        Tensor yp = Tensor::empty({M, N}), yw = Tensor::empty({M, N});
        fill_nan(yp);
        fill_nan(yw);
        set_force_scalar(scalar);
        matmul(pool, P, x, yp);
        set_force_scalar(false);
        matmul(pool, W, x, yw);
        std::vector<double> ref, mag;
        reference_matmul(W, x, ref, mag);
        for (int64_t i = 0; i < M * N; ++i) {
          ASSERT_TRUE(std::isfinite(yp.ptr<float>()[i])) << "element " << i << " not written";
          ASSERT_NEAR(yp.ptr<float>()[i], ref[size_t(i)], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
          ASSERT_NEAR(yp.ptr<float>()[i], yw.ptr<float>()[i], 4e-6 * mag[size_t(i)] + 1e-30) << "element " << i;
        }
      }
}

TEST(QuantX8, MultiWithPackedWeights) {
  ThreadPool pool(2);
  const int64_t K = 32 * 18;
  const Tensor wq = pack_x8(make_weight(DType::Q4_1, 64, K, 1401)), wk = pack_x8(make_weight(DType::Q4_1, 24, K, 1402));
  const Tensor x = make_input(1, K, 1403);
  Tensor q = Tensor::empty({1, 64}), k = Tensor::empty({1, 24});
  const Tensor* ws[] = {&wq, &wk};
  Tensor* ys[] = {&q, &k};
  matmul_multi(pool, ws, ys, 2, x);
  for (int i = 0; i < 2; ++i) {
    Tensor ref = Tensor::empty({1, ys[i]->cols()});
    matmul(pool, *ws[i], x, ref);
    for (int64_t j = 0; j < ref.numel(); ++j) ASSERT_EQ(ys[i]->ptr<float>()[j], ref.ptr<float>()[j]);
  }
}
