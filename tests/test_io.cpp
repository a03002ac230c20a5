// Model file loading: GGUF, safetensors, HF folders, llama2.c checkpoints. Valid files load
// with the right config; hostile ones (truncated, overlapping, overflowing, out of range)
// throw ignis::Error -- never another exception, never a crash (run under ASan to be sure).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/gguf.h"
#include "io/model_source.h"
#include "io/reader.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;
namespace fs = std::filesystem;

namespace {

// ---- helpers --------------------------------------------------------------------------------------

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(Bytes& b, T v) {
  const size_t at = b.size();
  b.resize(at + sizeof(T));
  std::memcpy(b.data() + at, &v, sizeof(T));
}
void put_str(Bytes& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}
Bytes floats(size_t n, float start = 0.f) {
  Bytes b;
  for (size_t i = 0; i < n; ++i) put<float>(b, start + 0.01f * float(i));
  return b;
}

// A temporary directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("ignis_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const Bytes& b) const {
    const fs::path p = path / name;
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    return p.string();
  }
  std::string file(const std::string& name, const std::string& s) const {
    return file(name, Bytes(s.begin(), s.end()));
  }
};

// Parses exactly these bytes from a heap buffer of exactly their size, so ASan sees any overread.
std::shared_ptr<GGUFFile> parse_gguf(const Bytes& b) {
  auto copy = std::shared_ptr<uint8_t[]>(new uint8_t[b.size() ? b.size() : 1]);
  if (!b.empty()) std::memcpy(copy.get(), b.data(), b.size());
  return GGUFFile::parse(copy.get(), b.size(), "test.gguf", copy);
}
std::shared_ptr<SafetensorsFile> parse_st(const Bytes& b) {
  auto copy = std::shared_ptr<uint8_t[]>(new uint8_t[b.size() ? b.size() : 1]);
  if (!b.empty()) std::memcpy(copy.get(), b.data(), b.size());
  return SafetensorsFile::parse(copy.get(), b.size(), "test.safetensors", copy);
}

bool message_has(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
  } catch (const Error& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return true;
    ADD_FAILURE() << "error message lacks \"" << needle << "\": " << e.what();
    return false;
  }
  ADD_FAILURE() << "no ignis::Error thrown (expected one mentioning \"" << needle << "\")";
  return false;
}

// Loads a model; any error fails the test (kept as a macro so the call sites read the same).
#define LOAD_MODEL(var, expr) ModelSource var = expr;

// ---- a small GGUF writer ------------------------------------------------------------------------------

enum : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };

struct GGUFWriter {
  struct T {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    Bytes data;
    std::optional<uint64_t> offset;  // forced offset (hostile files)
  };
  Bytes kv;
  uint64_t n_kv = 0;
  std::vector<T> tensors;
  uint32_t version = 3;
  uint64_t alignment = 32;
  std::optional<uint64_t> force_n_kv, force_n_tensors;

  void key(const std::string& k, uint32_t type) {
    put_str(kv, k);
    put<uint32_t>(kv, type);
    ++n_kv;
  }
  void u32(const std::string& k, uint32_t v) { key(k, kU32); put(kv, v); }
  void f32(const std::string& k, float v) { key(k, kF32); put(kv, v); }
  void str(const std::string& k, const std::string& v) { key(k, kString); put_str(kv, v); }
  void strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, kArray);
    put<uint32_t>(kv, kString);
    put<uint64_t>(kv, v.size());
    for (const auto& s : v) put_str(kv, s);
  }
  void tensor(const std::string& name, std::vector<uint64_t> ne, Bytes data = {}, uint32_t type = 0) {
    if (data.empty() && type == 0) {
      uint64_t n = 1;
      for (auto d : ne) n *= d;
      data = floats(size_t(n));
    }
    tensors.push_back({name, std::move(ne), type, std::move(data), std::nullopt});
  }

  Bytes build() const {
    Bytes b = {'G', 'G', 'U', 'F'};
    put<uint32_t>(b, version);
    put<uint64_t>(b, force_n_tensors.value_or(tensors.size()));
    put<uint64_t>(b, force_n_kv.value_or(n_kv));
    b.insert(b.end(), kv.begin(), kv.end());
    uint64_t off = 0;
    std::vector<uint64_t> offsets;
    for (const T& t : tensors) {
      put_str(b, t.name);
      put<uint32_t>(b, uint32_t(t.ne.size()));
      for (auto d : t.ne) put<uint64_t>(b, d);
      put<uint32_t>(b, t.type);
      offsets.push_back(off);
      put<uint64_t>(b, t.offset.value_or(off));
      off += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    b.resize((b.size() + alignment - 1) / alignment * alignment, 0);
    const size_t data_start = b.size();
    for (size_t i = 0; i < tensors.size(); ++i) {  // no padding after the last tensor
      b.resize(data_start + offsets[i] + tensors[i].data.size(), 0);
      std::memcpy(b.data() + data_start + offsets[i], tensors[i].data.data(), tensors[i].data.size());
    }
    return b;
  }
};

// A tiny llama in GGUF: dim 8, 2 heads of 4, 1 kv head, hidden 16, n_layers layers, vocab 10.
GGUFWriter tiny_llama_gguf(const std::string& arch = "llama", int n_layers = 2, bool tied = false) {
  GGUFWriter w;
  w.str("general.architecture", arch);
  w.str("general.name", "tiny");
  const std::string p = arch + ".";
  w.u32(p + "block_count", uint32_t(n_layers));
  w.u32(p + "context_length", 64);
  w.u32(p + "embedding_length", 8);
  w.u32(p + "feed_forward_length", 16);
  w.u32(p + "attention.head_count", 2);
  w.u32(p + "attention.head_count_kv", 1);
  w.f32(p + "attention.layer_norm_rms_epsilon", 1e-6f);
  w.f32(p + "rope.freq_base", 500000.f);
  w.u32(p + "vocab_size", 10);
  w.tensor("token_embd.weight", {8, 10});  // ne: innermost first
  for (int l = 0; l < n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    w.tensor(b + "attn_norm.weight", {8});
    w.tensor(b + "attn_q.weight", {8, 8});
    w.tensor(b + "attn_k.weight", {8, 4});
    w.tensor(b + "attn_v.weight", {8, 4});
    if (arch == "qwen2") {
      w.tensor(b + "attn_q.bias", {8});
      w.tensor(b + "attn_k.bias", {4});
      w.tensor(b + "attn_v.bias", {4});
    }
    w.tensor(b + "attn_output.weight", {8, 8});
    w.tensor(b + "ffn_norm.weight", {8});
    w.tensor(b + "ffn_gate.weight", {8, 16});
    w.tensor(b + "ffn_up.weight", {8, 16});
    w.tensor(b + "ffn_down.weight", {16, 8});
  }
  w.tensor("output_norm.weight", {8});
  if (!tied) w.tensor("output.weight", {8, 10});
  return w;
}

// A small valid GGUF with every metadata type, for hostile edits.
GGUFWriter small_gguf() {
  GGUFWriter w;
  w.str("general.architecture", "llama");
  w.key("k.u8", kU8); put<uint8_t>(w.kv, 7);
  w.key("k.i16", kI16); put<int16_t>(w.kv, -3);
  w.key("k.bool", kBool); put<uint8_t>(w.kv, 1);
  w.key("k.u64", kU64); put<uint64_t>(w.kv, 1ull << 40);
  w.key("k.f64", kF64); put<double>(w.kv, 2.5);
  w.key("k.ints", kArray); put<uint32_t>(w.kv, kI32); put<uint64_t>(w.kv, 3);
  for (int32_t v : {1, -2, 3}) put(w.kv, v);
  w.strs("k.strs", {"a", "bc", ""});
  w.tensor("a", {4, 2});
  w.tensor("b", {3});
  return w;
}

// ---- GGUF -------------------------------------------------------------------------------------------

TEST(GGUF, SmallFileParses) {
  auto f = parse_gguf(small_gguf().build());
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(*f->get_int("k.u8"), 7);
  EXPECT_EQ(*f->get_int("k.i16"), -3);
  EXPECT_TRUE(*f->get_bool("k.bool"));
  EXPECT_EQ(*f->get_int("k.u64"), int64_t(1) << 40);
  EXPECT_DOUBLE_EQ(*f->get_float("k.f64"), 2.5);
  EXPECT_EQ(*f->get_int_array("k.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f->get_string_array("k.strs")->size(), 3u);
  EXPECT_THROW(f->get_string("k.u8"), Error);
  Tensor a = f->tensor("a");
  ASSERT_EQ(a.ndim(), 2);
  EXPECT_EQ(a.dim(0), 2);
  EXPECT_EQ(a.dim(1), 4);
  EXPECT_FLOAT_EQ(a.ptr<float>()[5], 0.05f);
  EXPECT_THROW(f->tensor("missing"), Error);
}

TEST(GGUF, TruncatedAtEveryByteThrows) {
  const Bytes full = small_gguf().build();
  for (size_t n = 0; n < full.size(); ++n) {
    Bytes b(full.begin(), full.begin() + long(n));
    EXPECT_THROW(parse_gguf(b), Error) << "prefix of " << n << " of " << full.size() << " bytes";
  }
  EXPECT_NO_THROW(parse_gguf(full));
}

TEST(GGUF, HostileHeaders) {
  {  // not GGUF / bad version
    Bytes b = small_gguf().build();
    b[0] = 'X';
    EXPECT_TRUE(message_has([&] { parse_gguf(b); }, "not a GGUF file"));
    GGUFWriter w = small_gguf();
    w.version = 1;
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "version 1"));
  }
  {  // huge counts
    GGUFWriter w = small_gguf();
    w.force_n_kv = 1ull << 60;
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "cannot fit"));
    w = small_gguf();
    w.force_n_tensors = ~0ull;
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "cannot fit"));
  }
  {  // huge array and string lengths
    GGUFWriter w;
    w.key("big", kArray);
    put<uint32_t>(w.kv, kU64);
    put<uint64_t>(w.kv, 1ull << 62);
    EXPECT_THROW(parse_gguf(w.build()), Error);
    GGUFWriter s;
    s.key("big", kString);
    put<uint64_t>(s.kv, ~0ull);
    EXPECT_THROW(parse_gguf(s.build()), Error);
  }
  {  // invalid bool, unknown value type, nested array, duplicate key
    GGUFWriter w;
    w.key("flag", kBool);
    put<uint8_t>(w.kv, 2);
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "bool"));
    GGUFWriter u;
    u.key("odd", 13);
    put<uint32_t>(u.kv, 0);
    EXPECT_TRUE(message_has([&] { parse_gguf(u.build()); }, "unknown value type"));
    GGUFWriter n;
    n.key("nested", kArray);
    put<uint32_t>(n.kv, kArray);
    put<uint64_t>(n.kv, 1);
    put<uint32_t>(n.kv, kU8);
    put<uint64_t>(n.kv, 1);
    put<uint8_t>(n.kv, 0);
    EXPECT_TRUE(message_has([&] { parse_gguf(n.build()); }, "array of arrays"));
    GGUFWriter d;
    d.u32("x", 1);
    d.u32("x", 2);
    EXPECT_TRUE(message_has([&] { parse_gguf(d.build()); }, "twice"));
  }
  {  // bad alignment value
    GGUFWriter w = small_gguf();
    w.u32("general.alignment", 24);
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "power of two"));
  }
}

TEST(GGUF, HostileTensors) {
  {  // offset past the end
    GGUFWriter w = small_gguf();
    w.tensors[1].offset = 1ull << 50;
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "past the end"));
    w.tensors[1].offset = ~0ull - 31;  // aligned, and offset + size overflows
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "past the end"));
  }
  {  // unaligned offset
    GGUFWriter w = small_gguf();
    w.tensors[1].offset = 4;
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "not aligned"));
  }
  {  // overflowing and zero shapes, too many dims
    GGUFWriter w = small_gguf();
    w.tensors[0].ne = {1ull << 40, 1ull << 40, 1ull << 40};
    EXPECT_THROW(parse_gguf(w.build()), Error);
    w.tensors[0].ne = {~0ull};
    EXPECT_THROW(parse_gguf(w.build()), Error);
    w.tensors[0].ne = {0};
    EXPECT_THROW(parse_gguf(w.build()), Error);
    w.tensors[0].ne = {1, 1, 1, 1, 1};
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "dimensions"));
  }
  {  // quantized row not a whole number of blocks; duplicate name
    GGUFWriter w = small_gguf();
    w.tensors[0].type = 2;  // q4_0: blocks of 32
    w.tensors[0].ne = {16};
    EXPECT_TRUE(message_has([&] { parse_gguf(w.build()); }, "block size"));
    GGUFWriter d = small_gguf();
    d.tensors[1].name = "a";
    EXPECT_TRUE(message_has([&] { parse_gguf(d.build()); }, "twice"));
  }
  {  // an unsupported type parses, but asking for the tensor names the type
    GGUFWriter w = small_gguf();
    w.tensors[1].type = 16;  // IQ2_XXS
    auto f = parse_gguf(w.build());
    EXPECT_TRUE(message_has([&] { f->tensor("b"); }, "IQ2_XXS"));
  }
}

TEST(GGUF, TinyLlamaLoads) {
  TempDir dir;
  const std::string path = dir.file("tiny.gguf", tiny_llama_gguf().build());
  ModelSource m = load_gguf_model(path);
  EXPECT_EQ(m.format, "gguf");
  EXPECT_EQ(m.config.arch, "llama");
  EXPECT_EQ(m.config.name, "tiny");
  EXPECT_EQ(m.config.n_layers, 2);
  EXPECT_EQ(m.config.dim, 8);
  EXPECT_EQ(m.config.n_heads, 2);
  EXPECT_EQ(m.config.n_kv_heads, 1);
  EXPECT_EQ(m.config.head_dim, 4);
  EXPECT_EQ(m.config.rope_dim, 4);
  EXPECT_EQ(m.config.hidden_dim, 16);
  EXPECT_EQ(m.config.vocab_size, 10);
  EXPECT_EQ(m.config.max_seq_len, 64);
  EXPECT_FLOAT_EQ(m.config.rope_theta, 500000.f);
  EXPECT_FLOAT_EQ(m.config.norm_eps, 1e-6f);
  EXPECT_EQ(m.config.rope_style, RopeStyle::kInterleaved);
  EXPECT_FALSE(m.config.tied_embeddings);
  EXPECT_FALSE(m.config.qkv_bias);
  EXPECT_EQ(m.tokenizer, nullptr);  // the file has no tokenizer.ggml.* keys
  ASSERT_TRUE(m.weights.count("blk.1.attn_k.weight"));
  EXPECT_EQ(m.weights["blk.1.attn_k.weight"].shape_str(), "[4, 8]");
  EXPECT_EQ(m.weights["token_embd.weight"].shape_str(), "[10, 8]");
  EXPECT_EQ(m.weights["blk.0.ffn_down.weight"].shape_str(), "[8, 16]");
  // Views, not copies: the data lies inside the mapped file.
  EXPECT_EQ(m.weights["output.weight"].owner(), m.weights["token_embd.weight"].owner());

  ModelSource o = open_model(path);
  EXPECT_EQ(o.format, "gguf");

  ModelSource tied = load_gguf_model(dir.file("tied.gguf", tiny_llama_gguf("llama", 1, true).build()));
  EXPECT_TRUE(tied.config.tied_embeddings);

  ModelSource q = load_gguf_model(dir.file("qwen.gguf", tiny_llama_gguf("qwen2", 1).build()));
  EXPECT_EQ(q.config.rope_style, RopeStyle::kHalfSplit);
  EXPECT_TRUE(q.config.qkv_bias);
}

TEST(GGUF, ModelErrorsNameTheProblem) {
  TempDir dir;
  {
    GGUFWriter w = tiny_llama_gguf("gpt2", 1);
    const std::string p = dir.file("gpt2.gguf", w.build());
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "'gpt2' is not supported"));
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "llama, mistral, qwen2"));
  }
  {  // wrong shape: attn_q as [4, 8] instead of [8, 8]
    GGUFWriter w = tiny_llama_gguf("llama", 2);
    for (auto& t : w.tensors)
      if (t.name == "blk.1.attn_q.weight") { t.ne = {8, 4}; t.data.resize(32 * 4); }
    const std::string p = dir.file("shape.gguf", w.build());
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "'blk.1.attn_q.weight' has shape [4, 8], expected [8, 8]"));
  }
  {  // missing weight
    GGUFWriter w = tiny_llama_gguf("llama", 2);
    std::erase_if(w.tensors, [](const auto& t) { return t.name == "blk.1.ffn_up.weight"; });
    const std::string p = dir.file("missing.gguf", w.build());
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "'blk.1.ffn_up.weight' is missing"));
  }
  {  // missing metadata; absurd metadata
    GGUFWriter w;
    w.str("general.architecture", "llama");
    w.u32("llama.embedding_length", 8);
    const std::string p = dir.file("meta.gguf", w.build());
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "block_count"));
    GGUFWriter h = tiny_llama_gguf("llama", 1);
    h.key("llama.attention.head_count", kU64);  // duplicate key: rejected by the parser itself
    put<uint64_t>(h.kv, 1ull << 40);
    EXPECT_THROW(load_gguf_model(dir.file("dup.gguf", h.build())), Error);
  }
  {  // a matrix of an integer type
    GGUFWriter w = tiny_llama_gguf("llama", 1);
    for (auto& t : w.tensors)
      if (t.name == "blk.0.attn_v.weight") t.type = 26;  // i32, same byte size as f32
    const std::string p = dir.file("int.gguf", w.build());
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "integer type"));
  }
  {  // vocabulary only (a tokenizer GGUF) is not a model
    GGUFWriter w;
    w.strs("tokenizer.ggml.tokens", {"a", "b"});
    const std::string p = dir.file("vocab.gguf", w.build());
    EXPECT_TRUE(message_has([&] { load_gguf_model(p); }, "general.architecture"));
  }
}

TEST(GGUF, SharedVocabFilesAreNotModels) {
  const std::string p = std::string(IGNIS_SHARED_DATA) + "/ggml-vocab-llama-spm.gguf";
  ASSERT_TRUE(fs::exists(p)) << p << " is missing: the shared data must sit beside the checkout";
  EXPECT_THROW(open_model(p), Error);
}

TEST(GGUF, SmolLM2Config) {
  const char* home = std::getenv("HOME");
  const std::string p = std::string(home ? home : "") + "/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << p << " not present";
  auto g = GGUFFile::open(p);
  EXPECT_EQ(g->tensors().size(), 272u);
  EXPECT_EQ(g->find_tensor("output.weight"), nullptr);
  LOAD_MODEL(m, open_model(p));
  const LlamaConfig& c = m.config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_seq_len, 8192);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.f);
  EXPECT_NEAR(c.norm_eps, 1e-5f, 1e-9f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(m.weights.at("blk.0.attn_q.weight").dtype(), DType::Q4_1);
  EXPECT_EQ(m.weights.at("blk.0.attn_k.weight").shape_str(), "[192, 576]");
  EXPECT_EQ(m.weights.at("token_embd.weight").dtype(), DType::Q8_0);
  ASSERT_NE(m.tokenizer, nullptr);
  EXPECT_EQ(m.tokenizer->vocab_size(), 49152);
}

// ---- safetensors ------------------------------------------------------------------------------------

Bytes make_st(const std::string& header, const Bytes& data, bool pad = true) {
  std::string h = header;
  if (pad)
    while ((8 + h.size()) % 8) h += ' ';
  Bytes b;
  put<uint64_t>(b, h.size());
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

TEST(Safetensors, ValidFile) {
  const Bytes data = floats(6 + 2);
  Bytes all = data;
  put<int32_t>(all, 42);
  const std::string h =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},"i":{"dtype":"I32","shape":[],"data_offsets":[32,36]},)"
      R"("e":{"dtype":"F16","shape":[0,5],"data_offsets":[36,36]},"u":{"dtype":"U8","shape":[0],"data_offsets":[36,36]}})";
  auto f = parse_st(make_st(h, all));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->tensors().size(), 5u);
  Tensor w = f->tensor("w");
  EXPECT_EQ(w.shape_str(), "[2, 3]");
  EXPECT_FLOAT_EQ(w.ptr<float>()[4], 0.04f);
  EXPECT_EQ(f->tensor("i").ptr<int32_t>()[0], 42);
  EXPECT_EQ(f->tensor("i").ndim(), 0);
  EXPECT_EQ(f->tensor("e").numel(), 0);
  EXPECT_TRUE(message_has([&] { f->tensor("u"); }, "U8"));
  EXPECT_THROW(f->tensor("nope"), Error);

  // Unpadded header: the f32 data is not 4-byte aligned, and is copied rather than viewed.
  auto g = parse_st(make_st(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", floats(2), false));
  EXPECT_FLOAT_EQ(g->tensor("w").ptr<float>()[1], 0.01f);

  // Truncated at every byte: always an Error.
  const Bytes full = make_st(h, all);
  for (size_t n = 0; n < full.size(); ++n)
    EXPECT_THROW(parse_st(Bytes(full.begin(), full.begin() + long(n))), Error) << n;
}

TEST(Safetensors, HostileFiles) {
  const Bytes d = floats(8);
  auto bad = [&](const std::string& header, const std::string& needle, const Bytes& data) {
    EXPECT_TRUE(message_has([&] { parse_st(make_st(header, data)); }, needle)) << header;
  };
  bad(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
      "overlap", d);
  bad(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
      "overlap", d);
  bad(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[8,40]}})", "past the end", d);
  bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]}})",
      "data offset", d);
  bad(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", "should take 12 bytes", d);
  bad(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", "begin after end", d);
  bad(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", "negative", d);
  bad(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", "overflows", d);
  bad(R"({"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}})", "integer", d);
  bad(R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})", "unknown dtype", d);
  bad(R"({"a":{"shape":[4],"data_offsets":[0,16]}})", "dtype", d);
  bad(R"({"a":{"dtype":"F32","shape":[4]}})", "data_offsets", d);
  bad(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})",
      "twice", d);
  bad(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})", "invalid JSON", d);
  bad(R"({"a":[1,2,3]})", "not an object", d);
  bad(R"({"__metadata__":{"x":1}})", "not a string", d);
  bad(R"([1,2])", "does not start with '{'", d);
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "{\"a\":";
  bad(deep + "1" + std::string(100, '}'), "nested deeper", d);
  bad("{\"a\":\xff}", "invalid JSON", d);

  Bytes b;  // header length past the end / over the limit
  put<uint64_t>(b, 1000);
  b.insert(b.end(), {'{', '}'});
  EXPECT_TRUE(message_has([&] { parse_st(b); }, "runs past the end"));
  Bytes big(8 + (100u << 20) + 16, ' ');
  const uint64_t n = (100ull << 20) + 8;
  std::memcpy(big.data(), &n, 8);
  big[8] = '{';
  EXPECT_TRUE(message_has([&] { parse_st(big); }, "100 MiB"));
  EXPECT_THROW(parse_st(Bytes{1, 2, 3}), Error);
}

// ---- llama2.c -----------------------------------------------------------------------------------------

const std::string kStories = std::string(IGNIS_SHARED_DATA) + "/stories260K.bin";

TEST(Llama2c, Stories260KParses) {
  ASSERT_TRUE(fs::exists(kStories)) << kStories << " is missing: the shared data must sit beside the checkout";
  auto map = MappedFile::open(kStories);
  LlamaConfig c;
  std::map<std::string, Tensor> w;
  parse_llama2c(map->data(), map->size(), kStories, map, c, w);
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.f);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(w.at("blk.4.attn_k.weight").shape_str(), "[32, 64]");
  EXPECT_EQ(w.at("blk.4.ffn_down.weight").shape_str(), "[64, 172]");
  EXPECT_EQ(w.count("output.weight"), 0u);
  // The first float of the file after the header is token_embd[0][0].
  float first;
  std::memcpy(&first, map->data() + 28, 4);
  EXPECT_EQ(w.at("token_embd.weight").ptr<float>()[0], first);
  // RMS-norm weights of a trained model are positive and O(1).
  const float* g = w.at("output_norm.weight").ptr<float>();
  for (int i = 0; i < 64; ++i) EXPECT_GT(g[i], 0.f);
}

TEST(Llama2c, TruncatedOrPaddedThrows) {
  ASSERT_TRUE(fs::exists(kStories)) << kStories << " is missing: the shared data must sit beside the checkout";
  auto map = MappedFile::open(kStories);
  const size_t n = map->size();
  for (size_t len : {size_t(0), size_t(4), size_t(27), size_t(28), size_t(1000), n / 2, n - 4, n - 1}) {
    Bytes b(map->data(), map->data() + len);
    LlamaConfig c;
    std::map<std::string, Tensor> w;
    EXPECT_THROW(parse_llama2c(b.data(), b.size(), "cut", nullptr, c, w), Error) << len;
  }
  Bytes more(map->data(), map->data() + n);
  more.push_back(0);
  LlamaConfig c;
  std::map<std::string, Tensor> w;
  EXPECT_TRUE(message_has([&] { parse_llama2c(more.data(), more.size(), "x", nullptr, c, w); }, "trailing"));
  // Hostile headers: absurd sizes, heads not dividing dim.
  for (auto edit : std::vector<std::pair<int, int32_t>>{{0, -1}, {0, 1 << 30}, {3, 7}, {4, 3}, {5, 0},
                                                        {5, std::numeric_limits<int32_t>::min()}, {6, 0}}) {
    Bytes h(map->data(), map->data() + n);
    std::memcpy(h.data() + 4 * edit.first, &edit.second, 4);
    EXPECT_THROW(parse_llama2c(h.data(), h.size(), "x", nullptr, c, w), Error) << edit.first;
  }
  TempDir dir;
  const std::string p = dir.file("cut.bin", Bytes(map->data(), map->data() + n - 8));
  EXPECT_TRUE(message_has([&] { load_llama2c_model(p, ""); }, "truncated"));
  EXPECT_TRUE(message_has([&] { open_model(p); }, "truncated"));
}

TEST(Llama2c, Stories260KLoadsWithTokenizer) {
  ASSERT_TRUE(fs::exists(kStories)) << kStories << " is missing: the shared data must sit beside the checkout";
  {
    TempDir dir;  // a checkpoint alone: a clear error naming where the tokenizer was looked for
    fs::copy_file(kStories, dir.path / "model.bin");
    EXPECT_TRUE(message_has([&] { load_llama2c_model((dir.path / "model.bin").string(), ""); }, "tok512.bin"));
    // A 32000-token tokenizer.bin beside it is not taken for a 512-token model.
    const std::string big = std::string(IGNIS_SHARED_DATA) + "/tokenizer.bin";
    EXPECT_TRUE(message_has([&] { load_llama2c_model((dir.path / "model.bin").string(), big); }, "32000 tokens"));
  }
  LOAD_MODEL(m, open_model(kStories));  // finds tok512.bin beside it
  EXPECT_EQ(m.format, "llama2c");
  EXPECT_EQ(m.config.vocab_size, 512);
  ASSERT_NE(m.tokenizer, nullptr);
  EXPECT_EQ(m.tokenizer->vocab_size(), 512);
}

// ---- Hugging Face folders -------------------------------------------------------------------------------

// A safetensors file from (name, shape) pairs, f32, consecutive data.
Bytes st_file(const std::vector<std::pair<std::string, std::vector<int64_t>>>& tensors, const std::string& dtype = "F32") {
  const size_t esize = dtype == "F32" ? 4 : 2;
  std::string h = "{";
  uint64_t off = 0;
  Bytes data;
  for (const auto& [name, shape] : tensors) {
    uint64_t n = 1;
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
      n *= uint64_t(shape[i]);
      s += (i ? "," : "") + std::to_string(shape[i]);
    }
    s += "]";
    if (h.size() > 1) h += ",";
    h += "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + s + ",\"data_offsets\":[" + std::to_string(off) +
         "," + std::to_string(off + n * esize) + "]}";
    off += n * esize;
    const Bytes f = floats(size_t(n), float(data.size()));
    if (esize == 4) {
      data.insert(data.end(), f.begin(), f.end());
    } else {
      data.resize(data.size() + n * 2, 0x3f);
    }
  }
  return make_st(h + "}", data);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> tiny_hf_tensors(bool qwen, bool lm_head) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> t = {{"model.embed_tokens.weight", {10, 8}},
                                                                 {"model.norm.weight", {8}}};
  if (lm_head) t.push_back({"lm_head.weight", {10, 8}});
  for (int l = 0; l < 2; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".";
    t.push_back({b + "input_layernorm.weight", {8}});
    t.push_back({b + "post_attention_layernorm.weight", {8}});
    t.push_back({b + "self_attn.q_proj.weight", {8, 8}});
    t.push_back({b + "self_attn.k_proj.weight", {4, 8}});
    t.push_back({b + "self_attn.v_proj.weight", {4, 8}});
    t.push_back({b + "self_attn.o_proj.weight", {8, 8}});
    if (qwen) {
      t.push_back({b + "self_attn.q_proj.bias", {8}});
      t.push_back({b + "self_attn.k_proj.bias", {4}});
      t.push_back({b + "self_attn.v_proj.bias", {4}});
    }
    t.push_back({b + "mlp.gate_proj.weight", {16, 8}});
    t.push_back({b + "mlp.up_proj.weight", {16, 8}});
    t.push_back({b + "mlp.down_proj.weight", {8, 16}});
  }
  return t;
}

std::string tiny_hf_config(const std::string& arch = "LlamaForCausalLM", const std::string& extra = "") {
  return R"({"architectures":[")" + arch + R"("],"hidden_size":8,"intermediate_size":16,"num_hidden_layers":2,)"
         R"("num_attention_heads":2,"num_key_value_heads":1,"rms_norm_eps":1e-05,"rope_theta":10000.0,)"
         R"("max_position_embeddings":128,"vocab_size":10,"torch_dtype":"float32","hidden_act":"silu")" +
         extra + "}";
}

TEST(HF, TinyFolderLoads) {
  TempDir dir;
  dir.file("config.json", tiny_hf_config("LlamaForCausalLM", R"(,"tie_word_embeddings":false)"));
  dir.file("model.safetensors", st_file(tiny_hf_tensors(false, true)));
  dir.file("generation_config.json", std::string(R"({"temperature":0.6,"top_p":0.9,"top_k":20,"do_sample":true})"));
  ModelSource m = load_hf_model(dir.path.string());
  EXPECT_EQ(m.format, "hf");
  EXPECT_EQ(m.config.arch, "llama");
  EXPECT_EQ(m.config.n_layers, 2);
  EXPECT_EQ(m.config.head_dim, 4);
  EXPECT_EQ(m.config.max_seq_len, 128);
  EXPECT_EQ(m.config.rope_style, RopeStyle::kHalfSplit);
  EXPECT_FALSE(m.config.tied_embeddings);
  EXPECT_EQ(m.tokenizer, nullptr);
  EXPECT_FLOAT_EQ(m.default_temperature, 0.6f);
  EXPECT_FLOAT_EQ(m.default_top_p, 0.9f);
  EXPECT_EQ(m.default_top_k, 20);
  EXPECT_EQ(m.weights.at("blk.1.attn_k.weight").shape_str(), "[4, 8]");
  EXPECT_EQ(m.weights.at("blk.0.ffn_down.weight").shape_str(), "[8, 16]");
  EXPECT_EQ(m.weights.at("blk.0.attn_norm.weight").shape_str(), "[8]");
  EXPECT_EQ(m.weights.at("output.weight").shape_str(), "[10, 8]");
  EXPECT_EQ(m.weights.at("output_norm.weight").shape_str(), "[8]");
  EXPECT_EQ(m.weights.count("model.embed_tokens.weight"), 0u);
  EXPECT_FLOAT_EQ(m.weights.at("token_embd.weight").ptr<float>()[1], 0.01f);
  ModelSource o = open_model(dir.path.string());
  EXPECT_EQ(o.format, "hf");
}

TEST(HF, ShardedQwenAndBf16) {
  TempDir dir;
  dir.file("config.json", tiny_hf_config("Qwen2ForCausalLM", R"(,"tie_word_embeddings":true)"));
  auto t = tiny_hf_tensors(true, false);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> a(t.begin(), t.begin() + 5), b(t.begin() + 5, t.end());
  dir.file("model-00001-of-00002.safetensors", st_file(a, "BF16"));
  dir.file("model-00002-of-00002.safetensors", st_file(b, "BF16"));
  std::string idx = R"({"metadata":{"total_size":0},"weight_map":{)";
  for (size_t i = 0; i < t.size(); ++i)
    idx += (i ? "," : "") + ("\"" + t[i].first + "\":\"model-0000" + (i < 5 ? "1" : "2") + "-of-00002.safetensors\"");
  dir.file("model.safetensors.index.json", idx + "}}");
  ModelSource m = load_hf_model(dir.path.string());
  EXPECT_EQ(m.config.arch, "qwen2");
  EXPECT_TRUE(m.config.qkv_bias);
  EXPECT_TRUE(m.config.tied_embeddings);
  EXPECT_EQ(m.weights.at("blk.1.attn_v.bias").shape_str(), "[4]");
  EXPECT_EQ(m.weights.at("blk.1.attn_v.weight").dtype(), DType::BF16);
  EXPECT_EQ(m.weights.count("output.weight"), 0u);

  // A shard the index names is missing.
  fs::remove(dir.path / "model-00002-of-00002.safetensors");
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "model-00002-of-00002.safetensors"));
  // The index points a tensor at a shard that does not hold it.
  dir.file("model-00002-of-00002.safetensors", st_file(a, "BF16"));
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "does not hold"));
  // A shard path outside the folder.
  dir.file("model.safetensors.index.json", std::string(R"({"weight_map":{"x":"../x.safetensors"}})"));
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "not a plain file name"));
}

TEST(HF, FolderErrors) {
  TempDir dir;
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "config.json"));
  dir.file("config.json", tiny_hf_config("GPT2LMHeadModel"));
  dir.file("model.safetensors", st_file(tiny_hf_tensors(false, true)));
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "'GPT2LMHeadModel' is not supported"));
  // lm_head missing without tie_word_embeddings
  dir.file("config.json", tiny_hf_config());
  dir.file("model.safetensors", st_file(tiny_hf_tensors(false, false)));
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "lm_head.weight is missing"));
  // a wrong shape is named by its GGUF name
  auto t = tiny_hf_tensors(false, true);
  for (auto& [name, shape] : t)
    if (name == "model.layers.1.mlp.up_proj.weight") shape = {8, 16};
  dir.file("config.json", tiny_hf_config());
  dir.file("model.safetensors", st_file(t));
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "'blk.1.ffn_up.weight' has shape [8, 16]"));
  // no weights at all
  fs::remove(dir.path / "model.safetensors");
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "model.safetensors"));
  // bad generation_config.json
  dir.file("model.safetensors", st_file(tiny_hf_tensors(false, true)));
  dir.file("generation_config.json", std::string(R"({"temperature":"hot"})"));
  EXPECT_TRUE(message_has([&] { load_hf_model(dir.path.string()); }, "temperature"));
}

TEST(HF, ConfigParsing) {
  LlamaConfig c = parse_hf_llama_config(
      tiny_hf_config("LlamaForCausalLM",
                     R"(,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,)"
                     R"("high_freq_factor":4.0,"original_max_position_embeddings":8192},"head_dim":null)"),
      "cfg");
  EXPECT_EQ(c.rope_scaling, RopeScaling::kLlama3);
  EXPECT_FLOAT_EQ(c.rope_factor, 8.f);
  EXPECT_EQ(c.rope_original_max_pos, 8192);
  EXPECT_EQ(c.head_dim, 4);
  c = parse_hf_llama_config(tiny_hf_config("MistralForCausalLM", R"(,"rope_scaling":{"type":"linear","factor":2},"sliding_window":64)"), "cfg");
  EXPECT_EQ(c.arch, "mistral");
  EXPECT_EQ(c.rope_scaling, RopeScaling::kLinear);
  EXPECT_FLOAT_EQ(c.rope_factor, 2.f);
  EXPECT_EQ(c.max_seq_len, 64);
  c = parse_hf_llama_config(R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,)"
                            R"("num_attention_heads":4,"vocab_size":100})", "cfg");
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.tied_embeddings);

  auto bad = [](const std::string& text, const std::string& needle) {
    EXPECT_TRUE(message_has([&] { parse_hf_llama_config(text, "cfg"); }, needle)) << text;
  };
  bad(tiny_hf_config("BertModel"), "'BertModel'");
  bad(R"({"model_type":"gpt2"})", "'gpt2'");
  bad("{", "invalid JSON");
  bad("[]", "not a JSON object");
  bad("", "invalid JSON");
  bad(tiny_hf_config("LlamaForCausalLM", R"(,"hidden_size":8)"), "twice");
  bad(R"({"architectures":["LlamaForCausalLM"]})", "hidden_size");
  bad(R"({"architectures":["LlamaForCausalLM"],"hidden_size":1e30})", "integer");
  bad(R"({"architectures":["LlamaForCausalLM"],"hidden_size":99999999999999999999})", "hidden_size");
  bad(R"({"architectures":["LlamaForCausalLM"],"hidden_size":-8})", "hidden_size");
  bad(R"({"architectures":["LlamaForCausalLM"],"hidden_size":"8"})", "integer");
  bad(R"({"architectures":"LlamaForCausalLM"})", "architectures");
  std::string rs = tiny_hf_config("LlamaForCausalLM", R"(,"rope_scaling":{"type":"yarn","factor":4})");
  bad(rs, "yarn");
  bad(tiny_hf_config("LlamaForCausalLM", R"(,"rope_scaling":{"type":"linear"})"), "factor");
  bad(tiny_hf_config("LlamaForCausalLM", R"(,"attention_bias":true)"), "attention_bias");
  std::string t = tiny_hf_config();
  t.replace(t.find("\"num_key_value_heads\":1"), 23, "\"num_key_value_heads\":3");
  bad(t, "key/value heads");
  t = tiny_hf_config();
  t.replace(t.find("\"rms_norm_eps\":1e-05"), 20, "\"rms_norm_eps\":1e99");
  bad(t, "rms_norm_eps");
  t = tiny_hf_config();
  t.replace(t.find("\"rope_theta\":10000.0"), 20, "\"rope_theta\":1e300");
  bad(t, "rope_theta");
  bad(std::string(10000, '['), "nested deeper");
}

TEST(IO, OpenModelDispatch) {
  TempDir dir;
  EXPECT_TRUE(message_has([&] { open_model((dir.path / "nope.gguf").string()); }, "does not exist"));
  EXPECT_TRUE(message_has([&] { open_model(""); }, "no model"));
  const std::string junk = dir.file("junk.bin", std::string("hello, this is not a model at all"));
  EXPECT_TRUE(message_has([&] { open_model(junk); }, "GGUF file, a Hugging Face folder"));
  const std::string empty = dir.file("empty.bin", std::string());
  EXPECT_THROW(open_model(empty), Error);
  const std::string st = dir.file("model.safetensors", st_file({{"a", {2}}}));
  EXPECT_TRUE(message_has([&] { open_model(st); }, "lone safetensors"));
  // A GGUF file that is cut short is reported as such.
  Bytes g = tiny_llama_gguf().build();
  g.resize(g.size() - 40);
  const std::string cut = dir.file("cut.gguf", g);
  EXPECT_TRUE(message_has([&] { open_model(cut); }, "truncated"));
}

TEST(IO, ParseJsonNeverLeaksNlohmannExceptions) {
  for (const char* s : {"", "{", "}", "[1,]", "{\"a\" 1}", "nul", "\"\\uD800\"", "1e999999", "{\"a\":1,\"a\":2}",
                        "\"\xc3\x28\""}) {
    try {
      parse_json(s, "t");
    } catch (const Error&) {
    }
  }
  EXPECT_NO_THROW(parse_json(R"({"a":{"a":1},"b":{"a":2}})", "t"));  // same key in different objects is fine
}

}  // namespace
