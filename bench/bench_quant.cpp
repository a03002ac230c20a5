// Matmul speed of the quantized CPU kernels (src/ops/quant.h) on SmolLM2-135M's shapes.
//
//   ./ignis_bench --benchmark_filter='Quant'
//
// BM_QuantMatmul/<type>/<N>/<K>/<M>: y[M,N] = x[M,K] W[N,K]^T on the default pool (all
// cores). Counters: GFLOP/s (2*M*N*K per call) and GB/s (weight bytes read per call; the
// figure that bounds decode, M = 1).
// BM_QuantSmolLM2/<M>: every matmul of one SmolLM2-135M forward pass (30 layers: q, k, v,
// o, gate, up, down in Q4_1 with distinct weights, so the 66 MB of layers stream from memory
// as in the real model, plus the 49152 x 576 Q8_0 tied head for the last row only), for M
// tokens at once. tok/s counts only these matmuls: an upper bound for the whole model.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/half.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "ops/quant.h"

using namespace ignis;

namespace {

// IGNIS_BENCH_THREADS=n overrides the thread count (default: all cores).
ThreadPool& pool() {
  static ThreadPool p(std::getenv("IGNIS_BENCH_THREADS") ? std::atoi(std::getenv("IGNIS_BENCH_THREADS")) : 0);
  return p;
}

// Random but valid blocks: random bytes, then every fp16 scale field set to a small
// finite value (a random fp16 could be inf / NaN).
Tensor random_weight(DType t, int64_t N, int64_t K, uint32_t seed) {
  Tensor W = Tensor::empty({N, K}, t);
  std::mt19937 rng(seed);
  auto* p = W.ptr<uint8_t>();
  const size_t bytes = W.nbytes();
  for (size_t i = 0; i + 4 <= bytes; i += 4) {
    const uint32_t r = rng();
    std::memcpy(p + i, &r, 4);
  }
  const auto& info = dtype_info(t);
  const uint16_t small = f32_to_f16(0.01f);
  auto set16 = [&](uint8_t* at) { std::memcpy(at, &small, 2); };
  for (size_t b = 0; b < bytes / info.block_bytes; ++b) {
    uint8_t* blk = p + b * info.block_bytes;
    switch (t) {
      case DType::Q4_1: case DType::Q5_1: case DType::Q8_1: set16(blk); set16(blk + 2); break;
      case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: set16(blk); break;
      case DType::Q4_K: case DType::Q5_K: set16(blk); set16(blk + 2); break;
      case DType::Q2_K: set16(blk + 80); set16(blk + 82); break;
      case DType::Q3_K: set16(blk + 108); break;
      case DType::Q6_K: set16(blk + 208); break;
      default: break;
    }
  }
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    std::vector<float> row(static_cast<size_t>(K));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int64_t r = 0; r < N; ++r) {
      for (auto& v : row) v = u(rng);
      quant::quantize_row(t, row.data(), W.row<uint8_t>(r), K);
    }
  }
  return W;
}

Tensor random_input(int64_t M, int64_t K) {
  Tensor x = Tensor::empty({M, K});
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int64_t i = 0; i < M * K; ++i) x.ptr<float>()[i] = u(rng);
  return x;
}

// The machine these run on is shared: with --benchmark_repetitions=N the "_min" rows
// (fastest repetition) are the ones to compare.
double min_of(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

const DType kTypes[] = {DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16};

void BM_QuantMatmul(benchmark::State& st) {
  const DType t = kTypes[st.range(0)];
  const int64_t N = st.range(1), K = st.range(2), M = st.range(3);
  const Tensor W = random_weight(t, N, K, 1);
  const Tensor x = random_input(M, K);
  Tensor y = Tensor::empty({M, N});
  for (auto _ : st) {
    quant::matmul(pool(), W, x, y);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.SetLabel(std::string(dtype_name(t)) + (quant::using_avx2() ? " avx2" : " scalar"));
  const double it = double(st.iterations());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(M * N * K) * it * 1e-9, benchmark::Counter::kIsRate);
  st.counters["GB/s"] = benchmark::Counter(double(W.nbytes()) * it * 1e-9, benchmark::Counter::kIsRate);
}

void MatmulArgs(benchmark::internal::Benchmark* b) {
  const int64_t shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
  for (int64_t ti = 0; ti < int64_t(std::size(kTypes)); ++ti)
    for (const auto& s : shapes) {
      if (s[0] == 49152 && kTypes[ti] != DType::Q8_0) continue;  // the head is Q8_0
      if (s[1] % dtype_info(kTypes[ti]).block_size) continue;      // K-quants need K % 256 == 0
      for (int64_t M : {1, 64, 128}) {
        if (s[0] == 49152 && M > 1) continue;
        b->Args({ti, s[0], s[1], M});
      }
    }
  b->ArgNames({"type", "N", "K", "M"});
  b->Unit(benchmark::kMicrosecond);
  b->UseRealTime();
  b->ComputeStatistics("min", min_of);
}
BENCHMARK(BM_QuantMatmul)->Apply(MatmulArgs);

// One forward pass' matmuls of SmolLM2-135M (dim 576, 9 heads of 64, 3 KV heads, FFN 1536,
// 30 layers, vocab 49152).
struct SmolLM2Weights {
  static constexpr int kLayers = 30;
  std::vector<Tensor> w;  // per layer: q, k, v, o, gate, up, down
  Tensor head;
  SmolLM2Weights() {
    const int64_t shapes[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576},
                                  {1536, 576}, {1536, 576}, {576, 1536}};
    for (int l = 0; l < kLayers; ++l)
      for (int i = 0; i < 7; ++i)
        w.push_back(quant::prepare_cpu_weight(random_weight(DType::Q4_1, shapes[i][0], shapes[i][1], uint32_t(l * 7 + i))));
    // as the model runs them: repacked (x8) where that is the faster path (IGNIS_NO_REPACK=1: as in the file)
    head = quant::prepare_cpu_weight(random_weight(DType::Q8_0, 49152, 576, 999));
  }
};

void BM_QuantSmolLM2(benchmark::State& st) {
  static SmolLM2Weights model;
  const int64_t M = st.range(0);
  const Tensor x576 = random_input(M, 576), x1536 = random_input(M, 1536), last = random_input(1, 576);
  Tensor y576 = Tensor::empty({M, 576}), y192 = Tensor::empty({M, 192}), y1536 = Tensor::empty({M, 1536});
  Tensor logits = Tensor::empty({1, 49152});
  for (auto _ : st) {
    for (int l = 0; l < SmolLM2Weights::kLayers; ++l) {
      const Tensor* w = &model.w[size_t(l) * 7];
      quant::matmul(pool(), w[0], x576, y576);
      quant::matmul(pool(), w[1], x576, y192);
      quant::matmul(pool(), w[2], x576, y192);
      quant::matmul(pool(), w[3], x576, y576);
      quant::matmul(pool(), w[4], x576, y1536);
      quant::matmul(pool(), w[5], x576, y1536);
      quant::matmul(pool(), w[6], x1536, y576);
    }
    quant::matmul(pool(), model.head, last, logits);
    benchmark::ClobberMemory();
  }
  const double it = double(st.iterations());
  st.counters["tok/s"] = benchmark::Counter(double(M) * it, benchmark::Counter::kIsRate);
  const double macs = 30.0 * (576 * 576 * 2 + 192 * 576 * 2 + 1536 * 576 * 3) * double(M) + 49152.0 * 576;
  st.counters["GFLOP/s"] = benchmark::Counter(2 * macs * it * 1e-9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QuantSmolLM2)
    ->Arg(1)
    ->Arg(64)
    ->Arg(128)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->ComputeStatistics("min", min_of);

}  // namespace
