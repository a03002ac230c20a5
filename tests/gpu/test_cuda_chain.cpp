// The persistent batch-1 decode chain (cuda::decode_chain) against the CPU references of its
// parts (ref::linear, ref::rmsnorm, ref::swiglu): a Llama layer's tail as the model runs it
// (x += Wo . a; ff = swiglu(Wgu . rmsnorm(x)); x += Wd . ff; logits = Wh . rmsnorm(x)), then a
// one-step chain (q/k/v of the next layer), twice in a row, so the grid barrier is reused across
// launches. Shapes: K not a multiple of the 128-value load group, more output rows than warps in
// the grid (several items per warp), SwiGLU pairs. Outputs are poisoned with NaN first.
// Tolerance: bf16 products 1e-2 relative; the fp32 residual stream 1e-3. The blocks' %globaltimer trace
// (ChainArgs::trace) shows that no block starts a step before every block has finished the last one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "cuda/kernels.h"
#include "cuda/ref.h"
#include "gpu_test_util.h"

using namespace ignis;
using namespace ignis::cuda;
using namespace ignis::gputest;

namespace {

// h = bf16(rmsnorm(x) * w), as the chain stages it
std::vector<float> norm_ref(const std::vector<float>& x, const std::vector<float>& w) {
  std::vector<float> xr = x, h(x.size());
  ref::rmsnorm(xr.data(), nullptr, w.data(), h.data(), 1, int(x.size()), 1e-5f);
  round_to(DType::BF16, h);
  return h;
}

std::vector<float> lin_ref(const std::vector<float>& W, const std::vector<float>& in, int N) {
  std::vector<float> y(static_cast<size_t>(N));
  ref::linear(W.data(), in.data(), 1, N, int(in.size()), y.data());
  return y;
}

}  // namespace

// Both engines: registers (0), the bulk-copy ring (1, sm_90), and the ring with a quarter of each step's
// items handed out at run time (2, ChainArgs::ring_tail; the two launch pairs use both counter sets).
class CudaChainEngine : public ::testing::TestWithParam<int> {};

TEST_P(CudaChainEngine, LayerTailMatchesCpuReference) {
  REQUIRE_GPU();
  const bool ring = GetParam() >= 1;
  std::mt19937 rng(5);
  const int D = 1024, QD = 1032, HP = 2752, V = 24000, QKV = 1536;  // V: ~12 ring stages a block
  auto W = [&](int n, int k) {
    std::vector<float> w = random_vec(size_t(n) * k, rng, -0.05f, 0.05f);
    round_to(DType::BF16, w);
    return w;
  };
  const std::vector<float> Wo = W(D, QD), Wgu = W(2 * HP, D), Wd = W(D, HP), Wh = W(V, D), Wqkv = W(QKV, D);
  const std::vector<float> nw1 = random_vec(D, rng, 0.5f, 1.5f), nw2 = random_vec(D, rng, 0.5f, 1.5f);
  std::vector<float> x = random_vec(D, rng, -5.f, 5.f), att = random_vec(QD, rng);
  round_to(DType::BF16, att);

  auto dWo = upload(DType::BF16, Wo), dWgu = upload(DType::BF16, Wgu), dWd = upload(DType::BF16, Wd);
  auto dWh = upload(DType::BF16, Wh), dWqkv = upload(DType::BF16, Wqkv);
  auto dnw1 = upload(DType::F32, nw1), dnw2 = upload(DType::F32, nw2), dx = upload(DType::F32, x);
  auto datt = upload(DType::BF16, att);
  DeviceBuffer dff(size_t(HP) * 2), dlog(size_t(V) * 4), dqkv(size_t(QKV) * 2), bar(8);
  decode_chain_barrier_init(bar.as<unsigned long long>(), nullptr);

  auto step = [](const DeviceBuffer& w, int n, int k, GemvEpilogue epi, void* out, const void* in,
                 const DeviceBuffer* nw) {
    ChainStep s;
    s.W = w.get(), s.N = n, s.K = k, s.epi = epi, s.out = out, s.in = in, s.norm_w = nw ? nw->as<float>() : nullptr;
    return s;
  };
  ChainArgs tail;
  tail.step[0] = step(dWo, D, QD, GemvEpilogue::kAddF32, dx.get(), datt.get(), nullptr);
  tail.step[1] = step(dWgu, 2 * HP, D, GemvEpilogue::kSwiGLU, dff.get(), nullptr, &dnw1);
  tail.step[2] = step(dWd, D, HP, GemvEpilogue::kAddF32, dx.get(), dff.get(), nullptr);
  tail.step[3] = step(dWh, V, D, GemvEpilogue::kStoreF32, dlog.get(), nullptr, &dnw2);
  tail.n_steps = 4, tail.max_k = HP, tail.norm_k = D, tail.x = dx.as<float>(), tail.eps = 1e-5f, tail.barrier = bar.as<unsigned long long>();
  tail.ring = ring;
  DeviceBuffer ctr(kRingCounterWords * 4);
  CUDA_CHECK(cudaMemset(ctr.get(), 0, ctr.size()));
  if (GetParam() == 2) tail.ring_tail = 0.25f, tail.ring_ctr = ctr.as<unsigned>();
  if (ring && !device_has_bulk_copy()) {  // before sm_90: a clear refusal, not a launch
    EXPECT_THROW(decode_chain(tail, nullptr), Error);
    return;
  }
  const int nb = decode_chain_grid(HP, D, ring);
  DeviceBuffer trace(size_t(4) * nb * 2 * 8);
  tail.trace = trace.as<unsigned long long>();  // also checks the barrier: see below
  ChainArgs qkv = tail;
  qkv.trace = nullptr;
  qkv.step[0] = step(dWqkv, QKV, D, GemvEpilogue::kStore, dqkv.get(), nullptr, &dnw2);
  qkv.n_steps = 1;
  std::printf("chain grid: %d blocks\n", nb);

  for (int it = 0; it < 2; ++it) {
    SCOPED_TRACE("launch pair " + std::to_string(it));
    poison(dff), poison(dlog), poison(dqkv);
    decode_chain(tail, nullptr);
    decode_chain(qkv, nullptr);
    // CPU, from the same x
    std::vector<float> xr = x;
    const std::vector<float> o = lin_ref(Wo, att, D);
    for (int i = 0; i < D; ++i) xr[size_t(i)] += o[size_t(i)];
    const std::vector<float> gu = lin_ref(Wgu, norm_ref(xr, nw1), 2 * HP);
    std::vector<float> ff(static_cast<size_t>(HP));
    ref::swiglu(gu.data(), ff.data(), 1, HP);
    const std::vector<float> ff_gpu = download(DType::BF16, dff.get(), size_t(HP));
    EXPECT_LE(rel_err(ff_gpu, ff), 1e-2) << "gate/up + SwiGLU";
    const std::vector<float> dn = lin_ref(Wd, ff_gpu, D);  // from the GPU's bf16 ff: no double rounding
    for (int i = 0; i < D; ++i) xr[size_t(i)] += dn[size_t(i)];
    const std::vector<float> x_gpu = download(DType::F32, dx.get(), size_t(D));
    EXPECT_LE(rel_err(x_gpu, xr), 1e-3) << "residual stream after o and down";
    const std::vector<float> h2 = norm_ref(x_gpu, nw2);
    EXPECT_LE(rel_err(download(DType::F32, dlog.get(), size_t(V)), lin_ref(Wh, h2, V)), 1e-2) << "output head";
    EXPECT_LE(rel_err(download(DType::BF16, dqkv.get(), size_t(QKV)), lin_ref(Wqkv, h2, QKV)), 1e-2) << "q/k/v";
    {  // the grid barrier: no block starts step s + 1 before every block has finished step s
      std::vector<unsigned long long> t(size_t(4) * nb * 2);
      CUDA_CHECK(cudaMemcpy(t.data(), trace.get(), t.size() * 8, cudaMemcpyDeviceToHost));
      for (int s = 0; s + 1 < 4; ++s) {
        unsigned long long last_end = 0, first_next = ~0ull;
        for (int b = 0; b < nb; ++b) {
          EXPECT_LE(t[(size_t(s) * nb + b) * 2], t[(size_t(s) * nb + b) * 2 + 1]) << "step " << s << " block " << b;
          last_end = std::max(last_end, t[(size_t(s) * nb + b) * 2 + 1]);
          first_next = std::min(first_next, t[(size_t(s + 1) * nb + b) * 2]);
        }
        EXPECT_LE(last_end, first_next) << "a block started step " << s + 1 << " before all had finished step " << s;
      }
    }
    unsigned long long count = 0;
    CUDA_CHECK(cudaMemcpy(&count, bar.get(), 8, cudaMemcpyDeviceToHost));
    EXPECT_EQ(count, 3ull * nb * (it + 1)) << "three barriers per tail launch, none in the one-step launch";
    x = x_gpu;
  }
  if (GetParam() == 2) {  // two dynamic launches: epoch 2, both sets zero again (the 1-step launches split statically)
    std::vector<unsigned> c(kRingCounterWords);
    CUDA_CHECK(cudaMemcpy(c.data(), ctr.get(), ctr.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(c[2 * kChainMaxSteps], 2u) << "epoch";
    for (int i = 0; i < kChainMaxSteps; ++i) EXPECT_EQ(c[size_t(i)], 0u) << "set 0, step " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, CudaChainEngine, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(i.param == 0 ? "Registers" : i.param == 1 ? "Ring" : "RingDynamicTail");
                         });

TEST(CudaChain, RejectsBadSteps) {
  REQUIRE_GPU();
  DeviceBuffer w(64 * 16 * 2), out(64 * 4), bar(8);
  ChainArgs a;
  a.n_steps = 1, a.max_k = 16, a.norm_k = 16, a.barrier = bar.as<unsigned long long>();
  a.step[0].W = w.get(), a.step[0].N = 64, a.step[0].K = 12, a.step[0].out = out.get(), a.step[0].in = w.get();
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "K % 8 != 0";
  a.step[0].K = 16, a.step[0].in = nullptr;
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "no input";
  a.step[0].in = w.as<char>() + 2;
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "misaligned input";
  a.step[0].in = w.get(), a.n_steps = 0;
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "no steps";
  a.n_steps = 1, a.barrier = reinterpret_cast<unsigned long long*>(bar.as<char>() + 4);
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "misaligned barrier";
  a.barrier = bar.as<unsigned long long>(), a.ring = true, a.step[0].K = 16392, a.max_k = 16392;
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "ring: a row longer than a stage";
  a.step[0].K = 16, a.step[0].epi = GemvEpilogue::kSwiGLU, a.step[0].N = 64, a.max_k = 8200;
  a.step[0].K = 8200;
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "ring: a gate/up pair longer than a stage";
  a.step[0].epi = GemvEpilogue::kStore, a.step[0].norm_w = out.as<float>(), a.x = out.as<float>(), a.norm_k = 8200;
  EXPECT_THROW(decode_chain(a, nullptr), Error) << "ring: a normed K above kRingMaxNormK";
}

// Timing (run with --gtest_also_run_disabled_tests): a Llama-2-7B layer tail (o, gate/up, down,
// next q/k/v) as one 4-step chain, each step alone as a 1-step chain, and the separate kernels
// (gemv + rmsnorm) the model runs without the chain; microseconds per launch sequence and GB/s of
// weights. Weights are 3 copies of the layer so the L2 (60 MB) never holds them.
TEST(CudaChain, DISABLED_LayerTailTiming) {
  REQUIRE_GPU();
  const bool ring = std::getenv("IGNIS_CHAIN_RING") && std::string(std::getenv("IGNIS_CHAIN_RING")) == "1";
  const float ring_tail = std::getenv("IGNIS_RING_TAIL") ? float(std::atof(std::getenv("IGNIS_RING_TAIL"))) : 0.f;
  DeviceBuffer ctr(kRingCounterWords * 4);
  CUDA_CHECK(cudaMemset(ctr.get(), 0, ctr.size()));
  std::printf("engine: %s, dynamic tail %.2f\n", ring ? "ring (bulk copies)" : "registers", ring_tail);
  const int D = 4096, HP = 11008, QKV = 12288, kCopies = 3;
  const size_t per = (size_t(D) * D + size_t(2 * HP) * D + size_t(D) * HP + size_t(QKV) * D);
  DeviceBuffer w(per * 2 * kCopies), x(D * 4), att(D * 2), ff(HP * 2), qkv(QKV * 2), nw(D * 4), h(D * 2), bar(8);
  CUDA_CHECK(cudaMemset(w.get(), 0, w.size()));  // zeros: timing only
  CUDA_CHECK(cudaMemset(x.get(), 0, x.size()));
  CUDA_CHECK(cudaMemset(nw.get(), 0, nw.size()));
  CUDA_CHECK(cudaMemset(att.get(), 0, att.size()));
  CUDA_CHECK(cudaMemset(ff.get(), 0, ff.size()));
  decode_chain_barrier_init(bar.as<unsigned long long>(), nullptr);
  struct Mats { const void *o, *gu, *dn, *qkv; };
  auto mats = [&](int c) {
    const char* b = w.as<char>() + size_t(c) * per * 2;
    Mats m;
    m.o = b, m.gu = b + size_t(D) * D * 2, m.dn = b + (size_t(D) * D + size_t(2 * HP) * D) * 2;
    m.qkv = b + (size_t(D) * D + size_t(2 * HP) * D + size_t(D) * HP) * 2;
    return m;
  };
  auto step = [](const void* W, int n, int k, GemvEpilogue epi, void* out, const void* in, const float* nw_) {
    ChainStep s;
    s.W = W, s.N = n, s.K = k, s.epi = epi, s.out = out, s.in = in, s.norm_w = nw_;
    return s;
  };
  auto steps = [&](int c) {
    const Mats m = mats(c);
    std::vector<ChainStep> v = {step(m.o, D, D, GemvEpilogue::kAddF32, x.get(), att.get(), nullptr),
                                step(m.gu, 2 * HP, D, GemvEpilogue::kSwiGLU, ff.get(), nullptr, nw.as<float>()),
                                step(m.dn, D, HP, GemvEpilogue::kAddF32, x.get(), ff.get(), nullptr),
                                step(m.qkv, QKV, D, GemvEpilogue::kStore, qkv.get(), nullptr, nw.as<float>())};
    return v;
  };
  const double bytes_step[4] = {double(D) * D * 2, double(2 * HP) * D * 2, double(D) * HP * 2, double(QKV) * D * 2};
  auto chain = [&](int c, int first, int n) {
    ChainArgs a;
    const auto v = steps(c);
    for (int i = 0; i < n; ++i) a.step[i] = v[size_t(first + i)];
    a.n_steps = n, a.max_k = HP, a.norm_k = D, a.x = x.as<float>(), a.eps = 1e-5f, a.barrier = bar.as<unsigned long long>();
    a.ring = ring;
    if (ring_tail > 0.f) a.ring_tail = ring_tail, a.ring_ctr = ctr.as<unsigned>();
    decode_chain(a, nullptr);
  };
  auto separate = [&](int c, int first, int n) {
    const auto v = steps(c);
    for (int i = first; i < first + n; ++i) {
      const ChainStep& s = v[size_t(i)];
      GemvArgs g;
      g.W = s.W, g.N = s.N, g.K = s.K, g.epi = s.epi, g.out = s.out, g.x = s.in;
      if (s.norm_w) {
        rmsnorm(DType::BF16, x.as<float>(), nullptr, s.norm_w, h.get(), 1, D, 1e-5f, nullptr);
        g.x = h.get();
      }
      gemv(g, nullptr);
    }
  };
  auto time_us = [&](const std::function<void(int)>& f) {
    for (int i = 0; i < 3; ++i) f(i % kCopies);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    const int reps = 60;
    CUDA_CHECK(cudaEventRecord(e0));
    for (int i = 0; i < reps; ++i) f(i % kCopies);
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return 1e3 * ms / reps;
  };
  const char* names[4] = {"o      ", "gate/up", "down   ", "q/k/v  "};
  std::printf("chain grid: %d blocks\n%-22s %10s %10s %10s %10s\n", decode_chain_grid(HP, D, ring), "", "chain us", "GB/s",
              "separate", "GB/s");
  for (int i = 0; i < 4; ++i) {
    const double tc = time_us([&](int c) { chain(c, i, 1); }), ts = time_us([&](int c) { separate(c, i, 1); });
    std::printf("%-22s %10.2f %10.0f %10.2f %10.0f\n", names[i], tc, bytes_step[i] / tc * 1e-3, ts,
                bytes_step[i] / ts * 1e-3);
  }
  const double all = bytes_step[0] + bytes_step[1] + bytes_step[2] + bytes_step[3];
  const double tc = time_us([&](int c) { chain(c, 0, 4); }), ts = time_us([&](int c) { separate(c, 0, 4); });
  std::printf("%-22s %10.2f %10.0f %10.2f %10.0f\n", "layer tail (4 steps)", tc, all / tc * 1e-3, ts, all / ts * 1e-3);

  // Where a traced 4-step launch spends its time: per step, when the blocks start (input staged)
  // and finish, relative to the first block's start of that step (us): is the tail skew between blocks?
  const int nb = decode_chain_grid(HP, D, ring);
  DeviceBuffer tr(size_t(4) * nb * 2 * 8);
  {
    ChainArgs a;
    const auto v = steps(0);
    for (int i = 0; i < 4; ++i) a.step[i] = v[size_t(i)];
    a.n_steps = 4, a.max_k = HP, a.norm_k = D, a.x = x.as<float>(), a.eps = 1e-5f, a.barrier = bar.as<unsigned long long>();
    a.trace = tr.as<unsigned long long>();
    a.ring = ring;
    if (ring_tail > 0.f) a.ring_tail = ring_tail, a.ring_ctr = ctr.as<unsigned>();
    for (int rep = 0; rep < 3; ++rep) decode_chain(a, nullptr);  // the last one is read
  }
  std::vector<unsigned long long> t(size_t(4) * nb * 2);
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(t.data(), tr.get(), t.size() * 8, cudaMemcpyDeviceToHost));
  std::printf("\n%-8s %12s %12s %12s %12s %12s\n", "step", "start max", "end min", "end median", "end max",
              "next start");
  for (int s = 0; s < 4; ++s) {
    std::vector<double> st, en;
    for (int b = 0; b < nb; ++b) {
      st.push_back(double(t[(size_t(s) * nb + b) * 2]));
      en.push_back(double(t[(size_t(s) * nb + b) * 2 + 1]));
    }
    const double t0 = *std::min_element(st.begin(), st.end());
    std::sort(en.begin(), en.end());
    double next = 0;
    if (s + 1 < 4) {
      next = 1e300;
      for (int b = 0; b < nb; ++b) next = std::min(next, double(t[(size_t(s + 1) * nb + b) * 2]));
    }
    std::printf("%-8s %12.2f %12.2f %12.2f %12.2f %12.2f\n", names[s], (*std::max_element(st.begin(), st.end()) - t0) * 1e-3,
                (en.front() - t0) * 1e-3, (en[en.size() / 2] - t0) * 1e-3, (en.back() - t0) * 1e-3,
                s + 1 < 4 ? (next - t0) * 1e-3 : 0.0);
  }
}
