// The CPU Llama model against independent references (fixtures in tests/fixtures/reference,
// made by `python3 tests/reference/make_fixtures.py`; see the README there):
//  - stories260K (f32 llama2.c checkpoint) vs a NumPy float64 implementation: 1e-4 relative;
//  - SmolLM2-135M-Instruct Q4_1 vs Hugging Face transformers loading the same GGUF (fp32).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_source.h"
#include "models/llama.h"
#include "ops/quant.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;
using json = nlohmann::json;

namespace {

const std::string kFixtures = std::string(IGNIS_SOURCE_DIR) + "/tests/fixtures/reference/";

json load_json(const std::string& name) {
  std::ifstream in(kFixtures + name + ".json");
  EXPECT_TRUE(in.good()) << name;
  return json::parse(in);
}

std::vector<float> load_logits(const json& j) {
  const std::string file = kFixtures + j["logits"]["file"].get<std::string>();
  const auto shape = j["logits"]["shape"].get<std::vector<size_t>>();
  std::vector<float> v(shape[0] * shape[1]);
  std::ifstream in(file, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * 4));
  EXPECT_TRUE(in.good()) << file;
  return v;
}

double rel_err(const float* a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += double(a[i] - ref[i]) * double(a[i] - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

int argmax(const float* x, size_t n) { return int(std::max_element(x, x + n) - x); }

// A copy of the model with every weight dequantized to f32: products then run in float,
// so the only difference from the reference is float rounding.
ModelSource dequantized(const std::string& path) {
  ModelSource src = open_model(path);
  for (auto& [name, t] : src.weights) {
    if (t.dtype() == DType::F32) continue;
    Tensor f = Tensor::empty_like_shape(t.shape(), t.ndim(), DType::F32);
    for (int64_t r = 0; r < t.rows(); ++r) quant::dequantize_row(t.dtype(), t.row<uint8_t>(r), f.row<float>(r), t.cols());
    t = f;
  }
  return src;
}

const std::string& smollm2_path() {
  static const std::string p = std::string(std::getenv("HOME") ? std::getenv("HOME") : "") +
                               "/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  return p;
}

}  // namespace

TEST(LlamaReference, Stories260kLogitsMatchNumpyFloat64) {
  // IGNIS_DATA overrides where the shared data lives (the GPU machine has it inside the repo).
  const std::string data = std::getenv("IGNIS_DATA") ? std::getenv("IGNIS_DATA") : IGNIS_SHARED_DATA;
  ModelSource src = open_model(data + "/stories260K.bin", data + "/tok512.bin");
  auto model = make_cpu_llama(src, {2, 0});
  json j = load_json("stories260k_once_upon_a_time");
  const auto seq = j["sequence"].get<std::vector<int32_t>>();
  const auto ref = load_logits(j);
  const size_t vocab = 512, rows = j["logits"]["shape"][0].get<size_t>();
  // Our tokenizer must give the same prompt ids as llama2.c / SentencePiece.
  const auto prompt = j["tokens"].get<std::vector<int32_t>>();
  std::vector<int32_t> ids = src.tokenizer->encode("Once upon a time", /*add_special=*/true);
  EXPECT_EQ(ids, prompt);
  // Teacher-forced: all rows in one pass.
  std::vector<float> all = model->forward_all(seq.data(), int(rows), 0);
  for (size_t r = 0; r < rows; ++r) {
    EXPECT_LT(rel_err(all.data() + r * vocab, ref.data() + r * vocab, vocab), 1e-4) << "row " << r;
  }
  // And token by token through the KV cache.
  for (size_t r = 0; r < rows; ++r) {
    const float* l = model->forward(&seq[r], 1, int(r));
    EXPECT_LT(rel_err(l, ref.data() + r * vocab, vocab), 1e-4) << "incremental row " << r;
  }
  // Greedy generation reproduces all 64 reference tokens (a story about Lily).
  Session s(*model, *src.tokenizer);
  GenerateOptions o;
  o.max_new_tokens = 64;
  o.sampler.temperature = 0;
  o.ignore_eos = true;
  auto res = s.generate(prompt, o, nullptr);
  EXPECT_EQ(res.tokens, j["greedy"]["ids"].get<std::vector<int32_t>>());
  EXPECT_NE(res.text.find("Lily"), std::string::npos) << res.text;
}

namespace {
class SmolLM2Reference : public ::testing::TestWithParam<const char*> {};
}  // namespace

// Tolerance: ignis multiplies Q4_1 weights with activations quantized to Q8_0 blocks (as
// llama.cpp does), HF multiplies the dequantized weights with fp32 activations. Rounding each
// activation to 8 bits per 32-value block adds ~0.3% noise per product, which compounds over
// 30 layers, and SmolLM2 has large activation outliers that coarsen a block's scale:
// measured 1.2% to 8% relative on these prompts (2026-11-22). With the same weights
// dequantized to f32 the error is ~1e-6 (SmolLM2DequantizedMatchesHuggingFaceTightly), so
// the arithmetic is right and the rest is activation rounding. 10% still catches real bugs
// (a wrong RoPE pairing, norm or head mapping gives > 30%), and the top token must agree
// wherever the reference's top-2 margin is clear (> 0.5 logits).
TEST_P(SmolLM2Reference, LogitsMatchHuggingFace) {
  const std::string& path = smollm2_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not fetched (scripts/fetch-model.sh)";
  static ModelSource src = open_model(path);
  static auto model = make_cpu_llama(src, {2, 512});
  json j = load_json(GetParam());
  const auto tokens = j["tokens"].get<std::vector<int32_t>>();
  // The tokenizer agrees with HF's on the prompt.
  EXPECT_EQ(src.tokenizer->encode(j["prompt"].get<std::string>(), false, true), tokens);
  const auto ref = load_logits(j);
  const auto positions = j["logits"]["positions"].get<std::vector<int>>();
  const size_t vocab = 49152;
  std::vector<float> all = model->forward_all(tokens.data(), int(tokens.size()), 0);
  for (size_t r = 0; r < positions.size(); ++r) {
    const float* got = all.data() + size_t(positions[r]) * vocab;
    const float* want = ref.data() + r * vocab;
    const double e = rel_err(got, want, vocab);
    EXPECT_LT(e, 0.10) << GetParam() << " position " << positions[r];
    std::vector<float> sorted(want, want + vocab);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
    if (sorted[0] - sorted[1] > 0.5f) EXPECT_EQ(argmax(got, vocab), argmax(want, vocab)) << "position " << positions[r];
    RecordProperty(std::string("rel_err_pos") + std::to_string(positions[r]), std::to_string(e));
    std::printf("  %s position %d: relative error %.4f\n", GetParam(), positions[r], e);
  }
  // Greedy continuation agrees up to the first step where the reference is nearly tied.
  const auto greedy = j["greedy"]["ids"].get<std::vector<int32_t>>();
  const auto margins = j["greedy"]["top2_margins"].get<std::vector<double>>();
  size_t trust = 0;
  while (trust < greedy.size() && margins[trust] > 0.5) ++trust;
  Session s(*model, *src.tokenizer);
  GenerateOptions o;
  o.max_new_tokens = int(trust);
  o.sampler.temperature = 0;
  o.ignore_eos = true;
  auto res = s.generate(tokens, o, nullptr);
  EXPECT_EQ(res.tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + long(trust)));
}
INSTANTIATE_TEST_SUITE_P(Prompts, SmolLM2Reference,
                         ::testing::Values("smollm2_capital_of_france", "smollm2_chatml_2plus2", "smollm2_wikitext_du_fu"));

// With the weights dequantized to f32 (no activation quantization) ignis computes the same
// function as HF: the remaining difference is fp32 rounding, so the tolerance is 1e-4.
TEST(LlamaReference, SmolLM2DequantizedMatchesHuggingFaceTightly) {
  if (!std::filesystem::exists(smollm2_path())) GTEST_SKIP() << "default model not fetched";
  ModelSource src = dequantized(smollm2_path());
  auto model = make_cpu_llama(src, {2, 64});
  json j = load_json("smollm2_capital_of_france");
  const auto tokens = j["tokens"].get<std::vector<int32_t>>();
  const auto ref = load_logits(j);
  std::vector<float> all = model->forward_all(tokens.data(), int(tokens.size()), 0);
  for (size_t r = 0; r < tokens.size(); ++r) {
    const double e = rel_err(all.data() + r * 49152, ref.data() + r * 49152, 49152);
    std::printf("  f32 weights, position %zu: relative error %.2e\n", r, e);
    EXPECT_LT(e, 1e-4) << "position " << r;
  }
}
