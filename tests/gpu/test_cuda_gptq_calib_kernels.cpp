// The small kernels of the GPU GPTQ calibration forward (src/cuda/gptq_calib_cuda.cu, launched through
// cuda::gptq_calib_kernels) one by one against CPU references that accumulate in double, on fresh
// random inputs (rows of several samples of different lengths, sizes that are not multiples of the
// 256-thread blocks or of the 32-lane warps). Outputs are poisoned with NaN first (so an unwritten
// element fails), except where a kernel works in place (RoPE, the adds): there every element must
// come out changed to the reference's value.
// Tolerances, all kernels being plain fp32: ||out - ref|| / ||ref|| <= 1e-5 (gputest::tol(F32)) for
// RMSNorm, RoPE, attention and SiLU * up (a few float roundings, expf / cosf within a few ulp);
// the bias and residual adds are one fp32 addition per value, which the CPU rounds identically
// (float(double(a) + double(b)) == a + b in float), so they must match exactly.
// Skipped when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/gptq_calib_cuda.h"
#include "cuda/ref.h"
#include "gpu_test_util.h"
#include "models/config.h"
#include "ops/ops.h"

using namespace ignis;
using namespace ignis::cuda;
using namespace ignis::gputest;
namespace gk = ignis::cuda::gptq_calib_kernels;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// pos[r] of the concatenated samples of the given lengths: 0, 1, ..., len - 1 for each sample.
std::vector<int32_t> sample_positions(const std::vector<int>& lens) {
  std::vector<int32_t> pos;
  for (const int n : lens)
    for (int t = 0; t < n; ++t) pos.push_back(t);
  return pos;
}

DeviceBuffer upload_i32(const std::vector<int32_t>& v) {
  DeviceBuffer b(std::max<size_t>(1, v.size()) * sizeof(int32_t));
  CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  return b;
}

std::string lens_str(const std::vector<int>& lens) {
  std::string s = "samples";
  for (const int n : lens) {
    s += ' ';
    s += std::to_string(n);
  }
  return s;
}

// CPU reference of gk::rope_half_split in double: the angle in float exactly as the kernel (and
// ops::Rope::apply) forms it, its cos / sin and the rotation in double.
void rope_half_split_ref(float* x, int64_t rows, int n_heads, int head_dim, int half, const int32_t* pos,
                         const float* inv_freq, float pos_scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float p = float(pos[r]) * pos_scale;
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (r * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float angle = p * inv_freq[i];
        const double c = std::cos(double(angle)), s = std::sin(double(angle));
        const double x0 = v[i], x1 = v[i + half];
        v[i] = float(x0 * c - x1 * s);
        v[i + half] = float(x0 * s + x1 * c);
      }
    }
  }
}

// CPU reference of gk::attention in double: row r, head h over the rows r - pos[r] .. r of kv head
// h / (n_heads / n_kv_heads), softmax(q.k * scale) . v with the max subtracted.
void attention_ref(const float* q, const float* k, const float* v, float* out, const int32_t* pos, int64_t rows,
                   int n_heads, int n_kv_heads, int head_dim, float scale) {
  const int group = n_heads / n_kv_heads;
  const int64_t q_stride = int64_t(n_heads) * head_dim, kv_stride = int64_t(n_kv_heads) * head_dim;
  std::vector<double> s;
  for (int64_t r = 0; r < rows; ++r)
    for (int h = 0; h < n_heads; ++h) {
      const int kvh = h / group;
      const float* qh = q + r * q_stride + int64_t(h) * head_dim;
      const int64_t j0 = r - pos[r];
      s.assign(size_t(r - j0 + 1), 0.0);
      double m = -INFINITY;
      for (int64_t j = j0; j <= r; ++j) {
        const float* kj = k + j * kv_stride + int64_t(kvh) * head_dim;
        double d = 0;
        for (int e = 0; e < head_dim; ++e) d += double(qh[e]) * kj[e];
        s[size_t(j - j0)] = d * double(scale);
        m = std::max(m, s[size_t(j - j0)]);
      }
      double den = 0;
      for (double& x : s) den += (x = std::exp(x - m));
      for (int e = 0; e < head_dim; ++e) {
        double o = 0;
        for (int64_t j = j0; j <= r; ++j) o += s[size_t(j - j0)] * v[j * kv_stride + int64_t(kvh) * head_dim + e];
        out[r * q_stride + int64_t(h) * head_dim + e] = float(o / den);
      }
    }
}

}  // namespace

// Per row: x * float(1 / sqrt(mean(x^2) + eps)) * w against ref::rmsnorm (same formula in double,
// no residual); a residual stream far from unit scale, dims below a warp, between warps and above
// the 256-thread block, one row and many. The input must stay as it was.
TEST(CudaGptqCalibKernels, RmsNormRows) {
  REQUIRE_GPU();
  std::mt19937 rng(21);
  struct Case { int rows, dim; float eps; };
  for (const Case c : {Case{1, 1, 1e-5f}, Case{3, 7, 1e-6f}, Case{5, 64, 1e-5f}, Case{37, 260, 1e-5f},
                       Case{4, 4100, 1e-6f}, Case{2, 11008, 1e-5f}}) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " dim " + std::to_string(c.dim));
    std::vector<float> x = random_vec(size_t(c.rows) * c.dim, rng, -40, 40);
    const std::vector<float> w = random_vec(size_t(c.dim), rng, -1.5f, 1.5f);
    DeviceBuffer dx = upload(DType::F32, x), dw = upload(DType::F32, w), dout(x.size() * sizeof(float));
    poison(dout);
    gk::rmsnorm_rows(dx.as<float>(), dw.as<float>(), dout.as<float>(), c.rows, c.dim, c.eps, nullptr);
    std::vector<float> want(x.size());
    std::vector<float> xr = x;  // ref::rmsnorm writes x only with a residual; a copy all the same
    ref::rmsnorm(xr.data(), nullptr, w.data(), want.data(), c.rows, c.dim, c.eps);
    EXPECT_LE(rel_err(download(DType::F32, dout.get(), want.size()), want), tol(DType::F32));
    EXPECT_EQ(download(DType::F32, dx.get(), x.size()), x) << "the input rows must be left as they were";
  }
}

// y[r, n] += b[n]: exact (one fp32 addition per value). The last case has more values than the
// grid's threads (at most 16 blocks of 256 per SM), so the grid-stride loop goes round.
TEST(CudaGptqCalibKernels, AddBias) {
  REQUIRE_GPU();
  std::mt19937 rng(22);
  struct Case { int rows, N; };
  for (const Case c : {Case{1, 1}, Case{37, 1000}, Case{5, 33}, Case{3001, 300}}) {
    SCOPED_TRACE("rows " + std::to_string(c.rows) + " N " + std::to_string(c.N));
    const std::vector<float> y = random_vec(size_t(c.rows) * c.N, rng, -3, 3), b = random_vec(size_t(c.N), rng);
    DeviceBuffer dy = upload(DType::F32, y), db = upload(DType::F32, b);
    gk::add_bias(dy.as<float>(), db.as<float>(), c.rows, c.N, nullptr);
    std::vector<float> want(y.size());
    for (size_t i = 0; i < y.size(); ++i) want[i] = float(double(y[i]) + double(b[i % size_t(c.N)]));
    EXPECT_EQ(rel_err(download(DType::F32, dy.get(), want.size()), want), 0.0);
  }
}

// Half-split RoPE in place with ops::Rope's table as the forward uses it (linear scaling through
// pos_scale = 1 / factor, llama3 in the table): full and partial rope_dim (half not a multiple of
// anything), head sizes 8 .. 128, positions up to 256 (angles of hundreds of radians). The values
// from rope_dim on must come out bit-identical, the rotated ones within 1e-5 (fp32).
TEST(CudaGptqCalibKernels, RopeHalfSplit) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  struct Case { int n_heads, head_dim, rope_dim; RopeScaling scaling; };
  const std::vector<int> lens = {257, 23, 2, 9};
  const std::vector<int32_t> pos = sample_positions(lens);
  const int64_t rows = int64_t(pos.size());
  DeviceBuffer dpos = upload_i32(pos);
  for (const Case c : {Case{6, 64, 64, RopeScaling::kNone}, Case{2, 100, 36, RopeScaling::kLinear},
                       Case{3, 128, 128, RopeScaling::kLlama3}, Case{8, 8, 8, RopeScaling::kNone},
                       Case{5, 96, 50, RopeScaling::kLlama3}}) {
    SCOPED_TRACE("heads " + std::to_string(c.n_heads) + " head_dim " + std::to_string(c.head_dim) + " rope_dim " +
                 std::to_string(c.rope_dim) + " scaling " + std::to_string(int(c.scaling)));
    LlamaConfig cfg;
    cfg.n_heads = c.n_heads, cfg.head_dim = c.head_dim, cfg.dim = c.n_heads * c.head_dim, cfg.rope_dim = c.rope_dim;
    cfg.rope_theta = 10000, cfg.rope_style = RopeStyle::kHalfSplit, cfg.rope_scaling = c.scaling;
    if (c.scaling == RopeScaling::kLinear) cfg.rope_factor = 4;
    if (c.scaling == RopeScaling::kLlama3)  // wavelengths of all three bands at these sizes
      cfg.rope_factor = 8, cfg.rope_low_freq_factor = 1, cfg.rope_high_freq_factor = 4, cfg.rope_original_max_pos = 64;
    const std::vector<float> inv = ops::Rope(cfg).inv_freq();
    const int half = c.rope_dim / 2;
    ASSERT_EQ(int(inv.size()), half);
    const float pos_scale = c.scaling == RopeScaling::kLinear ? 1.0f / cfg.rope_factor : 1.0f;
    const std::vector<float> x = random_vec(size_t(rows) * c.n_heads * c.head_dim, rng, -2, 2);
    DeviceBuffer dx = upload(DType::F32, x), dinv = upload(DType::F32, inv);
    gk::rope_half_split(dx.as<float>(), rows, c.n_heads, c.head_dim, half, dpos.as<int32_t>(), dinv.as<float>(),
                        pos_scale, nullptr);
    std::vector<float> want = x;
    rope_half_split_ref(want.data(), rows, c.n_heads, c.head_dim, half, pos.data(), inv.data(), pos_scale);
    const std::vector<float> got = download(DType::F32, dx.get(), want.size());
    EXPECT_LE(rel_err(got, want), tol(DType::F32));
    int64_t tail_changed = 0;  // the values past rope_dim of every head
    for (size_t rh = 0; rh < size_t(rows) * c.n_heads; ++rh)
      for (int d = c.rope_dim; d < c.head_dim; ++d) tail_changed += got[rh * c.head_dim + d] != x[rh * c.head_dim + d];
    EXPECT_EQ(tail_changed, 0) << "values past rope_dim must be left as they were";
  }
}

// Causal GQA attention within samples, the chunk placed between rows of NaN in q, k, v and out (as
// a chunk of the forward sits inside the hidden states): a read outside the chunk's samples turns
// the result into NaN, a write outside leaves non-NaN there. MHA and GQA (groups 3, 2, 8), head
// sizes 8, 33, 64, 100, 256 (not all multiples of 32), samples of 1 to 70 rows, queries in [-4, 4]
// and keys in [-1, 1] so the scores spread over several units and the softmax is far from flat.
// fp32: 1e-5.
TEST(CudaGptqCalibKernels, AttentionCausalGqa) {
  REQUIRE_GPU();
  std::mt19937 rng(24);
  struct Case { int n_heads, n_kv_heads, head_dim; std::vector<int> lens; };
  const std::vector<Case> cases = {
      {6, 2, 64, {37, 1, 70, 5}}, {4, 4, 100, {33, 2}}, {8, 1, 256, {65}},
      {8, 4, 8, {50, 50, 13}},    {3, 3, 33, {1, 2, 3, 41}},
  };
  const int64_t pre = 3, post = 2;  // NaN rows before and after the chunk
  for (const Case& c : cases) {
    SCOPED_TRACE("heads " + std::to_string(c.n_heads) + " kv heads " + std::to_string(c.n_kv_heads) + " head_dim " +
                 std::to_string(c.head_dim) + " " + lens_str(c.lens));
    const std::vector<int32_t> pos = sample_positions(c.lens);
    const int64_t rows = int64_t(pos.size()), all = pre + rows + post;
    const int64_t qw = int64_t(c.n_heads) * c.head_dim, kw = int64_t(c.n_kv_heads) * c.head_dim;
    std::vector<float> q(size_t(all * qw), kNaN), k(size_t(all * kw), kNaN), v(size_t(all * kw), kNaN);
    const std::vector<float> qc = random_vec(size_t(rows * qw), rng, -4, 4), kc = random_vec(size_t(rows * kw), rng),
                             vc = random_vec(size_t(rows * kw), rng);
    std::copy(qc.begin(), qc.end(), q.begin() + pre * qw);
    std::copy(kc.begin(), kc.end(), k.begin() + pre * kw);
    std::copy(vc.begin(), vc.end(), v.begin() + pre * kw);
    DeviceBuffer dq = upload(DType::F32, q), dk = upload(DType::F32, k), dv = upload(DType::F32, v);
    DeviceBuffer dout(size_t(all * qw) * sizeof(float)), dpos = upload_i32(pos);
    poison(dout);
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    gk::attention(dq.as<float>() + pre * qw, dk.as<float>() + pre * kw, dv.as<float>() + pre * kw,
                  dout.as<float>() + pre * qw, dpos.as<int32_t>(), rows, c.n_heads, c.n_kv_heads, c.head_dim, scale,
                  nullptr);
    std::vector<float> want(size_t(rows * qw));
    attention_ref(qc.data(), kc.data(), vc.data(), want.data(), pos.data(), rows, c.n_heads, c.n_kv_heads, c.head_dim,
                  scale);
    const std::vector<float> got = download(DType::F32, dout.get(), size_t(all * qw));
    EXPECT_LE(rel_err(std::vector<float>(got.begin() + pre * qw, got.begin() + (pre + rows) * qw), want),
              tol(DType::F32));
    int64_t outside = 0;
    for (int64_t i = 0; i < all * qw; ++i)
      if ((i < pre * qw || i >= (pre + rows) * qw) && !std::isnan(got[size_t(i)])) ++outside;
    EXPECT_EQ(outside, 0) << "values written outside the chunk's rows";
  }
}

TEST(CudaGptqCalibKernels, AttentionRejectsBadHeads) {
  REQUIRE_GPU();
  DeviceBuffer d(64), dpos(4);
  const float* p = d.as<float>();
  EXPECT_THROW(gk::attention(p, p, p, d.as<float>(), dpos.as<int32_t>(), 1, 4, 1, gk::kMaxHeadDim + 1, 1.f, nullptr),
               Error);
  EXPECT_THROW(gk::attention(p, p, p, d.as<float>(), dpos.as<int32_t>(), 1, 6, 4, 64, 1.f, nullptr), Error);
}

// out = g / (1 + exp(-g)) * u, into a separate (poisoned) buffer and in place (out == g, as the
// forward runs it), gates in [-12, 12] so both tails of the sigmoid are used; the largest n goes
// round the grid-stride loop. fp32: 1e-5 against the double formula.
TEST(CudaGptqCalibKernels, SiluMul) {
  REQUIRE_GPU();
  std::mt19937 rng(25);
  for (const int64_t n : {int64_t(1), int64_t(1000), int64_t(11008 * 3 + 5), int64_t((1 << 20) + 3)})
    for (const bool in_place : {false, true}) {
      SCOPED_TRACE("n " + std::to_string(n) + (in_place ? " in place" : ""));
      const std::vector<float> g = random_vec(size_t(n), rng, -12, 12), u = random_vec(size_t(n), rng, -2, 2);
      DeviceBuffer dg = upload(DType::F32, g), du = upload(DType::F32, u), dout(size_t(n) * sizeof(float));
      poison(dout);
      float* out = in_place ? dg.as<float>() : dout.as<float>();
      gk::silu_mul(dg.as<float>(), du.as<float>(), out, n, nullptr);
      std::vector<float> want(static_cast<size_t>(n));
      for (size_t i = 0; i < want.size(); ++i) {
        const double gv = g[i];
        want[i] = float(gv / (1.0 + std::exp(-gv)) * double(u[i]));
      }
      EXPECT_LE(rel_err(download(DType::F32, out, want.size()), want), tol(DType::F32));
      if (!in_place) {
        EXPECT_EQ(download(DType::F32, dg.get(), g.size()), g) << "g must be left as it was";
      }
    }
}

// x += y: exact (one fp32 addition per value); y left as it was.
TEST(CudaGptqCalibKernels, AddInplace) {
  REQUIRE_GPU();
  std::mt19937 rng(26);
  for (const int64_t n : {int64_t(1), int64_t(777), int64_t(4096 * 64 + 1), int64_t((1 << 20) + 7)}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const std::vector<float> x = random_vec(size_t(n), rng, -5, 5), y = random_vec(size_t(n), rng);
    DeviceBuffer dx = upload(DType::F32, x), dy = upload(DType::F32, y);
    gk::add_inplace(dx.as<float>(), dy.as<float>(), n, nullptr);
    std::vector<float> want(static_cast<size_t>(n));
    for (size_t i = 0; i < want.size(); ++i) want[i] = float(double(x[i]) + double(y[i]));
    EXPECT_EQ(rel_err(download(DType::F32, dx.get(), want.size()), want), 0.0);
    EXPECT_EQ(download(DType::F32, dy.get(), y.size()), y) << "y must be left as it was";
  }
}
