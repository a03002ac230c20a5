// Every CUDA kernel of the Llama backend against its CPU reference (src/cuda/ref.h) on fresh
// random inputs, outputs poisoned with NaN first (so unwritten elements fail), sizes that are not
// multiples of the tiles. Tolerance: ||out - ref|| / ||ref|| <= 1e-2 for bf16, 1e-5 for fp32.
// Skipped when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/kernels.h"
#include "cuda/philox.h"
#include "cuda/ref.h"
#include "gpu_test_util.h"

using namespace ignis;
using namespace ignis::cuda;
using namespace ignis::gputest;

namespace {

const char* epi_name(GemvEpilogue e) {
  switch (e) {
    case GemvEpilogue::kStore: return "store";
    case GemvEpilogue::kStoreF32: return "store_f32";
    case GemvEpilogue::kAddF32: return "add_f32";
    case GemvEpilogue::kSwiGLU: return "swiglu";
  }
  return "?";
}

struct GemvCase {
  int B, N, K;
  GemvEpilogue epi;
  bool split_ws;
};

// y [B, N] of a product -> what the GEMV writes with epilogue epi (kSwiGLU: silu(gate) * up of the
// fused row order, N/2 columns; otherwise y itself; kAddF32's accumulation is the caller's).
std::vector<float> epilogue_ref(const std::vector<float>& y, int B, int N, GemvEpilogue epi) {
  if (epi != GemvEpilogue::kSwiGLU) return y;
  const int n_out = N / 2;
  std::vector<float> want(size_t(B) * n_out);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < n_out; ++j) {
      const double g = y[size_t(b) * N + swiglu_row_of_gate(j)], u = y[size_t(b) * N + swiglu_row_of_gate(j) + 8];
      want[size_t(b) * n_out + j] = float(g / (1 + std::exp(-g)) * u);
    }
  return want;
}

// The fused-norm GEMV's reference: rmsnorm(x) * nw rounded to bf16 (what the rmsnorm kernel stores),
// then W h^T and the epilogue.
std::vector<float> norm_gemv_ref(const std::vector<float>& W, const std::vector<float>& x, const std::vector<float>& nw,
                                 int B, int N, int K, GemvEpilogue epi) {
  std::vector<float> xr = x, h(x.size()), y(size_t(B) * N);
  ref::rmsnorm(xr.data(), nullptr, nw.data(), h.data(), B, K, 1e-5f);
  round_to(DType::BF16, h);
  ref::linear(W.data(), h.data(), B, N, K, y.data());
  return epilogue_ref(y, B, N, epi);
}

void run_gemv_case(DType dt, GemvImpl impl, const GemvCase& c, std::mt19937& rng) {
  SCOPED_TRACE(std::string(dtype_name(dt)) +
               (impl == GemvImpl::kSimple ? " simple" : impl == GemvImpl::kBulk ? " bulk" : " tensor-core") +
               " B=" + std::to_string(c.B) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " " +
               epi_name(c.epi) + (c.split_ws ? " split-K" : ""));
  std::vector<float> W = random_vec(size_t(c.N) * c.K, rng), x = random_vec(size_t(c.B) * c.K, rng);
  round_to(dt, W);
  round_to(dt, x);
  auto dW = upload(dt, W), dx = upload(dt, x);
  const bool swiglu = c.epi == GemvEpilogue::kSwiGLU;
  const int n_out = swiglu ? c.N / 2 : c.N;
  const bool f32_out = c.epi == GemvEpilogue::kStoreF32 || c.epi == GemvEpilogue::kAddF32;
  const DType out_t = f32_out ? DType::F32 : dt;
  std::vector<float> init = random_vec(size_t(c.B) * n_out, rng);
  DeviceBuffer dout(size_t(c.B) * n_out * esize(out_t));
  if (c.epi == GemvEpilogue::kAddF32)
    CUDA_CHECK(cudaMemcpy(dout.get(), init.data(), init.size() * 4, cudaMemcpyHostToDevice));
  else
    poison(dout);
  DeviceBuffer ws, cnt;
  GemvArgs a;
  a.dtype = dt, a.W = dW.get(), a.x = dx.get(), a.B = c.B, a.N = c.N, a.K = c.K, a.epi = c.epi, a.out = dout.get();
  a.impl = impl;
  if (c.split_ws) {
    ws.alloc(size_t(64) * c.B * c.N * 4);
    cnt.alloc(size_t(ceil_div(c.N, 16)) * 4);
    CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
    a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4, a.counters = cnt.as<unsigned>();
    a.n_counters = int(cnt.size() / 4);
  }
  gemv(a, nullptr);
  std::vector<float> y(size_t(c.B) * c.N);
  ref::linear(W.data(), x.data(), c.B, c.N, c.K, y.data());
  std::vector<float> want = epilogue_ref(y, c.B, c.N, c.epi);
  if (c.epi == GemvEpilogue::kAddF32)
    for (size_t o = 0; o < want.size(); ++o) want[o] += init[o];
  const std::vector<float> got = download(out_t, dout.get(), want.size());
  EXPECT_LE(rel_err(got, want), tol(dt));
  if (c.split_ws) {  // the counters must be left at zero for the next launch
    std::vector<unsigned> cn(cnt.size() / 4);
    CUDA_CHECK(cudaMemcpy(cn.data(), cnt.get(), cnt.size(), cudaMemcpyDeviceToHost));
    for (unsigned v : cn) ASSERT_EQ(v, 0u);
    gemv(a, nullptr);  // a second launch over the same workspace gives the same result (add: twice the sum)
    if (c.epi != GemvEpilogue::kAddF32) EXPECT_LE(rel_err(download(out_t, dout.get(), want.size()), want), tol(dt));
  }
}

}  // namespace

TEST(CudaKernels, Gemv) {
  REQUIRE_GPU();
  std::mt19937 rng(1);
  const std::vector<GemvCase> cases = {
      {1, 1000, 4104, GemvEpilogue::kStore, false},   {3, 37, 520, GemvEpilogue::kStoreF32, false},
      {8, 4096, 4096, GemvEpilogue::kAddF32, true},   {5, 400, 1032, GemvEpilogue::kSwiGLU, false},
      {2, 64, 172, GemvEpilogue::kStore, false},      {7, 64, 8200, GemvEpilogue::kStoreF32, true},
      {1, 33, 8192, GemvEpilogue::kAddF32, true},     {4, 2 * 1536, 576, GemvEpilogue::kSwiGLU, true},
      {6, 100, 24, GemvEpilogue::kStore, true},       {8, 48, 11008, GemvEpilogue::kSwiGLU, true},
  };
  for (DType dt : {DType::F32, DType::BF16})
    for (GemvImpl impl : {GemvImpl::kSimple, GemvImpl::kTensorCore, GemvImpl::kBulk}) {
      if (dt == DType::F32 && impl != GemvImpl::kSimple) continue;
      for (const auto& c : cases) run_gemv_case(dt, impl, c, rng);
    }
}

// The GEMV with the RMSNorm fused into its input: against rmsnorm() then linear() on the CPU,
// the normalized input rounded to bf16 as the rmsnorm kernel would store it.
TEST(CudaKernels, GemvFusedRmsNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  struct Case { int B, N, K; GemvEpilogue epi; };
  for (const Case c : {Case{1, 1000, 4096, GemvEpilogue::kStore}, Case{3, 96, 520, GemvEpilogue::kStoreF32},
                       Case{8, 2 * 1536, 576, GemvEpilogue::kSwiGLU}, Case{5, 4104, 8200, GemvEpilogue::kStore},
                       Case{2, 33, 8, GemvEpilogue::kStoreF32}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " " +
                 epi_name(c.epi));
    ASSERT_TRUE(gemv_fused_norm_ok(DType::BF16, c.K));
    std::vector<float> W = random_vec(size_t(c.N) * c.K, rng), x = random_vec(size_t(c.B) * c.K, rng);
    std::vector<float> nw = random_vec(size_t(c.K), rng);
    for (auto& v : x) v *= 7.0f;  // a residual stream far from unit scale
    round_to(DType::BF16, W);
    auto dW = upload(DType::BF16, W), dx = upload(DType::F32, x), dnw = upload(DType::F32, nw);
    const bool swiglu = c.epi == GemvEpilogue::kSwiGLU;
    const int n_out = swiglu ? c.N / 2 : c.N;
    const DType out_t = c.epi == GemvEpilogue::kStoreF32 ? DType::F32 : DType::BF16;
    DeviceBuffer dout(size_t(c.B) * n_out * esize(out_t)), ws(size_t(64) * c.B * c.N * 4), cnt(size_t(ceil_div(c.N, 16)) * 4);
    poison(dout);
    CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
    GemvArgs a;
    a.dtype = DType::BF16, a.W = dW.get(), a.x = dx.get(), a.B = c.B, a.N = c.N, a.K = c.K, a.epi = c.epi;
    a.out = dout.get(), a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4, a.counters = cnt.as<unsigned>();
    a.n_counters = int(cnt.size() / 4), a.norm_w = dnw.as<float>(), a.norm_eps = 1e-5f;
    gemv(a, nullptr);
    const std::vector<float> want = norm_gemv_ref(W, x, nw, c.B, c.N, c.K, c.epi);
    EXPECT_LE(rel_err(download(out_t, dout.get(), want.size()), want), tol(DType::BF16));
    EXPECT_EQ(x, download(DType::F32, dx.get(), x.size())) << "the residual stream must be left as it was";
  }
}

// The decode chain of a layer with the norm fused through partial sums: a residual GEMV
// (x += Wo . a) writes per-tile sums of the new x^2 (ss_out), and the next fused-norm GEMV takes
// its rms from them (ss_in). Checked against the CPU: x, the partials, and rmsnorm + linear.
TEST(CudaKernels, GemvResidualSumsFeedFusedNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  struct Case { int B, K, Kin, N; GemvEpilogue epi; };
  for (const Case c : {Case{1, 4096, 4096, 12288, GemvEpilogue::kStore}, Case{3, 576, 1536, 2 * 1536, GemvEpilogue::kSwiGLU},
                       Case{8, 4104, 11008, 1000, GemvEpilogue::kStoreF32}, Case{2, 24, 40, 33, GemvEpilogue::kStore}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " K=" + std::to_string(c.K) + " Kin=" + std::to_string(c.Kin) +
                 " N=" + std::to_string(c.N) + " " + epi_name(c.epi));
    std::vector<float> Wo = random_vec(size_t(c.K) * c.Kin, rng), in = random_vec(size_t(c.B) * c.Kin, rng);
    std::vector<float> W = random_vec(size_t(c.N) * c.K, rng), x = random_vec(size_t(c.B) * c.K, rng, -5, 5);
    std::vector<float> nw = random_vec(size_t(c.K), rng, 0.5f, 1.5f);
    round_to(DType::BF16, Wo), round_to(DType::BF16, in), round_to(DType::BF16, W);
    auto dWo = upload(DType::BF16, Wo), din = upload(DType::BF16, in), dW = upload(DType::BF16, W);
    auto dx = upload(DType::F32, x), dnw = upload(DType::F32, nw);
    const int parts = ceil_div(c.K, 16), maxN = std::max(c.N, c.K);
    DeviceBuffer ss(size_t(parts) * c.B * 4), ws(size_t(64) * c.B * maxN * 4), cnt(size_t(ceil_div(maxN, 16)) * 4);
    poison(ss);
    CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
    GemvArgs r;
    r.dtype = DType::BF16, r.W = dWo.get(), r.x = din.get(), r.B = c.B, r.N = c.K, r.K = c.Kin;
    r.epi = GemvEpilogue::kAddF32, r.out = dx.get(), r.ws = ws.as<float>(), r.ws_floats = ws.size() / 4;
    r.counters = cnt.as<unsigned>(), r.n_counters = int(cnt.size() / 4), r.ss_out = ss.as<float>();
    gemv(r, nullptr);
    // x after the residual product, and its partial sums of squares
    std::vector<float> y(size_t(c.B) * c.K), want_x = x;
    ref::linear(Wo.data(), in.data(), c.B, c.K, c.Kin, y.data());
    for (size_t i = 0; i < want_x.size(); ++i) want_x[i] += y[i];
    const std::vector<float> got_x = download(DType::F32, dx.get(), x.size());
    EXPECT_LE(rel_err(got_x, want_x), 1e-5);
    std::vector<float> want_ss(size_t(parts) * c.B, 0.f);
    for (int b = 0; b < c.B; ++b)
      for (int k = 0; k < c.K; ++k) want_ss[size_t(k / 16) * c.B + b] += got_x[size_t(b) * c.K + k] * got_x[size_t(b) * c.K + k];
    EXPECT_LE(rel_err(download(DType::F32, ss.get(), want_ss.size()), want_ss), 1e-5);

    const bool swiglu = c.epi == GemvEpilogue::kSwiGLU;
    const int n_out = swiglu ? c.N / 2 : c.N;
    const DType out_t = c.epi == GemvEpilogue::kStoreF32 ? DType::F32 : DType::BF16;
    DeviceBuffer dout(size_t(c.B) * n_out * esize(out_t));
    poison(dout);
    GemvArgs a = r;
    a.W = dW.get(), a.x = dx.get(), a.N = c.N, a.K = c.K, a.epi = c.epi, a.out = dout.get(), a.ss_out = nullptr;
    a.norm_w = dnw.as<float>(), a.norm_eps = 1e-5f, a.ss_in = ss.as<float>();
    gemv(a, nullptr);
    const std::vector<float> want = norm_gemv_ref(W, got_x, nw, c.B, c.N, c.K, c.epi);
    EXPECT_LE(rel_err(download(out_t, dout.get(), want.size()), want), tol(DType::BF16));
  }
}

// The folded RMSNorm (batch-1 decode): a residual GEMV (x += Wo . in) that also writes h = x * w
// and per-block sums of the new x^2 (next_h / next_ss), then a GEMV that divides its products by
// the rms from those sums (rms_ss). Checked against the CPU: x; h bit for bit from the GPU's x (one
// fp32 product, rounded to nearest); the sums; and rmsnorm + linear of the new x (the reference rounds
// x / rms * w to bf16, the folded path x * w: equal within the bf16 tolerance). K = 4104 has 1026
// partials: past the 1024 the consumer loads before its main loop.
TEST(CudaKernels, GemvFoldedRmsNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(19);
  struct Case { int B, K, Kin, N; GemvEpilogue epi; };
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case c : {Case{1, 4096, 4096, 12288, GemvEpilogue::kStore}, Case{1, 576, 1536, 2 * 1536, GemvEpilogue::kSwiGLU},
                         Case{1, 4104, 11008, 1000, GemvEpilogue::kStoreF32}, Case{3, 576, 1536, 2 * 1536, GemvEpilogue::kSwiGLU},
                         Case{8, 4104, 520, 1000, GemvEpilogue::kStoreF32}, Case{2, 24, 40, 33, GemvEpilogue::kStore},
                         Case{1, 66, 30, 35, GemvEpilogue::kStore}}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " B=" + std::to_string(c.B) + " K=" + std::to_string(c.K) +
                   " Kin=" + std::to_string(c.Kin) + " N=" + std::to_string(c.N) + " " + epi_name(c.epi));
      std::vector<float> Wo = random_vec(size_t(c.K) * c.Kin, rng), in = random_vec(size_t(c.B) * c.Kin, rng);
      std::vector<float> W = random_vec(size_t(c.N) * c.K, rng), x = random_vec(size_t(c.B) * c.K, rng, -5, 5);
      std::vector<float> nw = random_vec(size_t(c.K), rng, 0.5f, 1.5f);
      round_to(dt, Wo), round_to(dt, in), round_to(dt, W);
      auto dWo = upload(dt, Wo), din = upload(dt, in), dW = upload(dt, W);
      auto dx = upload(DType::F32, x), dnw = upload(DType::F32, nw);
      const int parts = gemv_fold_parts(c.K);
      DeviceBuffer ss(size_t(parts) * c.B * 4), dh(size_t(c.B) * c.K * esize(dt));
      poison(ss), poison(dh);
      GemvArgs r;
      r.dtype = dt, r.W = dWo.get(), r.x = din.get(), r.B = c.B, r.N = c.K, r.K = c.Kin;
      r.epi = GemvEpilogue::kAddF32, r.out = dx.get();
      r.next_norm_w = dnw.as<float>(), r.next_h = dh.get(), r.next_ss = ss.as<float>();
      gemv(r, nullptr);
      std::vector<float> y(size_t(c.B) * c.K), want_x = x;
      ref::linear(Wo.data(), in.data(), c.B, c.K, c.Kin, y.data());
      for (size_t i = 0; i < want_x.size(); ++i) want_x[i] += y[i];
      const std::vector<float> got_x = download(DType::F32, dx.get(), x.size());
      EXPECT_LE(rel_err(got_x, want_x), 1e-5);
      std::vector<float> want_h(got_x.size()), want_ss(size_t(parts) * c.B, 0.f);
      for (int b = 0; b < c.B; ++b)
        for (int k = 0; k < c.K; ++k) {
          const float v = got_x[size_t(b) * c.K + k];
          want_h[size_t(b) * c.K + k] = v * nw[size_t(k)];
          want_ss[size_t(k / 4) * c.B + b] += v * v;
        }
      round_to(dt, want_h);
      EXPECT_EQ(download(dt, dh.get(), want_h.size()), want_h) << "h = x * w, rounded once";
      EXPECT_LE(rel_err(download(DType::F32, ss.get(), want_ss.size()), want_ss), 1e-6);

      const bool swiglu = c.epi == GemvEpilogue::kSwiGLU;
      const int n_out = swiglu ? c.N / 2 : c.N;
      const DType out_t = c.epi == GemvEpilogue::kStoreF32 ? DType::F32 : dt;
      DeviceBuffer dout(size_t(c.B) * n_out * esize(out_t));
      poison(dout);
      GemvArgs a;
      a.dtype = dt, a.W = dW.get(), a.x = dh.get(), a.B = c.B, a.N = c.N, a.K = c.K, a.epi = c.epi, a.out = dout.get();
      a.rms_ss = ss.as<float>(), a.norm_eps = 1e-5f;
      gemv(a, nullptr);
      std::vector<float> want;
      if (dt == DType::BF16) {
        want = norm_gemv_ref(W, got_x, nw, c.B, c.N, c.K, c.epi);
      } else {  // fp32: rmsnorm then linear, no rounding
        std::vector<float> xr = got_x, h(got_x.size()), yy(size_t(c.B) * c.N);
        ref::rmsnorm(xr.data(), nullptr, nw.data(), h.data(), c.B, c.K, 1e-5f);
        ref::linear(W.data(), h.data(), c.B, c.N, c.K, yy.data());
        want = epilogue_ref(yy, c.B, c.N, c.epi);
      }
      EXPECT_LE(rel_err(download(out_t, dout.get(), want.size()), want), tol(dt));
    }
  // what the folded norm does not combine with
  GemvArgs bad;
  bad.B = 1, bad.N = 16, bad.K = 16, bad.epi = GemvEpilogue::kStore;
  float dummy = 0.f;
  bad.next_ss = &dummy, bad.next_norm_w = &dummy, bad.next_h = &dummy;
  EXPECT_THROW(gemv(bad, nullptr), Error) << "next_ss needs kAddF32";
  bad.epi = GemvEpilogue::kAddF32, bad.impl = GemvImpl::kTensorCore;
  EXPECT_THROW(gemv(bad, nullptr), Error) << "the fold needs the CUDA-core kernel";
  bad.impl = GemvImpl::kAuto, bad.rms_ss = &dummy;
  EXPECT_THROW(gemv(bad, nullptr), Error) << "rms_ss with next_ss";
}

TEST(CudaKernels, RmsNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(2);
  for (DType dt : {DType::F32, DType::BF16})
    for (bool with_res : {false, true})
      for (int dim : {64, 66, 576, 4100, 20000}) {  // float4 kernel (1 or 2 per thread), scalar: dim % 4, > 16384
        SCOPED_TRACE(std::string(dtype_name(dt)) + " dim " + std::to_string(dim) + (with_res ? " +residual" : ""));
        const int n = 3;
        std::vector<float> x = random_vec(size_t(n) * dim, rng, -2, 2), res = random_vec(size_t(n) * dim, rng);
        std::vector<float> w = random_vec(size_t(dim), rng, 0.5f, 1.5f);
        round_to(dt, res);
        DeviceBuffer dx = upload(DType::F32, x), dres = upload(dt, res), dw = upload(DType::F32, w);
        DeviceBuffer dh(size_t(n) * dim * esize(dt));
        poison(dh);
        rmsnorm(dt, dx.as<float>(), with_res ? dres.get() : nullptr, dw.as<float>(), dh.get(), n, dim, 1e-5f, nullptr);
        std::vector<float> h(x.size());
        ref::rmsnorm(x.data(), with_res ? res.data() : nullptr, w.data(), h.data(), n, dim, 1e-5f);
        EXPECT_LE(rel_err(download(dt, dh.get(), h.size()), h), tol(dt));
        EXPECT_LE(rel_err(download(DType::F32, dx.get(), x.size()), x), 1e-6);
      }
}

TEST(CudaKernels, RopeKvCache) {
  REQUIRE_GPU();
  std::mt19937 rng(3);
  const int nh = 6, nkv = 2, hd = 64, ctx = 40, slots = 3;
  for (DType dt : {DType::F32, DType::BF16})
    for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kHalfSplit})
      for (int rope_dim : {64, 32})
        for (int mode = 0; mode < 2; ++mode) {  // 0: prefill of one sequence, 1: decode of 3
          SCOPED_TRACE(std::string(dtype_name(dt)) + (style == RopeStyle::kInterleaved ? " interleaved" : " half-split") +
                       " rope_dim " + std::to_string(rope_dim) + (mode ? " decode" : " prefill"));
          LlamaConfig cfg;
          cfg.dim = nh * hd, cfg.n_heads = nh, cfg.head_dim = hd, cfg.rope_dim = rope_dim, cfg.rope_theta = 10000;
          if (rope_dim == 32) cfg.rope_scaling = RopeScaling::kLlama3, cfg.rope_factor = 8, cfg.rope_original_max_pos = 16;
          const std::vector<float> inv = ref::rope_inv_freq(cfg);
          const int n = mode ? 3 : 13, q_per_seq = mode ? 1 : 13, slot0 = mode ? 0 : 1;
          const std::vector<int> pos = mode ? std::vector<int>{0, 5, ctx - 1} : std::vector<int>{7};
          const int width = (nh + 2 * nkv) * hd;
          std::vector<float> qkv = random_vec(size_t(n) * width, rng), bias = random_vec(size_t(width), rng);
          const size_t cache_n = size_t(slots) * nkv * ctx * hd;
          std::vector<float> kc = random_vec(cache_n, rng), vc = random_vec(cache_n, rng);
          round_to(dt, qkv), round_to(dt, kc), round_to(dt, vc);
          const bool with_bias = rope_dim == 32;
          DeviceBuffer dqkv = upload(dt, qkv), dbias = upload(DType::F32, bias), dkc = upload(dt, kc),
                       dvc = upload(dt, vc), dinv = upload(DType::F32, inv);
          DeviceBuffer dpos(pos.size() * 4), dq(size_t(n) * nh * hd * esize(dt));
          CUDA_CHECK(cudaMemcpy(dpos.get(), pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
          poison(dq);
          RopeArgs a;
          a.dtype = dt, a.qkv = dqkv.get(), a.bias = with_bias ? dbias.as<float>() : nullptr, a.q_out = dq.get();
          a.k_cache = dkc.get(), a.v_cache = dvc.get(), a.pos = dpos.as<int>(), a.n = n, a.q_per_seq = q_per_seq;
          a.slot0 = slot0, a.nh = nh, a.nkv = nkv, a.hd = hd, a.ctx = ctx, a.rope_dim = rope_dim, a.style = style;
          a.inv_freq = dinv.as<float>();
          rope_kv(a, nullptr);
          std::vector<float> q(size_t(n) * nh * hd);
          ref::rope_kv(qkv.data(), with_bias ? bias.data() : nullptr, q.data(), kc.data(), vc.data(), pos.data(), n,
                       q_per_seq, slot0, nh, nkv, hd, ctx, rope_dim, style, inv.data());
          EXPECT_LE(rel_err(download(dt, dq.get(), q.size()), q), tol(dt));
          EXPECT_LE(rel_err(download(dt, dkc.get(), cache_n), kc), tol(dt));
          EXPECT_LE(rel_err(download(dt, dvc.get(), cache_n), vc), tol(dt));
        }
}

namespace {

struct AttnCase {
  DType dt;
  int nh, nkv, hd;
  int n, q_per_seq, slot0;
  std::vector<int> pos;
  int n_splits;
  AttnImpl impl;
};

// fold: the split blocks combine their partials themselves (AttnArgs::counters).
void run_attn_case(const AttnCase& c, std::mt19937& rng, bool fold = false) {
  const int ctx = 100, slots = 3;
  SCOPED_TRACE(std::string(dtype_name(c.dt)) + " nh " + std::to_string(c.nh) + " nkv " + std::to_string(c.nkv) +
               " hd " + std::to_string(c.hd) + " n " + std::to_string(c.n) + " splits " + std::to_string(c.n_splits) +
               (c.impl == AttnImpl::kFlash ? " flash" : c.impl == AttnImpl::kWarp ? " warp" : " generic") +
               (fold ? " folded combine" : ""));
  const size_t cache_n = size_t(slots) * c.nkv * ctx * c.hd;
  std::vector<float> q = random_vec(size_t(c.n) * c.nh * c.hd, rng), kc = random_vec(cache_n, rng),
                     vc = random_vec(cache_n, rng);
  round_to(c.dt, q), round_to(c.dt, kc), round_to(c.dt, vc);
  DeviceBuffer dq = upload(c.dt, q), dkc = upload(c.dt, kc), dvc = upload(c.dt, vc);
  DeviceBuffer dpos(c.pos.size() * 4), dout(q.size() * esize(c.dt));
  CUDA_CHECK(cudaMemcpy(dpos.get(), c.pos.data(), c.pos.size() * 4, cudaMemcpyHostToDevice));
  poison(dout);
  AttnArgs a;
  a.dtype = c.dt, a.q = dq.get(), a.k_cache = dkc.get(), a.v_cache = dvc.get(), a.out = dout.get();
  a.pos = dpos.as<int>(), a.n = c.n, a.q_per_seq = c.q_per_seq, a.slot0 = c.slot0;
  a.nh = c.nh, a.nkv = c.nkv, a.hd = c.hd, a.ctx = ctx, a.scale = 1.f / std::sqrt(float(c.hd));
  a.n_splits = c.n_splits, a.impl = c.impl;
  DeviceBuffer ws(std::max<size_t>(4, attn_ws_floats(c.n, c.nh, c.hd, c.n_splits) * 4));
  poison(ws);
  a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4;
  DeviceBuffer cnt(size_t(c.n) * c.nkv * 4);
  if (fold) {
    CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
    a.counters = cnt.as<unsigned>();
  }
  if (c.impl == AttnImpl::kFlash && !flash_attention_supported(a)) {
    ADD_FAILURE() << "flash attention does not support this case";
    return;
  }
  if (c.impl == AttnImpl::kWarp && !attn_warp_supported(a)) {
    EXPECT_THROW(attention(a, nullptr), Error);  // refused, not run wrong
    return;
  }
  attention(a, nullptr);
  std::vector<float> out(q.size());
  ref::attention(q.data(), kc.data(), vc.data(), out.data(), c.pos.data(), c.n, c.q_per_seq, c.slot0, c.nh, c.nkv,
                 c.hd, ctx, a.scale);
  EXPECT_LE(rel_err(download(c.dt, dout.get(), out.size()), out), tol(c.dt));
  if (fold) {  // counters back at zero, and a second launch gives the same result
    std::vector<unsigned> cn(cnt.size() / 4);
    CUDA_CHECK(cudaMemcpy(cn.data(), cnt.get(), cnt.size(), cudaMemcpyDeviceToHost));
    for (unsigned v : cn) ASSERT_EQ(v, 0u);
    poison(dout);
    attention(a, nullptr);
    EXPECT_LE(rel_err(download(c.dt, dout.get(), out.size()), out), tol(c.dt));
  }
}

}  // namespace

// Both decode kernels (tile: any head size; warp: head 64 / 128 / 256, up to 8 heads per kv head
// and 4 at head 256, else refused) against ref::attention. Positions 0, 17 and 99 of a context of
// 100: a single key, partial 64-key rounds and splits, empty splits.
TEST(CudaKernels, AttentionDecodeSplitK) {
  REQUIRE_GPU();
  std::mt19937 rng(4);
  for (AttnImpl impl : {AttnImpl::kGeneric, AttnImpl::kWarp})
    for (DType dt : {DType::F32, DType::BF16})
      for (auto [nh, nkv, hd] : {std::tuple{4, 4, 128}, std::tuple{8, 2, 64}, std::tuple{8, 4, 8}, std::tuple{9, 3, 64},
                                 std::tuple{16, 2, 128}, std::tuple{8, 2, 256}, std::tuple{16, 2, 256}})
        for (int splits : {1, 3, 8, attn_decode_splits(3, nkv, 100)})
          for (bool fold : {false, true})
            run_attn_case({dt, nh, nkv, hd, 3, 1, 0, {0, 17, 99}, splits, impl}, rng, fold);
}

// The RoPE + KV write inside the decode attention (AttnArgs::rope_qkv), both kernels, against
// ref::rope_kv then ref::attention: the outputs, and the caches (the block holding key p writes
// its row, every other row stays as it was).
TEST(CudaKernels, AttentionDecodeFusedRope) {
  REQUIRE_GPU();
  std::mt19937 rng(14);
  const int ctx = 150, slots = 2;
  for (AttnImpl impl : {AttnImpl::kGeneric, AttnImpl::kWarp})
    for (DType dt : {DType::F32, DType::BF16})
      for (auto [nh, nkv, hd] : {std::tuple{4, 4, 128}, std::tuple{9, 3, 64}})
        for (int splits : {1, 3}) {
          SCOPED_TRACE(std::string(dtype_name(dt)) + (impl == AttnImpl::kWarp ? " warp" : " tile") + " nh " +
                       std::to_string(nh) + " nkv " + std::to_string(nkv) + " hd " + std::to_string(hd) + " splits " +
                       std::to_string(splits));
          LlamaConfig cfg;
          cfg.dim = nh * hd, cfg.n_heads = nh, cfg.head_dim = hd, cfg.rope_dim = hd, cfg.rope_theta = 10000;
          const std::vector<float> inv = ref::rope_inv_freq(cfg);
          const int n = 2, width = (nh + 2 * nkv) * hd;
          const std::vector<int> pos = {5, 140};  // 140: the last of 3 splits holds key p
          std::vector<float> qkv = random_vec(size_t(n) * width, rng);
          const size_t cache_n = size_t(slots) * nkv * ctx * hd;
          std::vector<float> kc = random_vec(cache_n, rng), vc = random_vec(cache_n, rng);
          round_to(dt, qkv), round_to(dt, kc), round_to(dt, vc);
          DeviceBuffer dqkv = upload(dt, qkv), dkc = upload(dt, kc), dvc = upload(dt, vc), dinv = upload(DType::F32, inv);
          DeviceBuffer dpos(pos.size() * 4), dout(size_t(n) * nh * hd * esize(dt));
          CUDA_CHECK(cudaMemcpy(dpos.get(), pos.data(), pos.size() * 4, cudaMemcpyHostToDevice));
          poison(dout);
          AttnArgs a;
          a.dtype = dt, a.k_cache = dkc.get(), a.v_cache = dvc.get(), a.out = dout.get(), a.pos = dpos.as<int>();
          a.n = n, a.q_per_seq = 1, a.slot0 = 0, a.nh = nh, a.nkv = nkv, a.hd = hd, a.ctx = ctx;
          a.scale = 1.f / std::sqrt(float(hd)), a.n_splits = splits, a.impl = impl;
          a.rope_qkv = dqkv.get(), a.inv_freq = dinv.as<float>(), a.rope_dim = hd, a.style = RopeStyle::kHalfSplit;
          DeviceBuffer ws(std::max<size_t>(4, attn_ws_floats(n, nh, hd, splits) * 4)), cnt(size_t(n) * nkv * 4);
          CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
          a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4, a.counters = cnt.as<unsigned>();
          attention(a, nullptr);
          std::vector<float> q(size_t(n) * nh * hd), out(q.size());
          ref::rope_kv(qkv.data(), nullptr, q.data(), kc.data(), vc.data(), pos.data(), n, 1, 0, nh, nkv, hd, ctx, hd,
                       RopeStyle::kHalfSplit, inv.data());
          round_to(dt, q);  // the kernel rounds the rotated q to T, as rope_kv's q_out
          ref::attention(q.data(), kc.data(), vc.data(), out.data(), pos.data(), n, 1, 0, nh, nkv, hd, ctx, a.scale);
          EXPECT_LE(rel_err(download(dt, dout.get(), out.size()), out), tol(dt));
          EXPECT_LE(rel_err(download(dt, dkc.get(), cache_n), kc), tol(dt));
          EXPECT_LE(rel_err(download(dt, dvc.get(), cache_n), vc), tol(dt));
        }
}

TEST(CudaKernels, AttentionPrefillGeneric) {
  REQUIRE_GPU();
  std::mt19937 rng(5);
  for (DType dt : {DType::F32, DType::BF16})
    for (auto [nh, nkv, hd] : {std::tuple{4, 4, 64}, std::tuple{8, 2, 128}, std::tuple{8, 4, 8}})
      run_attn_case({dt, nh, nkv, hd, 77, 77, 1, {5}, 1, AttnImpl::kGeneric}, rng);
}

TEST(CudaKernels, AttentionPrefillFlash) {
  REQUIRE_GPU();
  std::mt19937 rng(6);
  for (auto [nh, nkv, hd] : {std::tuple{4, 4, 64}, std::tuple{8, 2, 128}, std::tuple{6, 2, 64}})
    for (auto [n, pos0] : {std::pair{77, 5}, std::pair{64, 0}, std::pair{1, 30}, std::pair{95, 0}})
      run_attn_case({DType::BF16, nh, nkv, hd, n, n, 1, {pos0}, 1, AttnImpl::kFlash}, rng);
}

TEST(CudaKernels, SwiGLU) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  for (DType dt : {DType::F32, DType::BF16}) {
    const int n = 5, hp = 200;
    std::vector<float> gu = random_vec(size_t(n) * 2 * hp, rng, -3, 3);
    round_to(dt, gu);
    DeviceBuffer dgu = upload(dt, gu), dout(size_t(n) * hp * esize(dt));
    poison(dout);
    swiglu(dt, dgu.get(), dout.get(), n, hp, nullptr);
    std::vector<float> out(size_t(n) * hp);
    ref::swiglu(gu.data(), out.data(), n, hp);
    EXPECT_LE(rel_err(download(dt, dout.get(), out.size()), out), tol(dt)) << dtype_name(dt);
  }
}

TEST(CudaKernels, EmbedAndConvert) {
  REQUIRE_GPU();
  std::mt19937 rng(8);
  for (DType dt : {DType::F32, DType::BF16}) {
    const int vocab = 50, dim = 70;
    std::vector<float> table = random_vec(size_t(vocab) * dim, rng);
    round_to(dt, table);
    const std::vector<int> toks = {3, 0, 49, -1, 50, 7};
    DeviceBuffer dt_ = upload(dt, table), dtok(toks.size() * 4), dx(toks.size() * dim * 4);
    CUDA_CHECK(cudaMemcpy(dtok.get(), toks.data(), toks.size() * 4, cudaMemcpyHostToDevice));
    poison(dx);
    embed(dt, dt_.get(), dtok.as<int>(), int(toks.size()), dim, vocab, dx.as<float>(), nullptr);
    std::vector<float> want(toks.size() * dim, 0.f);
    for (size_t i = 0; i < toks.size(); ++i)
      if (toks[i] >= 0 && toks[i] < vocab)
        for (int d = 0; d < dim; ++d) want[i * dim + d] = table[size_t(toks[i]) * dim + d];
    const auto got = download(DType::F32, dx.get(), want.size());
    EXPECT_EQ(got, want) << dtype_name(dt);
  }
  // convert: f16 source rows into an interleaved (gate/up) destination with padding columns
  const int rows = 24, cols = 10, ld = 12;
  std::vector<float> src = random_vec(size_t(rows) * cols, rng);
  std::vector<uint16_t> h16(src.size());
  for (size_t i = 0; i < src.size(); ++i) h16[i] = f32_to_f16(src[i]), src[i] = f16_to_f32(h16[i]);
  DeviceBuffer dsrc(h16.size() * 2), ddst(size_t(2 * rows) * ld * 4);
  CUDA_CHECK(cudaMemcpy(dsrc.get(), h16.data(), h16.size() * 2, cudaMemcpyHostToDevice));
  poison(ddst);
  convert_matrix(DType::F16, dsrc.get(), DType::F32, ddst.get(), rows, cols, ld, 8, true, nullptr);
  const auto got = download(DType::F32, ddst.get(), size_t(2 * rows) * ld);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      ASSERT_EQ(got[size_t(8 + swiglu_row_of_gate(r)) * ld + c], src[size_t(r) * cols + c]) << r << "," << c;
  // fill_random: finite, in range, not constant, mean near the offset
  DeviceBuffer dr(100003 * 2);
  fill_random(DType::BF16, dr.get(), 100003, 42, 0.5f, 1.f, nullptr);
  const auto rv = download(DType::BF16, dr.get(), 100003);
  double mean = 0;
  for (float v : rv) {
    ASSERT_TRUE(v >= 0.49f && v <= 1.51f) << v;
    mean += v;
  }
  EXPECT_NEAR(mean / rv.size(), 1.0, 0.01);
}

TEST(CudaKernels, LtGemm) {
  REQUIRE_GPU();
  std::mt19937 rng(9);
  LtGemm gemm;
  const int M = 77, N = 300, K = 520;
  for (DType ab : {DType::F32, DType::BF16})
    for (DType cd : {DType::F32, DType::BF16})
      for (float beta : {0.f, 1.f}) {
        if (ab == DType::F32 && cd == DType::BF16) continue;
        SCOPED_TRACE(std::string(dtype_name(ab)) + " -> " + std::string(dtype_name(cd)) + " beta " + std::to_string(beta));
        std::vector<float> W = random_vec(size_t(N) * K, rng), x = random_vec(size_t(M) * K, rng),
                           y0 = random_vec(size_t(M) * N, rng);
        round_to(ab, W), round_to(ab, x), round_to(cd, y0);
        DeviceBuffer dW = upload(ab, W), dx = upload(ab, x), dy = upload(cd, y0);
        if (beta == 0.f) poison(dy);
        gemm.matmul(ab, dW.get(), dx.get(), cd, dy.get(), M, N, K, beta, nullptr);
        std::vector<float> want(size_t(M) * N);
        ref::linear(W.data(), x.data(), M, N, K, want.data());
        if (beta != 0.f)
          for (size_t i = 0; i < want.size(); ++i) want[i] += y0[i];
        EXPECT_LE(rel_err(download(cd, dy.get(), want.size()), want), cd == DType::BF16 || ab == DType::BF16 ? 1e-2 : 1e-5);
      }
}

TEST(CudaKernels, Sampling) {
  REQUIRE_GPU();
  std::mt19937 rng(10);
  struct P { float t; int k; float p; };
  const std::vector<P> params = {{0.f, 0, 1.f}, {0.8f, 0, 1.f}, {1.f, 50, 1.f}, {1.f, 0, 0.9f}, {0.7f, 40, 0.95f}, {1.f, 1, 1.f}};
  for (int vocab : {1000, 50000}) {
    const int B = 3;
    std::normal_distribution<float> nd(0.f, 3.f);
    std::vector<float> logits(size_t(B) * vocab);
    for (auto& v : logits) v = nd(rng);
    DeviceBuffer dl = upload(DType::F32, logits), dparams(sizeof(SamplingParamsDev)), dcnt(B * 4),
                 dscratch(size_t(B) * vocab * 4), dtok(B * 4);
    for (const P& p : params) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " T " + std::to_string(p.t) + " k " + std::to_string(p.k) +
                   " p " + std::to_string(p.p));
      const SamplingParamsDev sp{p.t, p.k, p.p, 1234u, 5u};
      CUDA_CHECK(cudaMemcpy(dparams.get(), &sp, sizeof sp, cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemset(dcnt.get(), 0, dcnt.size()));
      const int draws = p.t > 0 ? 60 : 1;
      std::vector<int> same(B, 0);
      for (int d = 0; d < draws; ++d) {
        poison(dtok);
        sample(dl.as<float>(), B, vocab, vocab, dparams.as<SamplingParamsDev>(), dcnt.as<uint32_t>(),
               dscratch.as<float>(), dtok.as<int>(), nullptr);
        std::vector<int> tok(B);
        CUDA_CHECK(cudaMemcpy(tok.data(), dtok.get(), B * 4, cudaMemcpyDeviceToHost));
        for (int b = 0; b < B; ++b) {
          const float u = philox_uniform(sp.seed_lo, sp.seed_hi, uint32_t(d), uint32_t(b));
          std::vector<int> kept;
          const int want = ref::sample(logits.data() + size_t(b) * vocab, vocab, p.t, p.k, p.p, u, &kept);
          ASSERT_TRUE(std::binary_search(kept.begin(), kept.end(), tok[size_t(b)]))
              << "token " << tok[size_t(b)] << " is not among the " << kept.size() << " kept";
          same[size_t(b)] += tok[size_t(b)] == want;
        }
      }
      for (int b = 0; b < B; ++b) EXPECT_GE(same[size_t(b)], draws * 9 / 10) << "row " << b;
      std::vector<uint32_t> cnt(B);
      CUDA_CHECK(cudaMemcpy(cnt.data(), dcnt.get(), B * 4, cudaMemcpyDeviceToHost));
      for (int b = 0; b < B; ++b) EXPECT_EQ(cnt[size_t(b)], uint32_t(draws));
    }
  }
}

// Greedy selection (temperature 0): the lowest index among equal maxima, on vocab sizes that are and
// are not multiples of 4 or of the block, rows whose start is not 16-byte aligned (ld = vocab + 3),
// maxima near the start and the end of a row, and a row of -inf (token 0, as ref::sample picks).
// Reference: the CPU argmax of the same logits (lowest index first).
TEST(CudaKernels, SamplingGreedyTiesAndLayouts) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  for (int vocab : {1, 3, 7, 1001, 32000, 50003})
    for (int pad : {0, 3}) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " ld " + std::to_string(vocab + pad));
      const int B = 4, ld = vocab + pad;
      std::normal_distribution<float> nd(0.f, 2.f);
      std::vector<float> logits(size_t(B) * ld);
      for (auto& v : logits) v = nd(rng);
      auto row = [&](int b) { return logits.data() + size_t(b) * ld; };
      if (vocab >= 3) {
        row(0)[vocab - 1] = row(0)[1] = 50.f;  // tie: index 1 wins
        row(1)[vocab - 1] = 60.f;              // in the scalar tail when vocab % 4 != 0
      }
      for (int i = 0; i < vocab; ++i) row(2)[i] = -INFINITY;
      std::vector<int> want(B);
      for (int b = 0; b < B; ++b) {
        int best = 0;
        for (int i = 1; i < vocab; ++i)
          if (row(b)[i] > row(b)[best]) best = i;
        want[size_t(b)] = best;
      }
      DeviceBuffer dl = upload(DType::F32, logits), dparams(sizeof(SamplingParamsDev)), dcnt(B * 4),
          dscratch(size_t(B) * vocab * 4), dtok(B * 4);
      const SamplingParamsDev sp{0.f, 0, 1.f, 1u, 2u};
      CUDA_CHECK(cudaMemcpy(dparams.get(), &sp, sizeof sp, cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemset(dcnt.get(), 0, dcnt.size()));
      poison(dtok);
      sample(dl.as<float>(), B, vocab, ld, dparams.as<SamplingParamsDev>(), dcnt.as<uint32_t>(), dscratch.as<float>(),
             dtok.as<int>(), nullptr);
      std::vector<int> tok(B);
      CUDA_CHECK(cudaMemcpy(tok.data(), dtok.get(), B * 4, cudaMemcpyDeviceToHost));
      for (int b = 0; b < B; ++b) EXPECT_EQ(tok[size_t(b)], want[size_t(b)]) << "row " << b;
    }
}

// Decode GEMV bandwidth on the Llama-2-7B / Llama-3-8B shapes, for tuning (prints a table):
//   ignis_gpu_tests --gtest_also_run_disabled_tests --gtest_filter='*GemvBandwidth*'
// Each launch reads a different copy of W (enough copies to overflow L2), 30 back-to-back
// launches timed with events; GB/s counts the bytes of W (+ x + y).
TEST(CudaKernels, DISABLED_GemvBandwidth) {
  REQUIRE_GPU();
  struct Shape { const char* name; int N, K; GemvEpilogue epi; };
  const std::vector<Shape> shapes = {
      {"wqkv 7B", 12288, 4096, GemvEpilogue::kStore},   {"wo 7B", 4096, 4096, GemvEpilogue::kAddF32},
      {"gate/up 7B", 22016, 4096, GemvEpilogue::kSwiGLU}, {"down 7B", 4096, 11008, GemvEpilogue::kAddF32},
      {"logits 7B", 32000, 4096, GemvEpilogue::kStoreF32}, {"wqkv 8B", 6144, 4096, GemvEpilogue::kStore},
      {"down 8B", 4096, 14336, GemvEpilogue::kAddF32}};
  DeviceBuffer src(size_t(1) << 30), dst(size_t(1) << 30);
  fill_random(DType::F32, src.get(), (size_t(1) << 30) / 4, 1, 1.f, 0.f, nullptr);
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  CUDA_CHECK(cudaEventRecord(e0));
  for (int i = 0; i < 5; ++i) CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), src.size(), cudaMemcpyDeviceToDevice));
  CUDA_CHECK(cudaEventRecord(e1));
  CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  const double copy = 2.0 * 5 * src.size() / (ms * 1e-3) / 1e9;
  src.reset(), dst.reset();
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy);
  std::printf("%-12s %6s %6s %2s %-6s %9s %8s %6s\n", "shape", "N", "K", "B", "impl", "us", "GB/s", "%copy");
  for (const auto& s : shapes) {
    const size_t wbytes = size_t(s.N) * s.K * 2;
    const int copies = int(std::max<size_t>(2, (size_t(200) << 20) / wbytes + 1));
    std::vector<DeviceBuffer> Ws;
    for (int i = 0; i < copies; ++i) {
      Ws.emplace_back(wbytes);
      fill_random(DType::BF16, Ws.back().get(), wbytes / 2, 100 + i, 0.02f, 0.f, nullptr);
    }
    DeviceBuffer x(size_t(8) * s.K * 2), y(size_t(8) * s.N * 4), ws(size_t(16) * 8 * s.N * 4),
        cnt(size_t(ceil_div(s.N, 16)) * 4);
    fill_random(DType::BF16, x.get(), size_t(8) * s.K, 7, 1.f, 0.f, nullptr);
    CUDA_CHECK(cudaMemset(y.get(), 0, y.size()));
    CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
    for (int B : {1, 8})
      for (GemvImpl impl : {GemvImpl::kBulk, GemvImpl::kTensorCore, GemvImpl::kSimple}) {
        GemvArgs a;
        a.dtype = DType::BF16, a.x = x.get(), a.B = B, a.N = s.N, a.K = s.K, a.epi = s.epi, a.out = y.get();
        a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4, a.counters = cnt.as<unsigned>();
        a.n_counters = int(cnt.size() / 4), a.impl = impl;
        const int reps = 30;
        for (int i = 0; i < 3; ++i) a.W = Ws[size_t(i % copies)].get(), gemv(a, nullptr);
        CUDA_CHECK(cudaEventRecord(e0));
        for (int i = 0; i < reps; ++i) a.W = Ws[size_t(i % copies)].get(), gemv(a, nullptr);
        CUDA_CHECK(cudaEventRecord(e1));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = ms * 1e3 / reps;
        const double gbs = double(wbytes + size_t(B) * s.K * 2 + size_t(B) * s.N * 4) / (us * 1e-6) / 1e9;
        std::printf("%-12s %6d %6d %2d %-6s %9.1f %8.0f %5.1f%%\n", s.name, s.N, s.K, B,
                    impl == GemvImpl::kSimple ? "simple" : impl == GemvImpl::kBulk ? "bulk" : "tc", us, gbs,
                    100 * gbs / copy);
      }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}
