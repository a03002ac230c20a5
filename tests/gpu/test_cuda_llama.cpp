// Model-level tests of the CUDA Llama backend:
//  - stories260K (a real tiny llama2.c model): CUDA fp32 logits == CPU logits (1e-4 relative),
//    prefill and decode; bf16 greedy generation == CPU greedy generation for 20 tokens;
//  - synthetic models: batched decode == one-sequence decode, graphs == eager, GPU sampling.
//  - GGUF block weights run in place on the GPU (gemv_quant for decode, dequantized tiles for
//    prefill): a small llama built in memory with a different block type per tensor (Q4_K, Q5_K,
//    Q6_K, Q4_1, Q8_0, Q4_0, mixed q/k/v, mismatched gate/up, an F16 tensor) == the CPU model on the
//    same weights dequantized to f32 (bf16 tolerance), == the GPU's old dequantize-at-load path;
//    stories260K with load-time --quant int8 / int4 (Q8_0 / Q4_0 blocks): greedy tokens == CPU.
//  - DISABLED_Benchmark: the standard benchmark (run with --gtest_also_run_disabled_tests).
// The data folder is $IGNIS_DATA, or IGNIS_SOURCE_DIR/../shared/data. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "cuda/bench.h"
#include "cuda/common.h"
#include "cuda/llama_cuda.h"
#include "gpu_test_util.h"
#include "core/half.h"
#include "io/model_source.h"
#include "models/llama.h"
#include "ops/quant.h"
#include "quant/model_quant.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;
using namespace ignis::gputest;

namespace {

std::string stories_path() { return data_dir() + "/stories260K.bin"; }

#define REQUIRE_STORIES()                                                                          \
  do {                                                                                             \
    if (!std::filesystem::exists(stories_path())) GTEST_SKIP() << "no " << stories_path() << " (set IGNIS_DATA)"; \
  } while (0)

ModelSource open_stories() { return open_model(stories_path(), data_dir() + "/tok512.bin"); }

double rel(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378, 434, 500, 321, 272, 385, 263, 302, 281, 409};

// A 3-layer llama (dim 256, 4 heads of 64, 2 KV heads, hidden 512, vocab 384) with random weights
// stored in a different GGUF type per tensor, quantized by the CPU quantizers (ops/quant.h):
//   layer 0: q, k Q4_K, v Q6_K (three q/k/v weights), o Q5_K, gate/up Q4_1 (fused), down Q6_K;
//   layer 1: q/k/v Q8_0 (fused), o Q4_0, gate/up Q5_K, down Q4_K;
//   layer 2: q/k/v Q6_K, o F16 (bf16 path), gate Q4_K + up Q6_K (mismatch: bf16), down Q5_K;
//   token_embd Q8_0 (dequantized to bf16 on the GPU), output Q6_K, norms F32.
// Same seed, same model. 19 of its linear weights can stay quantized on the GPU.
constexpr int kGgufTypedQuantWeights = 19;
ModelSource make_gguf_typed_llama(uint64_t seed) {
  ModelSource src;
  src.path = "(in-memory GGUF-typed llama)";
  src.format = "gguf";
  LlamaConfig& c = src.config;
  c.name = "gguf-typed test llama";
  c.n_layers = 3, c.dim = 256, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 64, c.rope_dim = 64;
  c.hidden_dim = 512, c.vocab_size = 384, c.max_seq_len = 256, c.rope_style = RopeStyle::kInterleaved;
  std::mt19937 rng{uint32_t(seed)};
  auto mat = [&](const std::string& name, DType t, int64_t N, int64_t K, float scale) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> row(static_cast<size_t>(K));
    Tensor w = Tensor::empty({N, K}, t);
    for (int64_t n = 0; n < N; ++n) {
      for (auto& v : row) v = u(rng);
      quant::quantize_row(t, row.data(), w.row<uint8_t>(n), K);
    }
    src.weights[name] = std::move(w);
  };
  auto lin = [&](const std::string& name, DType t, int64_t N, int64_t K) { mat(name, t, N, K, std::sqrt(3.f / float(K))); };
  auto norm = [&](const std::string& name) {
    std::uniform_real_distribution<float> u(0.8f, 1.2f);
    Tensor w = Tensor::empty({int64_t(c.dim)}, DType::F32);
    for (int64_t i = 0; i < c.dim; ++i) w.ptr<float>()[i] = u(rng);
    src.weights[name] = std::move(w);
  };
  const int64_t d = c.dim, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim, h = c.hidden_dim;
  const DType types[3][7] = {
      {DType::Q4_K, DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::Q4_1, DType::Q4_1, DType::Q6_K},
      {DType::Q8_0, DType::Q8_0, DType::Q8_0, DType::Q4_0, DType::Q5_K, DType::Q5_K, DType::Q4_K},
      {DType::Q6_K, DType::Q6_K, DType::Q6_K, DType::F16, DType::Q4_K, DType::Q6_K, DType::Q5_K}};
  mat("token_embd.weight", DType::Q8_0, c.vocab_size, d, 1.f);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const DType* t = types[l];
    norm(p + "attn_norm.weight");
    norm(p + "ffn_norm.weight");
    lin(p + "attn_q.weight", t[0], qd, d);
    lin(p + "attn_k.weight", t[1], kvd, d);
    lin(p + "attn_v.weight", t[2], kvd, d);
    lin(p + "attn_output.weight", t[3], d, qd);
    lin(p + "ffn_gate.weight", t[4], h, d);
    lin(p + "ffn_up.weight", t[5], h, d);
    lin(p + "ffn_down.weight", t[6], d, h);
  }
  norm("output_norm.weight");
  lin("output.weight", DType::Q6_K, c.vocab_size, d);
  c.validate(src.path);
  return src;
}

// The largest logit's index of a, accepted when b (the reference) rates it within a small margin
// of b's own best (random-weight models have near ties that bf16 noise may flip).
bool same_choice(const float* a, const float* b, int n) {
  const int ia = argmax(a, n), ib = argmax(b, n);
  if (ia == ib) return true;
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(b[i]) * b[i];
  return b[ib] - b[ia] <= 0.05 * std::sqrt(ss / n);
}

// Batch-1 decode of two synthetic SmolLM2-135M models with the same weights (seed) and options a / b:
// a 40-token prompt (token i = (i * 104729 + salt) % V) through prefill, then 8 decode steps fed a's
// greedy token; b's logits stay finite and within 1e-2 (relative) of a's at every step.
void expect_b1_decode_agrees(const CudaOptions& oa, const CudaOptions& ob, uint64_t seed, int salt) {
  auto a = make_synthetic_cuda_llama("smollm2-135m", oa, seed);
  auto f = make_synthetic_cuda_llama("smollm2-135m", ob, seed);
  const int V = a->config().vocab_size, P = 40;
  std::vector<int32_t> prompt;
  for (int i = 0; i < P; ++i) prompt.push_back((i * 104729 + salt) % V);
  int32_t next = argmax(a->forward_slot(0, prompt.data(), P, 0), V);
  f->forward_slot(0, prompt.data(), P, 0);
  for (int step = 0; step < 8; ++step) {
    const float* la = a->decode_batch(&next, 1, P + step);
    std::vector<float> ya(la, la + V);
    const float* lf = f->decode_batch(&next, 1, P + step);
    std::vector<float> yf(lf, lf + V);
    for (float y : yf) ASSERT_TRUE(std::isfinite(y));
    EXPECT_LE(rel(yf.data(), ya.data(), ya.size()), 1e-2) << "step " << step;
    next = argmax(ya.data(), V);
  }
}

}  // namespace

TEST(CudaLlama, Stories260KFp32MatchesCpu) {
  REQUIRE_GPU();
  REQUIRE_STORIES();
  ModelSource src = open_stories();
  auto cpu = make_cpu_llama(src);
  CudaOptions opt;
  opt.dtype = DType::F32;
  opt.prefill_chunk = 8;  // several chunks for the prompt
  auto gpu = make_cuda_llama(src, opt);
  const int V = src.config.vocab_size, n = int(kPrompt.size());
  std::printf("backend: %s, warm-up %.3f s\n", gpu->backend().c_str(), gpu->warmup_seconds());

  // every position of the prompt (chunked prefill)
  const std::vector<float> want = cpu->forward_all(kPrompt.data(), n, 0);
  const std::vector<float> got = gpu->forward_all(kPrompt.data(), n, 0);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(rel(got.data(), want.data(), got.size()), 1e-4);

  // last-token logits of a prefill, then decode steps through the captured graph
  const float* lc = cpu->forward(kPrompt.data(), n, 0);
  std::vector<float> cpu_logits(lc, lc + V);
  const float* lg = gpu->forward(kPrompt.data(), n, 0);
  EXPECT_LE(rel(lg, cpu_logits.data(), size_t(V)), 1e-4);
  int32_t tok = argmax(cpu_logits.data(), V);
  for (int step = 0; step < 10; ++step) {
    const int pos = n + step;
    const float* c = cpu->forward(&tok, 1, pos);
    std::vector<float> cv(c, c + V);
    const float* g = gpu->forward(&tok, 1, pos);
    EXPECT_LE(rel(g, cv.data(), size_t(V)), 1e-4) << "decode step " << step;
    tok = argmax(cv.data(), V);
  }
}

// The GPU's greedy tokens (sampled on the GPU, graph-replayed decode) == the CPU's for 20 steps after
// kPrompt, and the GPU's prompt logits within bf16 tolerance of the CPU's.
static void expect_greedy_matches(LlamaModel& cpu, CudaLlama& gpu, int V) {
  const int n = int(kPrompt.size());
  std::vector<int32_t> cpu_toks, gpu_toks;
  int32_t t = argmax(cpu.forward(kPrompt.data(), n, 0), V);
  for (int i = 0; i < 20; ++i) {
    cpu_toks.push_back(t);
    t = argmax(cpu.forward(&t, 1, n + i), V);
  }
  SamplingParams greedy;
  int32_t g = gpu.prefill_sample(0, kPrompt.data(), n, 0, greedy);
  for (int i = 0; i < 20; ++i) {
    gpu_toks.push_back(g);
    g = gpu.decode_sample(g, n + i, greedy);
  }
  EXPECT_EQ(gpu_toks, cpu_toks);
  const float* lc = cpu.forward(kPrompt.data(), n, 0);
  std::vector<float> cv(lc, lc + V);
  EXPECT_LE(rel(gpu.forward(kPrompt.data(), n, 0), cv.data(), size_t(V)), 5e-2);
}

TEST(CudaLlama, Stories260KBf16GreedyMatchesCpu) {
  REQUIRE_GPU();
  REQUIRE_STORIES();
  ModelSource src = open_stories();
  auto cpu = make_cpu_llama(src);
  auto gpu = make_cuda_llama(src, CudaOptions{});
  expect_greedy_matches(*cpu, *gpu, src.config.vocab_size);
}

TEST(CudaLlama, SyntheticBatchedDecodeMatchesSingle) {
  REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    CudaOptions opt;
    opt.dtype = dt, opt.max_batch = 5, opt.context = 256, opt.prefill_chunk = 64;
    auto m = make_synthetic_cuda_llama("smollm2-135m", opt, 3);
    const int V = m->config().vocab_size, B = 5, P = 37;
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < P; ++i) prompts[size_t(b)].push_back((b * 7919 + i * 104729) % V);
    std::vector<int32_t> next(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b) next[size_t(b)] = argmax(m->forward_slot(b, prompts[size_t(b)].data(), P, 0), V);
    const float* lb = m->decode_batch(next.data(), B, P);
    std::vector<float> batched(lb, lb + size_t(B) * V);
    for (float v : batched) ASSERT_TRUE(std::isfinite(v));
    // the same step one sequence at a time (slot 0 through the decode graph, others through prefill)
    for (int b = 0; b < B; ++b) {
      const float* l1 = m->forward_slot(b, &next[size_t(b)], 1, P);
      EXPECT_LE(rel(batched.data() + size_t(b) * V, l1, size_t(V)), dt == DType::BF16 ? 2e-2 : 1e-4) << "seq " << b;
    }
  }
}

// Weight-only quantized synthetic models (int8 / int4, and random GGUF blocks of the 32-value types:
// the K-quants need inputs that are multiples of 256, which smollm2's 576 is not): the batched decode
// (fused dequantize-and-multiply GEMVs) against the same step through the prefill path of slots 1..
// (bf16 tiles dequantized into cuBLASLt): two independent implementations of the same products.
TEST(CudaLlama, QuantizedDecodeMatchesPrefillPath) {
  REQUIRE_GPU();
  for (const char* q : {"int8", "int4", "q8_0", "q4_0", "q4_1"}) {
    SCOPED_TRACE(q);
    CudaOptions opt;
    opt.max_batch = 3, opt.context = 128, opt.prefill_chunk = 64, opt.quant = q;
    opt.quant_group = 64;  // smollm2's 576 inputs are 9 groups of 64
    auto m = make_synthetic_cuda_llama("smollm2-135m", opt, 9);
    const std::string qs = q;
    // bytes per step against bf16's 2 bytes per parameter (the GGUF models keep the tied head in bf16)
    const double f = qs == "int8" ? 0.6 : qs == "int4" ? 0.35 : 0.7;
    EXPECT_LT(double(m->weight_bytes_per_step()), 2 * 135e6 * f);
    EXPECT_GT(m->quantized_linear_weights(), 0);
    const int V = m->config().vocab_size, B = 3, P = 21;
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < P; ++i) prompts[size_t(b)].push_back((b * 7919 + i * 104729) % V);
    std::vector<int32_t> next(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b) next[size_t(b)] = argmax(m->forward_slot(b, prompts[size_t(b)].data(), P, 0), V);
    const float* lb = m->decode_batch(next.data(), B, P);
    std::vector<float> batched(lb, lb + size_t(B) * V);
    for (float v : batched) ASSERT_TRUE(std::isfinite(v));
    for (int b = 1; b < B; ++b) {
      const float* l1 = m->forward_slot(b, &next[size_t(b)], 1, P);
      EXPECT_LE(rel(batched.data() + size_t(b) * V, l1, size_t(V)), 2e-2) << "seq " << b;
    }
  }
  CudaOptions bad;
  bad.quant = "int4", bad.quant_group = 128;  // 576 is not a multiple of 128: a clear error
  EXPECT_THROW(make_synthetic_cuda_llama("smollm2-135m", bad, 1), Error);
  bad.quant = "q4_k";  // 576 is not a multiple of 256
  EXPECT_THROW(make_synthetic_cuda_llama("smollm2-135m", bad, 1), Error);
  bad.quant = "q3_k";  // no such type
  EXPECT_THROW(make_synthetic_cuda_llama("smollm2-135m", bad, 1), Error);
}

// The decode fusions against the separate kernels: CudaOptions::fused_rope (RoPE and the KV-cache
// write inside the decode attention), fused_norm 1, 2 (RMSNorm inside the GEMVs) and norm_fold (the
// RMSNorm folded into the GEMVs around it, batch 1). The same
// decode steps (batch 2 or 1, GQA, positions that cross key tiles), each variant's cache feeding its
// own later steps.
TEST(CudaLlama, DecodeFusionsMatchSeparateKernels) {
  REQUIRE_GPU();
  struct Variant { const char* name; bool rope; int norm; int B; bool fold; };
  for (DType dt : {DType::F32, DType::BF16})
    for (const Variant v : {Variant{"fused rope", true, 0, 2, false}, Variant{"fused norm 1", false, 1, 2, false},
                            Variant{"fused norm 2", false, 2, 2, false}, Variant{"rope + norm 2", true, 2, 1, false},
                            Variant{"folded norm", false, 0, 1, true}, Variant{"rope + folded norm", true, 0, 1, true}}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + v.name);
      CudaOptions base;
      base.dtype = dt, base.max_batch = 2, base.context = 160, base.prefill_chunk = 64, base.fused_norm = 0;
      base.fused_rope = 0, base.norm_fold = 0;
      CudaOptions fused = base;
      fused.fused_rope = v.rope ? 1 : 0, fused.fused_norm = v.norm, fused.norm_fold = v.fold ? 1 : 0;
      auto a = make_synthetic_cuda_llama("smollm2-135m", base, 11);
      auto f = make_synthetic_cuda_llama("smollm2-135m", fused, 11);
      const int V = a->config().vocab_size, B = v.B, P = 60;
      std::vector<int32_t> next(static_cast<size_t>(B));
      for (int b = 0; b < B; ++b) {
        std::vector<int32_t> prompt;
        for (int i = 0; i < P; ++i) prompt.push_back((b * 7919 + i * 104729) % V);
        next[size_t(b)] = argmax(a->forward_slot(b, prompt.data(), P, 0), V);
        f->forward_slot(b, prompt.data(), P, 0);
      }
      for (int step = 0; step < 8; ++step) {  // positions 60..67: key tile 64 is crossed
        const float* la = a->decode_batch(next.data(), B, P + step);
        std::vector<float> ya(la, la + size_t(B) * V);
        const float* lf = f->decode_batch(next.data(), B, P + step);
        std::vector<float> yf(lf, lf + size_t(B) * V);
        for (float y : yf) ASSERT_TRUE(std::isfinite(y));
        EXPECT_LE(rel(yf.data(), ya.data(), ya.size()), dt == DType::BF16 ? 1e-2 : 1e-5) << "step " << step;
        for (int b = 0; b < B; ++b) next[size_t(b)] = argmax(ya.data() + size_t(b) * V, V);
      }
    }
}

// The folded RMSNorm on quantized synthetic models (batch 1): int4 (the CUDA-core kernel: smollm2's
// 576 inputs are not a multiple of the tensor-core kernel's 128) and Q4_0 with the tied bf16 head
// (a bf16 consumer of a quantized producer's partials), against the same model with the RMSNorm
// kernels, 8 decode steps from a 40-token prompt.
TEST(CudaLlama, FoldedNormQuantizedMatches) {
  REQUIRE_GPU();
  for (const char* q : {"int4", "q4_0"}) {
    SCOPED_TRACE(q);
    CudaOptions base;
    base.max_batch = 1, base.context = 128, base.prefill_chunk = 64, base.quant = q, base.quant_group = 64;
    base.norm_fold = 0;
    CudaOptions fold = base;
    fold.norm_fold = 1;
    expect_b1_decode_agrees(base, fold, 5, 3);
  }
}

// Batch-1 decode through the persistent chain kernel (CudaOptions::decode_chain) == the separate
// kernels, graphs and eager, on a synthetic SmolLM2-135M shape (GQA, 30 layers) and on stories260K
// (tiny dims: 64-wide, hidden 172 padded to 176).
// Both engines: 1 = registers, 2 = the bulk-copy ring (ChainArgs::ring), 3 = the ring with a dynamic
// tail (ChainArgs::ring_tail 0.3: the counter sets flip over the 30 layers' launches of every step).
TEST(CudaLlama, DecodeChainMatchesSeparateKernels) {
  REQUIRE_GPU();
  for (int engine : {1, 2, 3})
    for (bool graphs : {true, false}) {
      SCOPED_TRACE(std::string(engine == 1 ? "registers, " : engine == 2 ? "ring, " : "ring + tail, ") +
                   (graphs ? "graphs" : "eager"));
      CudaOptions base;
      base.max_batch = 1, base.context = 160, base.prefill_chunk = 64, base.cuda_graphs = graphs;
      base.decode_chain = 0;
      CudaOptions chain = base;
      chain.decode_chain = engine == 1 ? 1 : 2;
      if (engine == 3) chain.ring_tail = 0.3f;
      expect_b1_decode_agrees(base, chain, 13, 17);
    }
  REQUIRE_STORIES();
  ModelSource src = open_stories();
  auto cpu = make_cpu_llama(src);
  for (int engine : {1, 2}) {
    CudaOptions o;
    o.decode_chain = engine;
    auto gpu = make_cuda_llama(src, o);
    SCOPED_TRACE(engine == 2 ? "stories260K greedy, ring chain" : "stories260K greedy, chain");
    expect_greedy_matches(*cpu, *gpu, src.config.vocab_size);
  }
}

TEST(CudaLlama, GraphsMatchEagerAndSamplingWorks) {
  REQUIRE_GPU();
  CudaOptions with, without;
  with.max_batch = without.max_batch = 2;
  with.context = without.context = 128;
  without.cuda_graphs = false;
  auto a = make_synthetic_cuda_llama("smollm2-135m", with, 5);
  auto b = make_synthetic_cuda_llama("smollm2-135m", without, 5);
  const int V = a->config().vocab_size;
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  a->forward(prompt.data(), int(prompt.size()), 0);
  b->forward(prompt.data(), int(prompt.size()), 0);
  int32_t t = 11;
  for (int step = 0; step < 5; ++step) {
    const float* la = a->forward(&t, 1, 9 + step);
    std::vector<float> va(la, la + V);
    const float* lb = b->forward(&t, 1, 9 + step);
    EXPECT_LE(rel(va.data(), lb, size_t(V)), 1e-6) << "step " << step;
    // GPU greedy and top-k = 1 pick the host argmax
    EXPECT_EQ(a->decode_sample(t, 9 + step, SamplingParams{}), argmax(va.data(), V));
    SamplingParams k1;
    k1.temperature = 0.8f, k1.top_k = 1, k1.seed = 7;
    EXPECT_EQ(a->decode_sample(t, 9 + step, k1), argmax(va.data(), V));
    t = argmax(va.data(), V);
  }
  SamplingParams sp;
  sp.temperature = 1.0f, sp.top_p = 0.9f, sp.top_k = 40, sp.seed = 42;
  for (int i = 0; i < 10; ++i) {
    const int32_t s = a->decode_sample(t, 20 + i, sp);
    EXPECT_TRUE(s >= 0 && s < V);
    t = s;
  }
  EXPECT_THROW(a->forward(&t, 1, 128), Error);  // past the context
}

// The standard benchmark; prints a table and JSON. Model from IGNIS_BENCH_MODEL (default
// llama-2-7b), batches from IGNIS_BENCH_BATCHES ("1,8").
TEST(CudaLlama, DISABLED_Benchmark) {
  REQUIRE_GPU();
  const char* e = std::getenv("IGNIS_BENCH_MODEL");
  const std::string shape = e && *e ? e : "llama-2-7b";
  BenchOptions bo;
  if (const char* bs = std::getenv("IGNIS_BENCH_BATCHES")) {
    bo.batches.clear();
    for (const char* p = bs; *p;) {
      bo.batches.push_back(std::atoi(p));
      while (*p && *p != ',') ++p;
      if (*p) ++p;
    }
  }
  int max_b = 1;
  for (int b : bo.batches) max_b = std::max(max_b, b);
  CudaOptions opt;
  opt.max_batch = max_b;
  opt.context = 1024;
  auto m = make_synthetic_cuda_llama(shape, opt);
  const BenchResult r = run_llama_bench(*m, shape, bo);
  std::printf("%s\n%s\n", r.to_json().c_str(), r.to_table().c_str());
}

// GGUF block weights on the GPU against the CPU model on the same weights dequantized to f32 (the
// exact model), and against the GPU's dequantize-at-load path (CudaOptions::gguf_dequant): chunked
// prefill (dequantized tiles + cuBLASLt), graph-replayed decode steps (fused GEMVs), a batch of 3.
TEST(CudaLlama, GgufBlocksMatchCpu) {
  REQUIRE_GPU();
  ModelSource src = make_gguf_typed_llama(5);
  ModelSource ref_src = make_gguf_typed_llama(5);
  quant::dequantize_weights_in_place(ref_src, DType::F32);
  auto cpu = make_cpu_llama(ref_src);
  CudaOptions opt;
  opt.max_batch = 3, opt.context = 128, opt.prefill_chunk = 8;
  auto gpu = make_cuda_llama(src, opt);
  CudaOptions old = opt;
  old.gguf_dequant = true;
  auto gpu_old = make_cuda_llama(src, old);
  EXPECT_EQ(gpu->quantized_linear_weights(), kGgufTypedQuantWeights);
  EXPECT_EQ(gpu_old->quantized_linear_weights(), 0);
  EXPECT_LT(gpu->weight_bytes_per_step(), gpu_old->weight_bytes_per_step() * 6 / 10);
  std::printf("bytes per step: blocks %zu, bf16 %zu\n", gpu->weight_bytes_per_step(), gpu_old->weight_bytes_per_step());
  const int V = src.config.vocab_size;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 21; ++i) prompt.push_back((i * 7919 + 13) % V);
  const int n = int(prompt.size());

  // every position of the prompt, prefill in chunks of 8
  const std::vector<float> want = cpu->forward_all(prompt.data(), n, 0);
  const std::vector<float> got = gpu->forward_all(prompt.data(), n, 0);
  const std::vector<float> got_old = gpu_old->forward_all(prompt.data(), n, 0);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(rel(got.data(), want.data(), got.size()), 3e-2);
  EXPECT_LE(rel(got.data(), got_old.data(), got.size()), 3e-2);

  // decode steps (graph replay), teacher-forced with the CPU's greedy tokens
  const float* lc = cpu->forward(prompt.data(), n, 0);
  int32_t tok = argmax(lc, V);
  gpu->forward(prompt.data(), n, 0);
  for (int step = 0; step < 8; ++step) {
    const int pos = n + step;
    const float* c = cpu->forward(&tok, 1, pos);
    std::vector<float> cv(c, c + V);
    const float* g = gpu->forward(&tok, 1, pos);
    EXPECT_LE(rel(g, cv.data(), size_t(V)), 3e-2) << "decode step " << step;
    EXPECT_TRUE(same_choice(g, cv.data(), V)) << "decode step " << step;
    tok = argmax(cv.data(), V);
  }

  // a batch of 3 sequences in one decode step (B = 3 through every GEMV) vs the CPU one at a time
  const int B = 3, P = 11;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < P; ++i) prompts[size_t(b)].push_back((b * 104729 + i * 7919 + 1) % V);
  std::vector<int32_t> next(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) next[size_t(b)] = argmax(gpu->forward_slot(b, prompts[size_t(b)].data(), P, 0), V);
  const float* lb = gpu->decode_batch(next.data(), B, P);
  std::vector<float> batched(lb, lb + size_t(B) * V);
  for (int b = 0; b < B; ++b) {
    cpu->forward(prompts[size_t(b)].data(), P, 0);
    const float* c = cpu->forward(&next[size_t(b)], 1, P);
    EXPECT_LE(rel(batched.data() + size_t(b) * V, c, size_t(V)), 3e-2) << "seq " << b;
  }
}

// stories260K quantized at load time like `--quant int8|int4 --device cuda` (Q8_0 / Q4_0 blocks,
// ffn_down (K = 172) left in f32): GPU greedy tokens == the CPU's on the same blocks, 20 steps.
TEST(CudaLlama, Stories260KLoadTimeQuantGreedyMatchesCpu) {
  REQUIRE_GPU();
  REQUIRE_STORIES();
  for (const char* q : {"int8", "int4"}) {
    SCOPED_TRACE(q);
    quant::LoadOptions lo;
    lo.tokenizer = data_dir() + "/tok512.bin";
    lo.quant = q;
    lo.group = 32;
    ModelSource src = quant::open_model_for_inference(stories_path(), lo);
    auto cpu = make_cpu_llama(src);
    auto gpu = make_cuda_llama(src, CudaOptions{});
    EXPECT_EQ(gpu->quantized_linear_weights(), 6 * src.config.n_layers);  // all but ffn_down (tied head)
    expect_greedy_matches(*cpu, *gpu, src.config.vocab_size);
  }
}
