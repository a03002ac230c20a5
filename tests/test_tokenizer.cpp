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
