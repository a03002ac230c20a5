// GPTQ on the GPU (src/cuda/gptq_cuda.cu, float32) against the CPU quant::quantize_gptq (float64)
// on a random layer W [96, 256] whose Hessian comes from random correlated activations:
//   - same layout (format, group, scale dtype, sizes of q / scales / zeros, g_idx identical);
//   - quantized levels (q - zero) and scales equal, row by row in GPTQ's column order, up to the
//     row's first difference, which must be a rounding tie (float32 against float64: one level
//     apart, or a scale one unit of its dtype apart); as GPTQ feeds every rounding error into the
//     later columns, the rest of such a row may differ (<= 10% of the rows, <= 2% of the weights;
//     a host emulation of this code with LAPACK in place of cuSOLVER, over 20 random draws:
//     0 to 4 of 96 rows, at most 116 weights);
//   - the layer's output error tr((W - Wq) H (W - Wq)^T) within 1% of the CPU one, plus the CPU
//     error of the rows that differ (see the check), and below RTN's.
//   Cases: int4 g128 sym (f16 scales), int4 g32 asym with dead inputs (blocksize 64), int4 g64
//   act-order (bf16 scales), int8 per channel (f32 scales, blocksize 32: its one group spans
//   every block). The GPU poisons its outputs before the solve and checks every entry was written.
// Bad Hessians (NaN, negative definite, indefinite with a positive diagonal, wrong size) and
// non-finite weights give clear errors. GptqHessianCuda (host and device rows, chunk boundaries crossed)
// against 2 / n X^T X in double and against the CPU HessianAccumulator.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../gptq_inputs.h"
#include "core/error.h"
#include "core/threadpool.h"
#include "cuda/gptq_cuda.h"
#include "gpu_test_util.h"
#include "quant/formats.h"
#include "quant/quantize.h"

using namespace ignis;
using namespace ignis::cuda;
using namespace ignis::gputest;

namespace {

using testdata::correlated_inputs;

// Row n's part of tr((W - Wq) H (W - Wq)^T), the layer's output error on the calibration data
// (up to 2 / n): d_n^T H d_n with d_n = W[n] - Wq[n].
std::vector<double> row_errors(const std::vector<float>& W, const quant::QuantLinear& q, const std::vector<double>& H) {
  const std::vector<float> Wq = quant::dequantize(q);
  const int64_t N = q.N, K = q.K;
  std::vector<double> e(static_cast<size_t>(N), 0.0), d(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) d[size_t(k)] = double(W[size_t(n * K + k)]) - Wq[size_t(n * K + k)];
    for (int64_t i = 0; i < K; ++i) {
      double s = 0;
      for (int64_t j = 0; j < K; ++j) s += H[size_t(i * K + j)] * d[size_t(j)];
      e[size_t(n)] += d[size_t(i)] * s;
    }
  }
  return e;
}

double output_error(const std::vector<float>& W, const quant::QuantLinear& q, const std::vector<double>& H) {
  const std::vector<double> e = row_errors(W, q, H);
  return std::accumulate(e.begin(), e.end(), 0.0);
}

struct Case {
  std::string name;
  quant::QuantSpec spec;
  bool act_order = false;
  int blocksize = 128;
  std::vector<int64_t> dead;
};

void compare_with_cpu(const Case& c) {
  SCOPED_TRACE(c.name);
  const int64_t N = 96, K = 256, T = 1024;
  ThreadPool pool(2);
  const std::vector<float> X = correlated_inputs(T, K, 11, c.dead);
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::vector<float> W(size_t(N * K));
  for (auto& w : W) w = nd(rng);
  quant::HessianAccumulator acc(K);
  acc.add(pool, X.data(), T);
  const std::vector<double> H = acc.hessian();
  for (int64_t k : c.dead) ASSERT_EQ(H[size_t(k * K + k)], 0.0);

  quant::GptqOptions go;
  go.act_order = c.act_order;
  go.blocksize = c.blocksize;
  const quant::QuantLinear cpu = quant::quantize_gptq(pool, W.data(), N, K, H, c.spec, go);
  const quant::QuantLinear gpu = quantize_gptq_cuda(W.data(), N, K, H, c.spec, go);
  ASSERT_NO_THROW(gpu.validate("gpu gptq"));

  // layout
  EXPECT_EQ(gpu.format, cpu.format);
  EXPECT_EQ(gpu.N, cpu.N);
  EXPECT_EQ(gpu.K, cpu.K);
  EXPECT_EQ(gpu.group, cpu.group);
  EXPECT_EQ(gpu.scale_dtype, cpu.scale_dtype);
  ASSERT_EQ(gpu.qdata.size(), cpu.qdata.size());
  ASSERT_EQ(gpu.scales.size(), cpu.scales.size());
  ASSERT_EQ(gpu.zeros.size(), cpu.zeros.size());
  EXPECT_EQ(gpu.g_idx, cpu.g_idx);
  if (c.act_order && c.spec.format == quant::QFormat::kInt4) {
    EXPECT_EQ(gpu.g_idx.size(), size_t(K));
  }

  // Row by row in the order GPTQ processes the columns (act-order: decreasing diag H): identical
  // up to the row's first difference, which must be a rounding tie (one level apart under the
  // same scale, or a scale one unit of the scale dtype apart). After it the row may differ more:
  // GPTQ feeds each column's rounding error into the later columns, so one flipped rounding
  // changes the rest of that row's solution (an equally good one: the output error is checked).
  std::vector<int64_t> order(static_cast<size_t>(K));
  std::iota(order.begin(), order.end(), 0);
  if (c.act_order)
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return H[size_t(a * K + a)] > H[size_t(b * K + b)]; });
  const double unit = c.spec.scale_dtype == DType::BF16 ? 0x1p-7 : c.spec.scale_dtype == DType::F16 ? 0x1p-10 : 0x1p-23;
  int64_t level_diff = 0, level_far = 0, rows_diverged = 0, bad_first = 0;
  const std::vector<double> ec_rows = row_errors(W, cpu, H);
  double ec_diverged = 0;  // the CPU's output error in the rows that took another path at a tie
  for (int64_t n = 0; n < N; ++n) {
    bool diverged = false;
    for (int64_t k : order) {
      const int64_t gc = cpu.group_of(k), gg = gpu.group_of(k);
      const int lc = cpu.q(n, k) - cpu.zero(n, gc), lg = gpu.q(n, k) - gpu.zero(n, gg);
      const float sc = cpu.scales[size_t(n * cpu.groups() + gc)], sg = gpu.scales[size_t(n * gpu.groups() + gg)];
      if (lc != lg) ++level_diff;
      if (std::abs(lc - lg) > 1) ++level_far;
      if (diverged || (lc == lg && sc == sg)) continue;
      diverged = true;
      ++rows_diverged;
      ec_diverged += ec_rows[size_t(n)];
      const bool tie = std::abs(lc - lg) <= 1 && std::fabs(double(sc) - sg) <= 1.01 * unit * std::max(sc, sg);
      if (!tie) {
        ++bad_first;
        ADD_FAILURE() << "row " << n << " first differs at column " << k << ": level " << lc << " vs " << lg
                      << ", scale " << sc << " vs " << sg << " (not a rounding tie)";
      }
    }
  }
  int scale_diff = 0;
  for (size_t i = 0; i < cpu.scales.size(); ++i) scale_diff += cpu.scales[i] != gpu.scales[i];
  const double ec = std::accumulate(ec_rows.begin(), ec_rows.end(), 0.0), eg = output_error(W, gpu, H);
  const double er = output_error(W, quant::quantize_rtn(W.data(), N, K, c.spec, &pool), H);
  std::printf("  %s: rows differing %lld / %lld, levels differing %lld / %lld (%lld by more than 1), scales "
              "differing %d / %zu; output error CPU %.6g GPU %.6g (%+.3f%%), RTN %.6g\n",
              c.name.c_str(), (long long)rows_diverged, (long long)N, (long long)level_diff, (long long)(N * K),
              (long long)level_far, scale_diff, cpu.scales.size(), ec, eg, 100 * (eg / ec - 1), er);
  EXPECT_EQ(bad_first, 0);
  EXPECT_LE(rows_diverged, N / 10);                     // at most ~10% of the rows hit a tie
  EXPECT_LE(double(level_diff), 0.02 * double(N * K));  // and at most 2% of the weights differ
  // Output error within 1% of the CPU's. The rows that took another path at a tie are allowed
  // their own error on top: a row's error sits mostly in its last columns, so after a flipped
  // rounding it can come out up to about twice as large or small (seen in the host emulation:
  // -33% .. +103% per row; +1.3% in total in 1 of 20 draws, int8).
  EXPECT_LE(std::fabs(eg - ec), 0.01 * ec + ec_diverged)
      << "rows differing " << rows_diverged << ", their CPU error " << ec_diverged;
  EXPECT_LT(eg, er);
  // dead inputs: their weights quantize from W = 0 on both sides
  for (int64_t k : c.dead)
    for (int64_t n = 0; n < N; ++n) EXPECT_EQ(gpu.weight(n, k), cpu.weight(n, k)) << "dead column " << k;
}

}  // namespace

TEST(CudaGptq, MatchesCpuInt4Group128Sym) {
  REQUIRE_GPU();
  compare_with_cpu({"int4 g128 sym f16", {quant::QFormat::kInt4, 128, true, DType::F16}, false, 128, {}});
}

TEST(CudaGptq, MatchesCpuInt4Group32AsymDeadInputs) {
  REQUIRE_GPU();
  compare_with_cpu({"int4 g32 asym f16, dead inputs 5 / 100 / 255, blocksize 64",
                    {quant::QFormat::kInt4, 32, false, DType::F16}, false, 64, {5, 100, 255}});
}

TEST(CudaGptq, MatchesCpuInt4ActOrder) {
  REQUIRE_GPU();
  compare_with_cpu({"int4 g64 sym bf16 act-order", {quant::QFormat::kInt4, 64, true, DType::BF16}, true, 128, {}});
}

TEST(CudaGptq, MatchesCpuInt8PerChannel) {
  REQUIRE_GPU();
  compare_with_cpu({"int8 per channel f32, blocksize 32", {quant::QFormat::kInt8, 0, true, DType::F32}, false, 32, {}});
}

TEST(CudaGptq, BadHessianGivesClearError) {
  REQUIRE_GPU();
  const int64_t N = 8, K = 64;
  ThreadPool pool(2);
  std::mt19937 rng(3);
  std::vector<float> W = random_vec(size_t(N * K), rng, -0.05f, 0.05f);
  const quant::QuantSpec spec{quant::QFormat::kInt4, 32, true, DType::F16};
  auto identity = [&](double d) {
    std::vector<double> H(size_t(K * K), 0.0);
    for (int64_t k = 0; k < K; ++k) H[size_t(k * K + k)] = d;
    return H;
  };
  // sanity: a good Hessian works
  EXPECT_NO_THROW(quantize_gptq_cuda(W.data(), N, K, identity(1.0), spec).validate("identity"));
  {
    std::vector<double> H = identity(1.0);
    H[size_t(3 * K + 5)] = H[size_t(5 * K + 3)] = std::numeric_limits<double>::quiet_NaN();
    expect_error([&] { (void)quantize_gptq_cuda(W.data(), N, K, H, spec); }, "is not finite at (3, 5)");
  }
  {
    // negative definite: the damping (a fraction of the negative mean diagonal) cannot help
    const std::vector<double> H = identity(-1.0);
    expect_error([&] { (void)quantize_gptq_cuda(W.data(), N, K, H, spec); },
                 "is not positive definite (in float32) even after damping x1e5");
    EXPECT_THROW((void)quant::quantize_gptq(pool, W.data(), N, K, H, spec), Error);  // as on the CPU
  }
  {
    // positive diagonal, eigenvalue 1 - 1e7 (all-equal off-diagonal entries): damping up to
    // 1e5 * 0.01 * mean diag = 1000 is not enough
    std::vector<double> H(size_t(K * K), 1e7);
    for (int64_t k = 0; k < K; ++k) H[size_t(k * K + k)] = 1.0;
    GptqSolverCuda solver;
    expect_error([&] { (void)solver.quantize(W.data(), N, K, H, spec, {}, "blk.0.attn_q"); },
                 "the Hessian of layer blk.0.attn_q is not positive definite");
    EXPECT_THROW((void)quant::quantize_gptq(pool, W.data(), N, K, H, spec), Error);  // as on the CPU
    // the solver still works after a failure
    EXPECT_NO_THROW(solver.quantize(W.data(), N, K, identity(2.0), spec).validate("after failure"));
  }
  expect_error([&] { (void)quantize_gptq_cuda(W.data(), N, K, std::vector<double>(size_t(K * K - 1), 1.0), spec); },
               "entries, expected 4096");
  {
    std::vector<float> Wn = W;
    Wn[size_t(2 * K + 7)] = std::numeric_limits<float>::infinity();
    expect_error([&] { (void)quantize_gptq_cuda(Wn.data(), N, K, identity(1.0), spec); }, "weight (2, 7)");
  }
}

TEST(CudaGptq, HessianAccumulatorMatchesCpuDouble) {
  REQUIRE_GPU();
  // 2500 rows = 700 from host memory + 1800 from device memory: chunks of 1024 are crossed
  const int64_t K = 192, T = 2500, T1 = 700;
  const std::vector<float> X = correlated_inputs(T, K, 5);
  GptqHessianCuda acc(K);
  EXPECT_EQ(acc.K(), K);
  expect_error([&] { (void)acc.hessian(); }, "no calibration samples");
  acc.add_host(X.data(), T1);
  DeviceBuffer dX(size_t((T - T1) * K) * sizeof(float));
  CUDA_CHECK(cudaMemcpy(dX.get(), X.data() + T1 * K, dX.size(), cudaMemcpyHostToDevice));
  acc.add_device(dX.as<float>(), T - T1);
  acc.add_host(X.data(), 0);  // no rows: no change
  EXPECT_EQ(acc.samples(), T);
  const std::vector<double> H = acc.hessian();
  ASSERT_EQ(H.size(), size_t(K * K));

  std::vector<double> ref(size_t(K * K), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const float* x = &X[size_t(t * K)];
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) ref[size_t(i * K + j)] += double(x[i]) * x[j];
  }
  for (auto& v : ref) v *= 2.0 / double(T);
  ThreadPool pool(2);
  quant::HessianAccumulator cacc(K);
  cacc.add(pool, X.data(), T);
  const std::vector<double> Hc = cacc.hessian();

  // per entry relative to sqrt(H_ii H_jj) (the size of the terms summed), and normwise
  double worst = 0, worst_cpu = 0, num = 0, den = 0;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const double r = ref[size_t(i * K + j)], s = std::sqrt(ref[size_t(i * K + i)] * ref[size_t(j * K + j)]);
      EXPECT_EQ(H[size_t(i * K + j)], H[size_t(j * K + i)]) << i << "," << j;
      worst = std::max(worst, std::fabs(H[size_t(i * K + j)] - r) / s);
      worst_cpu = std::max(worst_cpu, std::fabs(H[size_t(i * K + j)] - Hc[size_t(i * K + j)]) / s);
      num += (H[size_t(i * K + j)] - r) * (H[size_t(i * K + j)] - r);
      den += r * r;
    }
  std::printf("  Hessian K=%lld, %lld rows: max error vs double %.3g, vs CPU accumulator %.3g, normwise %.3g\n",
              (long long)K, (long long)T, worst, worst_cpu, std::sqrt(num / den));
  EXPECT_LE(worst, 1e-5);
  EXPECT_LE(worst_cpu, 1e-5);
  EXPECT_LE(std::sqrt(num / den), 2e-6);
}

// Time of the GPU solve of Llama-2-7B-sized layers (not a check: a measurement, run by
// `scripts/gpu-check.sh gptqtime`): gate/up-like [11008, 4096] and down-like [4096, 11008], int4 g128,
// Hessians from 4096 Gaussian rows on the device (a few columns scaled up, as outlier features).
TEST(CudaGptq, DISABLED_SolveTime7BLayers) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  std::normal_distribution<float> d(0.f, 1.f);
  GptqSolverCuda solver;
  const quant::QuantSpec spec{quant::QFormat::kInt4, 128, true, DType::F16};
  double solve_s[2] = {0, 0};
  int which = 0;
  for (auto [N, K] : {std::pair<int64_t, int64_t>{11008, 4096}, {4096, 11008}}) {
    const int64_t T = 4096;
    std::vector<float> X(size_t(T * K));
    for (auto& x : X) x = d(rng);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; k += 97) X[size_t(t * K + k)] *= 8.f;
    const auto t0 = std::chrono::steady_clock::now();
    GptqHessianCuda acc(K);
    acc.add_host(X.data(), T);
    const std::vector<double> H = acc.hessian();
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<float> W(size_t(N * K));
    for (auto& w : W) w = 0.02f * d(rng);
    const auto t2 = std::chrono::steady_clock::now();
    const quant::QuantLinear q = solver.quantize(W.data(), N, K, H, spec, {}, "7b-layer");
    const auto t3 = std::chrono::steady_clock::now();
    const double hs = std::chrono::duration<double>(t1 - t0).count(), ss = std::chrono::duration<double>(t3 - t2).count();
    solve_s[which++] = ss;
    std::printf("  GPTQ [%lld, %lld] int4 g128: Hessian of %lld rows %.3f s, solve %.3f s (%zu packed bytes)\n",
                (long long)N, (long long)K, (long long)T, hs, ss, q.storage_bytes());
  }
  // a 7B Llama has 32 layers of q, k, v, o [4096, 4096] (the solve is ~N K^2: 4096 / 11008 of gate's),
  // gate, up [11008, 4096] and down [4096, 11008]
  const double layer_s = 2 * solve_s[0] + solve_s[1] + 4 * solve_s[0] * 4096.0 / 11008.0;
  std::printf("  Llama-2-7B estimate, solves alone: %.1f s per layer, %.0f s for 32 layers\n", layer_s, 32 * layer_s);
}
