// Tokenizers: the llama.cpp vocab test vectors (ids produced by HF tokenizers), round trips,
// streaming decode, real model vocabularies, llama2.c's tokenizer.bin, and hostile inputs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <algorithm>
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

// ---- SmolLM2 (a real model's GGUF; skipped when absent) -------------------------------------------

TEST(TokenizerSmolLM2, MatchesHuggingFace) {
  const char* home = std::getenv("HOME");
  const std::string path = std::string(home ? home : "") + "/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!exists(path)) GTEST_SKIP() << path << " not present";
  auto g = GGUFFile::open(path);
  auto tok = Tokenizer::from_gguf(*g);
  EXPECT_EQ(tok->kind(), TokenizerKind::kByteBPE);
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->token_id("<|im_start|>"), 1);
  EXPECT_EQ(tok->token_id("<|im_end|>"), 2);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_NE(tok->chat_template().find("<|im_start|>"), std::string::npos);
  const auto& stops = tok->stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), 2), stops.end());
  EXPECT_NE(tok->describe().find("smollm"), std::string::npos);

  // <|im_start|> and <|im_end|> are single special ids; "user", "\n", "Hello" as HF splits them.
  const auto chat = tok->encode("<|im_start|>user\nHello<|im_end|>", false, true);
  ASSERT_GE(chat.size(), 3u);
  EXPECT_EQ(chat.front(), 1);
  EXPECT_EQ(chat.back(), 2);
  // parse_special=false: the markers are plain text.
  const auto plain = tok->encode("<|im_start|>user", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);

  // Golden ids: tests/tools/make_tokenizer_goldens.py builds HF tokenizers' BPE from this GGUF's
  // vocab and merges with SmolLM2's pre-tokenizer (Digits(individual) + ByteLevel) and encodes
  // with add_special_tokens=False.
  size_t ok = 0, n = 0;
  for (const auto& c : goldens().at("smollm2")) {
    const std::string text = c.at("text");
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const auto got = tok->encode(text, false, true);
    EXPECT_EQ(show(got), show(want)) << "'" << text << "'";
    EXPECT_EQ(tok->decode(got), tok::to_valid_utf8(text));
    ok += got == want;
    ++n;
  }
  std::printf("[ SmolLM2 ] %zu / %zu strings match HF\n", ok, n);
  EXPECT_EQ(show(tok->encode("The capital of France is", false, true)),
            show(goldens().at("smollm2").at(0).at("ids").get<std::vector<int32_t>>()));
}

// ---- round trips and streaming ---------------------------------------------------------------------

TEST(TokenizerDecode, RoundTripsAndStreams) {
  auto gpt2 = gguf_tokenizer("gpt-2");
  auto spm = gguf_tokenizer("llama-spm");
  auto bert = gguf_tokenizer("bert-bge");
  std::vector<std::string> texts;
  for (const auto& v : load_vectors(kData + "/ggml-vocab-gpt-2.gguf")) texts.push_back(v.text);
  texts.push_back("emoji 🦙🚀😶‍🌫️ and CJK 我想在apple工作 and Khmer កាន់តែពិសេស, Ω≈ç√∫˜µ≤≥÷");
  for (const auto& s : texts) {
    // Byte-level BPE is lossless.
    const auto g = gpt2->encode(s);
    EXPECT_EQ(gpt2->decode(g), s);
    check_stream(*gpt2, g);
    // SentencePiece: lossless apart from the prefix space, which decode drops again.
    const auto p = spm->encode(s);
    EXPECT_EQ(spm->decode(p), s);
    check_stream(*spm, p);
    // With BOS, HF keeps "<s>" and the space after it; skipping specials gives the text back.
    auto pb = spm->encode(s, true);
    ASSERT_FALSE(pb.empty());
    EXPECT_EQ(pb.front(), 1);
    EXPECT_EQ(spm->decode(pb, /*skip_special=*/true), s);
    check_stream(*spm, pb, true);
    check_stream(*bert, bert->encode(s, true));
  }
  // A character split over byte tokens is held back until it is complete.
  const auto ids = gpt2->encode("🦙");
  ASSERT_GT(ids.size(), 1u);
  StreamDecoder sd(*gpt2);
  EXPECT_EQ(sd.push(ids[0]), "");
  std::string rest;
  for (size_t i = 1; i < ids.size(); ++i) rest += sd.push(ids[i]);
  EXPECT_EQ(rest, "🦙");
  // An incomplete character at the end becomes U+FFFD on flush.
  StreamDecoder sd2(*gpt2);
  EXPECT_EQ(sd2.push(ids[0]), "");
  EXPECT_EQ(sd2.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(gpt2->decode({ids[0]}), "\xEF\xBF\xBD");
  // SentencePiece byte tokens.
  const auto b = spm->encode("🦙");
  std::string acc;
  StreamDecoder sd3(*spm);
  for (int32_t id : b) acc += sd3.push(id);
  EXPECT_EQ(acc + sd3.flush(), "🦙");
  EXPECT_THROW(gpt2->decode({999999}), Error);
  EXPECT_THROW(gpt2->token_bytes(-1), Error);
}

TEST(TokenizerEncode, InvalidUtf8InputIsRepaired) {
  // Invalid UTF-8 is replaced by U+FFFD (one per maximal invalid subsequence, as Python's
  // bytes.decode(errors="replace") does) before encoding; HF cannot take such input at all.
  auto gpt2 = gguf_tokenizer("gpt-2");
  auto spm = gguf_tokenizer("llama-spm");
  auto bert = gguf_tokenizer("bert-bge");
  const std::string bad = "ab\xff\xc3(\xe2\x82 \xed\xa0\x80z\xf0\x9f\xa6";
  const std::string fixed = tok::to_valid_utf8(bad);
  EXPECT_TRUE(is_valid_utf8(fixed));
  EXPECT_EQ(fixed, "ab\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD");
  for (const Tokenizer* t : {gpt2.get(), spm.get(), bert.get()}) EXPECT_EQ(t->encode(bad), t->encode(fixed));
  EXPECT_EQ(gpt2->decode(gpt2->encode(bad)), fixed);
}

TEST(TokenizerEncode, LongInputsAreFast) {
  auto gpt2 = gguf_tokenizer("gpt-2");
  auto spm = gguf_tokenizer("llama-spm");
  const std::string text = slurp(kData + "/tinyshakespeare_input.txt").substr(0, 50000);
  for (const Tokenizer* t : {gpt2.get(), spm.get()}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = t->encode(text);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ %s ] %zu bytes -> %zu tokens in %.1f ms\n", t->describe().c_str(), text.size(), ids.size(), ms);
    EXPECT_GT(ids.size(), 5000u);
    EXPECT_LT(ms, 2000.0);  // generous for sanitizer builds; ~10 ms optimised
    EXPECT_EQ(t->decode(ids), text);
  }
  // Pathological pieces (one long word, a long run of spaces) stay near-linear.
  const std::string word(200000, 'a'), spaces(200000, ' ');
  for (const std::string* s : {&word, &spaces}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto a = gpt2->encode(*s), b = spm->encode(*s);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(ms, 5000.0);
    EXPECT_EQ(gpt2->decode(a), *s);
    EXPECT_EQ(spm->decode(b), *s);
  }
}

// ---- hostile inputs ----------------------------------------------------------------------------------

namespace {
// A minimal GGUF v3 writer for metadata-only files.
struct GGUFWriter {
  std::string b;
  uint64_t n = 0;
  template <typename T>
  void raw(T v) { b.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) { raw<uint64_t>(s.size()); b += s; }
  void key(const std::string& k, uint32_t type) { str(k); raw<uint32_t>(type); ++n; }
  void kv_str(const std::string& k, const std::string& v) { key(k, 8); str(v); }
  void kv_u32(const std::string& k, uint32_t v) { key(k, 4); raw(v); }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9); raw<uint32_t>(8); raw<uint64_t>(v.size());
    for (auto& s : v) str(s);
  }
  void kv_i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, 9); raw<uint32_t>(5); raw<uint64_t>(v.size());
    for (auto x : v) raw(x);
  }
  void kv_f32s(const std::string& k, const std::vector<float>& v) {
    key(k, 9); raw<uint32_t>(6); raw<uint64_t>(v.size());
    for (auto x : v) raw(x);
  }
  std::shared_ptr<GGUFFile> file() const {
    auto data = std::make_shared<std::string>();
    data->append("GGUF");
    uint32_t ver = 3;
    uint64_t nt = 0;
    data->append(reinterpret_cast<const char*>(&ver), 4);
    data->append(reinterpret_cast<const char*>(&nt), 8);
    data->append(reinterpret_cast<const char*>(&n), 8);
    *data += b;
    return GGUFFile::parse(reinterpret_cast<const uint8_t*>(data->data()), data->size(), "test.gguf", data);
  }
};

std::vector<std::string> byte_level_alphabet() {
  std::vector<std::string> v;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    tok::append_utf8(s, tok::byte_to_cp(static_cast<uint8_t>(b)));
    v.push_back(s);
  }
  return v;
}
}  // namespace

TEST(TokenizerHostile, Gguf) {
  auto vocab = byte_level_alphabet();
  vocab.push_back("he");
  {  // a sane tiny byte-level BPE works
    GGUFWriter w;
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_str("tokenizer.ggml.pre", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", vocab);
    w.kv_strs("tokenizer.ggml.merges", {"h e"});
    auto t = Tokenizer::from_gguf(*w.file());
    EXPECT_EQ(t->encode("hehe"), (std::vector<int32_t>{256, 256}));
  }
  auto expect_error = [&](auto&& edit, const char* what) {
    GGUFWriter w;
    edit(w);
    EXPECT_THROW(Tokenizer::from_gguf(*w.file()), Error) << what;
  };
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", vocab);
    w.kv_strs("tokenizer.ggml.merges", {"h x"});
  }, "merge naming an unknown token");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", vocab);
    w.kv_strs("tokenizer.ggml.merges", {"h e", "e h"});
  }, "merge result not in the vocabulary");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", vocab);
    w.kv_strs("tokenizer.ggml.merges", {"he"});
  }, "merge without a space");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_str("tokenizer.ggml.pre", "no-such-pre");
    w.kv_strs("tokenizer.ggml.tokens", vocab);
    w.kv_strs("tokenizer.ggml.merges", {});
  }, "unknown pre-tokenizer");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", vocab);
    w.kv_strs("tokenizer.ggml.merges", {});
    w.kv_u32("tokenizer.ggml.eos_token_id", 100000);
  }, "eos out of range");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "llama");
    w.kv_strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
    w.kv_f32s("tokenizer.ggml.scores", {0, 0, 0});
  }, "scores count differs from tokens");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "llama");
    w.kv_strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a"});
    w.kv_f32s("tokenizer.ggml.scores", {0, 0, 0, 0});
    w.kv_i32s("tokenizer.ggml.token_type", {2, 3, 3, 9});
  }, "bad token type");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "llama");
    w.kv_strs("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "a\xff"});
    w.kv_f32s("tokenizer.ggml.scores", {0, 0, 0, 0});
  }, "invalid UTF-8 token");
  expect_error([&](GGUFWriter& w) {
    w.kv_str("tokenizer.ggml.model", "t5");
    w.kv_strs("tokenizer.ggml.tokens", {"a"});
  }, "unsupported model");
  expect_error([&](GGUFWriter& w) { w.kv_str("general.name", "x"); }, "no tokenizer at all");
}

TEST(TokenizerHostile, Llama2c) {
  const std::string bin = slurp(kData + "/tok512.bin");
  const auto* p = reinterpret_cast<const uint8_t*>(bin.data());
  EXPECT_NO_THROW(Tokenizer::from_llama2c_bytes(p, bin.size(), 512, "tok512.bin"));
  for (size_t cut : {size_t{0}, size_t{3}, size_t{4}, size_t{11}, bin.size() / 2, bin.size() - 1})
    EXPECT_THROW(Tokenizer::from_llama2c_bytes(p, cut, 512, "truncated"), Error) << cut;
  EXPECT_THROW(Tokenizer::from_llama2c_bytes(p, bin.size(), 513, "too many"), Error);
  EXPECT_THROW(Tokenizer::from_llama2c_bytes(p, bin.size(), 0, "zero"), Error);
  EXPECT_THROW(Tokenizer::from_llama2c_bytes(p, bin.size(), -5, "negative"), Error);
  EXPECT_THROW(Tokenizer::from_llama2c(kData + "/no-such-file.bin", 512), Error);
  std::string bad = bin;
  const int32_t neg = -7;
  std::memcpy(bad.data() + 8, &neg, 4);  // first token's length
  EXPECT_THROW(Tokenizer::from_llama2c_bytes(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), 512, "neg"),
               Error);
  const int32_t huge = 0x7fffffff;
  bad = bin;
  std::memcpy(bad.data(), &huge, 4);  // max_token_length
  EXPECT_THROW(Tokenizer::from_llama2c_bytes(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), 512, "max"),
               Error);
}

TEST(TokenizerHostile, HfJson) {
  const std::string good = slurp(kFixtures + "/hf_bytelevel.json");
  EXPECT_NO_THROW(Tokenizer::from_hf_json_text(good, "", "good"));
  auto expect_error = [](const std::string& json, const std::string& cfg, const char* what) {
    EXPECT_THROW(Tokenizer::from_hf_json_text(json, cfg, what), Error) << what;
  };
  expect_error("", "", "empty");
  expect_error("{", "", "truncated");
  expect_error("[]", "", "not an object");
  expect_error(R"({"model": "BPE"})", "", "model is a string");
  expect_error(R"({"model": {"type": "BPE", "vocab": ["a"], "merges": []}})", "", "vocab is an array");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "", "id is a string");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})", "",
               "merge names an unknown token");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})", "",
               "merge result not in vocab");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})", "", "merge is a number");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 2000000000}, "merges": []}})", "", "absurd id");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})", "", "negative id");
  // Ids that are floats (2e49 once reached an undefined float-to-integer conversion: a fuzz find).
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 2e49}, "merges": []}})", "", "float id");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0.5}, "merges": []}})", "", "fractional id");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "added_tokens": [{"id": 1e30, "content": "x"}]})", "", "float added-token id");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "post_processor": {"type": "BertProcessing", "cls": ["a", 3e40], "sep": ["a", 0]}})", "",
               "float post-processor id");
  expect_error(R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})", "", "unsupported model");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "[UNK]"}})", "", "unk missing");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Nope"}})",
               "", "unknown pre-tokenizer");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated"}})",
               "", "bad regex");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "added_tokens": [{"id": 5000000, "content": "x"}]})", "", "added id out of range");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                   "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 77], "sep": ["[SEP]", 1]}})",
               "", "post-processor id out of range");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": 5})", "",
               "normalizer is a number");
  expect_error(good, "{", "bad tokenizer_config.json");
  expect_error(good, R"({"eos_token": "<nope>"})", "eos_token not in vocab");
  // A minimal valid file works, and encodes what it can.
  auto t = Tokenizer::from_hf_json_text(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})", "", "tiny");
  EXPECT_EQ(t->encode("abab"), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(t->encode("abc"), (std::vector<int32_t>{2}));  // no unk token: unknown characters are dropped
}

// ---- GGUF presets (tokenizer.ggml.pre) against HF ----------------------------------------------------
// The HF fixtures' vocab and merges written as a GGUF with the matching tokenizer.ggml.pre must
// encode exactly as HF did: this checks each preset's regex/normaliser/ignore_merges choice.
TEST(TokenizerGgufPresets, MatchHuggingFace) {
  for (auto [fixture, pre] : {std::pair{"hf_bytelevel", "gpt2"}, std::pair{"hf_digits_bytelevel", "smollm"},
                              std::pair{"hf_llama3", "llama-bpe"}, std::pair{"hf_qwen2", "qwen2"}}) {
    const auto j = nlohmann::json::parse(slurp(kFixtures + "/" + fixture + ".json"));
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (auto& [s, id] : j.at("model").at("vocab").items()) {
      const size_t i = id.get<size_t>();
      if (tokens.size() <= i) tokens.resize(i + 1), types.resize(i + 1, 1);
      tokens[i] = s;
    }
    for (const auto& a : j.at("added_tokens")) {
      const size_t i = a.at("id").get<size_t>();
      if (tokens.size() <= i) tokens.resize(i + 1), types.resize(i + 1, 1);
      tokens[i] = a.at("content").get<std::string>();
      types[i] = a.at("special").get<bool>() ? 3 : 4;
    }
    std::vector<std::string> merges;
    for (const auto& m : j.at("model").at("merges"))
      merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
    GGUFWriter w;
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_str("tokenizer.ggml.pre", pre);
    w.kv_strs("tokenizer.ggml.tokens", tokens);
    w.kv_i32s("tokenizer.ggml.token_type", types);
    w.kv_strs("tokenizer.ggml.merges", merges);
    auto tok = Tokenizer::from_gguf(*w.file());
    size_t ok = 0, n = 0;
    for (const auto& c : goldens().at("fixtures").at(fixture)) {
      const std::string text = c.at("text");
      const auto want = c.at("ids").get<std::vector<int32_t>>();
      const auto got = tok->encode(text, false, true);
      EXPECT_EQ(show(got), show(want)) << pre << ": '" << text << "'";
      ok += got == want;
      ++n;
    }
    std::printf("[ GGUF pre=%s ] %zu / %zu strings match HF (%s)\n", pre, ok, n, fixture);
  }
}
