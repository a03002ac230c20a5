// Model loading: GGUF files, Hugging Face folders and llama2.c checkpoints, each turned into
// a LlamaConfig plus weights under GGUF names. Every loader ends with the same check that each
// weight the model will read exists with the shape the config implies, so a bad file fails
// here with the tensor's name instead of somewhere inside a kernel.
#include "io/model_source.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/gguf.h"
#include "io/reader.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace ignis {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// ---- the weights a Llama-family model reads ------------------------------------------------------

struct Expected {
  std::string name;
  std::vector<int64_t> shape;  // row-major Tensor shape
  bool vector;                 // a norm weight or bias: must be a plain float type
};

std::vector<Expected> expected_weights(const LlamaConfig& c) {
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
  const int64_t q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  std::vector<Expected> e;
  e.push_back({"token_embd.weight", {V, D}, false});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    e.push_back({b + "attn_norm.weight", {D}, true});
    e.push_back({b + "attn_q.weight", {q, D}, false});
    e.push_back({b + "attn_k.weight", {kv, D}, false});
    e.push_back({b + "attn_v.weight", {kv, D}, false});
    if (c.qkv_bias) {
      e.push_back({b + "attn_q.bias", {q}, true});
      e.push_back({b + "attn_k.bias", {kv}, true});
      e.push_back({b + "attn_v.bias", {kv}, true});
    }
    e.push_back({b + "attn_output.weight", {D, q}, false});
    e.push_back({b + "ffn_norm.weight", {D}, true});
    e.push_back({b + "ffn_gate.weight", {H, D}, false});
    e.push_back({b + "ffn_up.weight", {H, D}, false});
    e.push_back({b + "ffn_down.weight", {D, H}, false});
  }
  e.push_back({"output_norm.weight", {D}, true});
  if (!c.tied_embeddings) e.push_back({"output.weight", {V, D}, false});
  return e;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Throws naming the first weight that is missing or has the wrong shape or type.
void check_llama_weights(const LlamaConfig& c, const std::map<std::string, Tensor>& w, const std::string& what) {
  for (const Expected& e : expected_weights(c)) {
    auto it = w.find(e.name);
    if (it == w.end()) fail(what, ": weight '", e.name, "' is missing");
    const Tensor& t = it->second;
    bool same = t.ndim() == int(e.shape.size());
    for (size_t i = 0; same && i < e.shape.size(); ++i) same = t.dim(int(i)) == e.shape[i];
    if (!same)
      fail(what, ": weight '", e.name, "' has shape ", t.shape_str(), ", expected ", shape_str(e.shape),
           " for this model's configuration");
    if (e.vector && !(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16))
      fail(what, ": weight '", e.name, "' has type ", dtype_name(t.dtype()), "; norms and biases must be f32, f16 or bf16");
    if (!e.vector && (t.dtype() == DType::I32 || t.dtype() == DType::I8))
      fail(what, ": weight '", e.name, "' has integer type ", dtype_name(t.dtype()), ", which is not a weight format");
  }
}

int to_int(int64_t v, const std::string& what, const std::string& key) {
  if (v < 0 || v > std::numeric_limits<int>::max()) fail(what, ": metadata '", key, "' is ", v, ", out of range");
  return int(v);
}

float to_float(double v, const std::string& what, const std::string& key) {
  if (!std::isfinite(v) || std::fabs(v) > double(std::numeric_limits<float>::max()))
    fail(what, ": metadata '", key, "' is ", v, ", out of range");
  return float(v);
}

// ---- GGUF -----------------------------------------------------------------------------------------

constexpr const char* kGGUFArchs[] = {"llama", "mistral", "qwen2"};

ModelSource load_gguf(const std::string& path, const std::string& tokenizer_path) {
  ModelSource src;
  src.path = path;
  src.format = "gguf";
  src.gguf = GGUFFile::open(path);
  const GGUFFile& g = *src.gguf;

  const auto arch = g.get_string("general.architecture");
  if (!arch) fail(path, ": the GGUF file has no general.architecture; is it a model (not just a vocabulary)?");
  bool known = false;
  for (const char* a : kGGUFArchs) known |= *arch == a;
  if (!known) fail(path, ": architecture '", *arch, "' is not supported (ignis runs GGUF llama, mistral, qwen2)");

  const std::string p = *arch + ".";
  auto req_int = [&](const std::string& key) {
    const auto v = g.get_int(p + key);
    if (!v) fail(path, ": metadata '", p + key, "' is missing");
    return to_int(*v, path, p + key);
  };
  auto opt_int = [&](const std::string& key, int def) {
    const auto v = g.get_int(p + key);
    return v ? to_int(*v, path, p + key) : def;
  };
  auto opt_float = [&](const std::string& key, float def) {
    const auto v = g.get_float(p + key);
    return v ? to_float(*v, path, p + key) : def;
  };

  LlamaConfig c;
  c.arch = *arch;
  c.name = g.get_string("general.name").value_or("");
  c.n_layers = req_int("block_count");
  c.dim = req_int("embedding_length");
  c.hidden_dim = req_int("feed_forward_length");
  c.n_heads = req_int("attention.head_count");
  if (c.n_heads <= 0) fail(path, ": metadata '", p, "attention.head_count' is 0");
  c.n_kv_heads = opt_int("attention.head_count_kv", c.n_heads);
  c.head_dim = opt_int("attention.key_length", c.dim / c.n_heads);
  if (const auto vl = g.get_int(p + "attention.value_length"); vl && *vl != c.head_dim)
    fail(path, ": attention.value_length ", *vl, " differs from the key length ", c.head_dim, "; ignis needs them equal");
  c.rope_dim = opt_int("rope.dimension_count", c.head_dim);
  c.max_seq_len = req_int("context_length");
  c.norm_eps = opt_float("attention.layer_norm_rms_epsilon", 1e-5f);
  c.rope_theta = opt_float("rope.freq_base", 10000.0f);
  if (*arch == "qwen2") {
    c.rope_style = RopeStyle::kHalfSplit;  // NEOX-style rotation; the converter does not permute q/k
    c.qkv_bias = true;
  } else {
    c.rope_style = RopeStyle::kInterleaved;  // convert_hf_to_gguf permutes llama q/k to pairs (2i, 2i+1)
  }

  // RoPE scaling. (Llama 3.1-style scaling is stored as a rope_freqs.weight tensor, which is
  // passed through in the weight map like every other tensor.)
  const std::string stype = g.get_string(p + "rope.scaling.type").value_or("");
  if (stype == "linear") {
    c.rope_scaling = RopeScaling::kLinear;
    c.rope_factor = opt_float("rope.scaling.factor", 1.0f);
  } else if (stype.empty() || stype == "none") {
    if (const auto s = g.get_float(p + "rope.scale_linear"); s && *s != 1.0) {  // older files
      c.rope_scaling = RopeScaling::kLinear;
      c.rope_factor = to_float(*s, path, p + "rope.scale_linear");
    }
  } else {
    fail(path, ": rope scaling type '", stype, "' is not supported (ignis supports none and linear)");
  }
  if (c.rope_scaling != RopeScaling::kNone)
    c.rope_original_max_pos = opt_int("rope.scaling.original_context_length", c.max_seq_len);

  // Vocabulary size: the token list, else <arch>.vocab_size, else the embedding's rows.
  if (const auto* toks = g.get_string_array("tokenizer.ggml.tokens")) {
    const size_t n = toks->size();
    if (n == 0 || n > size_t(std::numeric_limits<int>::max()))
      fail(path, ": tokenizer.ggml.tokens holds ", n, " tokens");
    c.vocab_size = int(n);
  } else if (const auto vs = g.get_int(p + "vocab_size")) {
    c.vocab_size = to_int(*vs, path, p + "vocab_size");
  } else if (const GGUFTensorInfo* te = g.find_tensor("token_embd.weight"); te && te->ne.size() == 2) {
    if (te->ne[1] > std::numeric_limits<int>::max()) fail(path, ": token_embd.weight has too many rows");
    c.vocab_size = int(te->ne[1]);
  }
  c.tied_embeddings = g.find_tensor("output.weight") == nullptr;
  c.validate(path);

  // Weights: every tensor ignis can read, as a view into the map. A tensor the model needs
  // but whose type ignis cannot read fails with its type named.
  for (const auto& t : g.tensors())
    if (t.dtype) src.weights.emplace(t.name, g.tensor(t.name));
  for (const Expected& e : expected_weights(c))
    if (const GGUFTensorInfo* t = g.find_tensor(e.name); t && !t->dtype) (void)g.tensor(e.name);  // throws
  check_llama_weights(c, src.weights, path);

  if (const auto t = g.get_float("general.sampling.temp")) src.default_temperature = to_float(*t, path, "general.sampling.temp");
  if (const auto t = g.get_float("general.sampling.top_p")) src.default_top_p = to_float(*t, path, "general.sampling.top_p");
  if (const auto t = g.get_int("general.sampling.top_k")) src.default_top_k = to_int(*t, path, "general.sampling.top_k");
  src.config = std::move(c);

  if (!tokenizer_path.empty())
    src.tokenizer = Tokenizer::from_hf_json(tokenizer_path);
  else if (g.has("tokenizer.ggml.model"))
    src.tokenizer = Tokenizer::from_gguf(g);
  return src;
}

// ---- Hugging Face folders ------------------------------------------------------------------------

// model.layers.N.<hf> -> blk.N.<gguf>; the suffix (.weight / .bias) is kept.
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"self_attn.q_proj", "attn_q"},      {"self_attn.k_proj", "attn_k"},   {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"},    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},       {"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"},
};

// The GGUF name of a Hugging Face tensor name, or "" if it is not one ignis knows.
std::string hf_to_gguf_name(const std::string& n) {
  if (n == "model.embed_tokens.weight") return "token_embd.weight";
  if (n == "model.norm.weight") return "output_norm.weight";
  if (n == "lm_head.weight") return "output.weight";
  const std::string pre = "model.layers.";
  if (n.compare(0, pre.size(), pre) != 0) return {};
  size_t i = pre.size(), j = i;
  while (j < n.size() && j - i < 6 && n[j] >= '0' && n[j] <= '9') ++j;
  if (j == i || j >= n.size() || n[j] != '.' || (n[i] == '0' && j - i > 1)) return {};
  const std::string layer = n.substr(i, j - i);
  const std::string rest = n.substr(j + 1);
  for (const auto& [hf, gg] : kLayerNames) {
    const std::string h = hf;
    for (const char* suffix : {".weight", ".bias"})
      if (rest == h + suffix) return "blk." + layer + "." + gg + suffix;
  }
  return {};
}

void read_generation_config(const fs::path& file, ModelSource& src) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return;
  const std::string what = file.string();
  const json j = parse_json(read_text_file(what), what);
  if (!j.is_object()) fail(what, ": not a JSON object");
  auto num = [&](const char* key) -> std::optional<double> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) fail(what, ": \"", key, "\" must be a number");
    const double v = it->get<double>();
    if (!std::isfinite(v) || v < 0 || v > 1e6) fail(what, ": \"", key, "\" is ", v, ", out of range");
    return v;
  };
  bool do_sample = true;
  if (auto it = j.find("do_sample"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) fail(what, ": \"do_sample\" must be true or false");
    do_sample = it->get<bool>();
  }
  if (auto t = num("temperature")) src.default_temperature = float(*t);
  if (auto t = num("top_p")) src.default_top_p = float(*t);
  if (auto t = num("top_k")) src.default_top_k = int(*t);
  if (!do_sample) src.default_temperature = 0;  // transformers decodes greedily then
}

ModelSource load_hf(const std::string& folder, const std::string& tokenizer_path) {
  ModelSource src;
  src.path = folder;
  src.format = "hf";
  const fs::path dir(folder);
  std::error_code ec;
  const fs::path cfg = dir / "config.json";
  if (!fs::is_regular_file(cfg, ec)) fail(folder, ": no config.json in this folder; is it a Hugging Face model?");
  LlamaConfig c = parse_hf_llama_config(read_text_file(cfg.string()), cfg.string());

  auto st = SafetensorsModel::open_folder(folder);
  std::map<std::string, std::string> origin;  // GGUF name -> HF name, to report collisions
  for (const std::string& hf : st->names()) {
    std::string name = hf_to_gguf_name(hf);
    Tensor t;
    if (name.empty()) {
      // Not a weight ignis uses (e.g. rotary_emb.inv_freq): kept under its own name if readable.
      name = hf;
      try {
        t = st->tensor(hf);
      } catch (const Error&) {
        continue;
      }
    } else {
      t = st->tensor(hf);
    }
    auto [it, fresh] = origin.emplace(name, hf);
    if (!fresh) fail(folder, ": tensors '", it->second, "' and '", hf, "' both map to '", name, "'");
    src.weights[name] = std::move(t);
  }
  if (!c.tied_embeddings && !src.weights.count("output.weight"))
    fail(folder, ": lm_head.weight is missing and config.json does not set tie_word_embeddings");
  check_llama_weights(c, src.weights, folder);
  src.config = std::move(c);

  read_generation_config(dir / "generation_config.json", src);
  if (!tokenizer_path.empty())
    src.tokenizer = Tokenizer::from_hf_json(tokenizer_path);
  else if (fs::is_regular_file(dir / "tokenizer.json", ec))
    src.tokenizer = Tokenizer::from_hf_json((dir / "tokenizer.json").string());
  return src;
}

// ---- llama2.c --------------------------------------------------------------------------------------

// Number of entries in a llama2.c tokenizer.bin (int32 max_token_length, then per token
// f32 score, int32 length, bytes), or nullopt if the file is not one.
std::optional<int64_t> llama2c_tokenizer_entries(const std::string& path) {
  std::shared_ptr<MappedFile> m;
  try {
    m = MappedFile::open(path);
  } catch (const Error&) {
    return std::nullopt;
  }
  ByteReader r(m->data(), m->size(), path);
  if (r.remaining() < 4) return std::nullopt;
  r.skip(4, "max_token_length");
  int64_t n = 0;
  while (r.remaining() > 0) {
    if (r.remaining() < 8) return std::nullopt;
    r.skip(4, "score");
    const int32_t len = r.read<int32_t>("length");
    if (len < 0 || size_t(len) > r.remaining()) return std::nullopt;
    r.skip(size_t(len), "token");
    ++n;
  }
  return n;
}

ModelSource load_llama2c(const std::string& path, const std::string& tokenizer_path) {
  ModelSource src;
  src.path = path;
  src.format = "llama2c";
  auto map = MappedFile::open(path);
  parse_llama2c(map->data(), map->size(), path, map, src.config, src.weights);
  check_llama_weights(src.config, src.weights, path);
  const int vocab = src.config.vocab_size;

  std::string tok = tokenizer_path;
  if (!tok.empty()) {
    std::error_code ec;
    if (!fs::is_regular_file(tok, ec)) fail("tokenizer '", tok, "' does not exist");
    const auto n = llama2c_tokenizer_entries(tok);
    if (n && *n != vocab)
      fail(tok, ": this tokenizer has ", *n, " tokens but the model '", path, "' has a vocabulary of ", vocab);
  } else {
    // tok{vocab}.bin first: a folder may also hold the 32000-token Llama 2 tokenizer.bin, which
    // would silently mis-decode a small model. A candidate must hold exactly `vocab` tokens.
    const fs::path dir = fs::path(path).parent_path();
    std::vector<fs::path> tried = {dir / ("tok" + std::to_string(vocab) + ".bin"), dir / "tokenizer.bin"};
    for (const fs::path& cand : tried) {
      const auto n = llama2c_tokenizer_entries(cand.string());
      if (n && *n == vocab) {
        tok = cand.string();
        break;
      }
    }
    if (tok.empty())
      fail(path, ": no tokenizer with ", vocab, " tokens found (looked for ", tried[0].string(), " and ",
           tried[1].string(), "); pass the tokenizer.bin path explicitly");
  }
  src.tokenizer = Tokenizer::from_llama2c(tok, vocab);
  return src;
}

// A llama2.c header is 7 int32 in small positive ranges (vocab may be negative).
bool looks_like_llama2c(const uint8_t* d, size_t size) {
  if (size < 28) return false;
  int32_t h[7];
  std::memcpy(h, d, sizeof h);
  const int32_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv = h[4], vocab = h[5], seq = h[6];
  return dim > 0 && dim <= (1 << 16) && hidden > 0 && hidden <= (1 << 18) && layers > 0 && layers <= 1024 &&
         heads > 0 && heads <= 1024 && kv > 0 && kv <= heads && vocab != 0 && vocab >= -(1 << 22) &&
         vocab <= (1 << 22) && seq > 0 && seq <= (1 << 24);
}

}  // namespace

ModelSource load_gguf_model(const std::string& path) { return load_gguf(path, ""); }
ModelSource load_hf_model(const std::string& folder) { return load_hf(folder, ""); }
ModelSource load_llama2c_model(const std::string& path, const std::string& tokenizer_path) {
  return load_llama2c(path, tokenizer_path);
}

ModelSource open_model(const std::string& path, const std::string& tokenizer_path) {
  if (path.empty()) fail("no model given: pass a GGUF file, a Hugging Face folder or a llama2.c checkpoint");
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail("model '", path, "' does not exist");
  if (fs::is_directory(st)) return load_hf(path, tokenizer_path);
  if (!fs::is_regular_file(st)) fail("model '", path, "' is not a file or a folder");

  auto map = MappedFile::open(path);
  const uint8_t* d = map->data();
  const size_t n = map->size();
  if (n >= 4 && std::memcmp(d, "GGUF", 4) == 0) {
    map.reset();
    return load_gguf(path, tokenizer_path);
  }
  if (looks_like_llama2c(d, n)) {
    map.reset();
    return load_llama2c(path, tokenizer_path);
  }
  // safetensors: a little-endian u64 header length, then that many bytes of JSON (starting '{')
  uint64_t hlen = 0;
  if (n >= 9) std::memcpy(&hlen, d, 8);
  if (n >= 9 && d[8] == '{' && hlen >= 2 && hlen <= n - 8)
    fail(path, ": this looks like a lone safetensors file; pass the Hugging Face folder holding it with its "
         "config.json (and tokenizer.json)");
  fail(path, ": not a model ignis can read; expected a GGUF file, a Hugging Face folder (config.json + "
       "*.safetensors + tokenizer.json) or a llama2.c checkpoint (.bin)");
}

}  // namespace ignis
