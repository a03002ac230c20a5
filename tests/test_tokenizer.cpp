// Tokenizers: the llama.cpp vocab test vectors (ids produced by HF tokenizers), round trips,
// streaming decode, real model vocabularies, llama2.c's tokenizer.bin, and hostile inputs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"
#include "io/reader.h"
#include <nlohmann/json.hpp>
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using namespace ignis;

namespace {

const std::string kData = IGNIS_SHARED_DATA;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};

// .inp: each test string followed by "\n__ggml_vocab_test__\n"; .out: one line of ids per string.
std::vector<Vector> load_vectors(const std::string& base) {
  const std::string inp = slurp(base + ".inp"), out = slurp(base + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> v;
  size_t pos = 0;
  while (pos < inp.size()) {
    const size_t k = inp.find(sep, pos);
    if (k == std::string::npos) break;
    v.push_back({inp.substr(pos, k - pos), {}});
    pos = k + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line) && i < v.size()) {
    std::istringstream ls(line);
    int32_t id;
    while (ls >> id) v[i].ids.push_back(id);
    ++i;
  }
  EXPECT_EQ(i, v.size()) << base;
  return v;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

std::unique_ptr<Tokenizer> gguf_tokenizer(const std::string& name) {
  auto g = GGUFFile::open(kData + "/ggml-vocab-" + name + ".gguf");
  return Tokenizer::from_gguf(*g);
}

// Runs every vector; returns how many matched.
size_t check_vectors(const Tokenizer& tok, const std::string& name) {
  const auto vecs = load_vectors(kData + "/ggml-vocab-" + name + ".gguf");
  EXPECT_GE(vecs.size(), 40u);
  size_t ok = 0;
  for (const auto& v : vecs) {
    const auto ids = tok.encode(v.text, /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(show(ids), show(v.ids)) << name << ": '" << v.text << "'";
    ok += ids == v.ids;
  }
  std::printf("[ %s ] %zu / %zu vectors match\n", name.c_str(), ok, vecs.size());
  return ok;
}

// Feeds ids one at a time; checks the stream never emits broken UTF-8 and adds up to decode().
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special = false) {
  StreamDecoder sd(tok, skip_special);
  std::string acc;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    EXPECT_TRUE(ignis::is_valid_utf8(piece)) << "broken UTF-8 after token " << id;
    acc += piece;
  }
  acc += sd.flush();
  EXPECT_EQ(acc, tok.decode(ids, skip_special));
}

}  // namespace

// ---- the llama.cpp vocab vectors ------------------------------------------------------------------

TEST(TokenizerVectors, Gpt2) {
  auto tok = gguf_tokenizer("gpt-2");
  EXPECT_EQ(tok->kind(), TokenizerKind::kByteBPE);
  EXPECT_EQ(tok->vocab_size(), 50257);
  check_vectors(*tok, "gpt-2");
}

TEST(TokenizerVectors, LlamaSpm) {
  auto tok = gguf_tokenizer("llama-spm");
  EXPECT_EQ(tok->kind(), TokenizerKind::kSentencePiece);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos());
  check_vectors(*tok, "llama-spm");
}

TEST(TokenizerVectors, BertBge) {
  auto tok = gguf_tokenizer("bert-bge");
  EXPECT_EQ(tok->kind(), TokenizerKind::kWordPiece);
  check_vectors(*tok, "bert-bge");
  const auto ids = tok->encode("hello world", /*add_special=*/true);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 101);
  EXPECT_EQ(ids.back(), 102);
  EXPECT_EQ(tok->encode("[CLS] hi [SEP]", false, true).front(), 101);
}

// ---- tokenizer.json fixtures made by HF tokenizers (tests/tools/make_tokenizer_goldens.py) ----------

namespace {
const std::string kFixtures = std::string(IGNIS_SOURCE_DIR) + "/tests/fixtures/tokenizer";

const nlohmann::json& goldens() {
  static const nlohmann::json j = nlohmann::json::parse(slurp(kFixtures + "/goldens.json"));
  return j;
}
}  // namespace

class TokenizerHfJson : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerHfJson, MatchesHuggingFace) {
  const std::string name = GetParam();
  auto tok = Tokenizer::from_hf_json(kFixtures + "/" + name + ".json");
  const auto& cases = goldens().at("fixtures").at(name);
  size_t ok = 0, n = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const auto got = tok->encode(text, false, true);
    EXPECT_EQ(show(got), show(want)) << name << ": '" << text << "'";
    EXPECT_EQ(show(tok->encode(text, true, true)), show(c.value("ids_special", want)))
        << name << " with specials: '" << text << "'";
    EXPECT_EQ(tok->decode(want), c.at("decoded").get<std::string>()) << name << ": decode of '" << text << "'";
    check_stream(*tok, want);
    ok += got == want;
    ++n;
  }
  std::printf("[ %s ] %zu / %zu strings match HF\n", name.c_str(), ok, n);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerHfJson,
                         ::testing::Values("hf_bytelevel", "hf_digits_bytelevel", "hf_llama3", "hf_qwen2",
                                           "hf_spm_bytefallback", "hf_metaspace", "hf_wordpiece_uncased",
                                           "hf_wordpiece_cased", "hf_split_merged_prev", "hf_split_merged_next",
                                           "hf_split_contiguous_invert", "hf_whitespace_digits",
                                           "hf_whitespacesplit_removed"));

// ---- llama2.c tokenizer.bin against sentencepiece ------------------------------------------------

TEST(TokenizerLlama2c, MatchesSentencePiece) {
  for (auto [bin, model, n] : {std::tuple{"tok512.bin", "tok512.model", 512},
                               std::tuple{"tokenizer.bin", "tokenizer.model", 32000}}) {
    auto tok = Tokenizer::from_llama2c(kData + "/" + bin, n);
    EXPECT_EQ(tok->vocab_size(), n);
    EXPECT_EQ(tok->kind(), TokenizerKind::kSentencePiece);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    size_t ok = 0, total = 0;
    for (const auto& c : goldens().at("sentencepiece").at(model)) {
      const std::string text = c.at("text");
      const auto want = c.at("ids").get<std::vector<int32_t>>();
      const auto got = tok->encode(text, false, false);
      check_stream(*tok, got);
      // sentencepiece strips and collapses spaces when the model says remove_extra_whitespaces
      // (tok512.model does); llama2.c's run.c does not, and neither do we.
      if (!c.at("comparable").get<bool>()) continue;
      EXPECT_EQ(show(got), show(want)) << bin << ": '" << text << "'";
      ok += got == want;
      ++total;
    }
    std::printf("[ %s ] %zu / %zu strings match sentencepiece (%s)\n", bin, ok, total, model);
  }
}
