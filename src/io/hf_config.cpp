// Hugging Face config.json -> LlamaConfig, for the Llama family (Llama, Mistral, Qwen2).
// The text is untrusted: every field is type- and range-checked, nothing is cast blindly.
#include <cmath>
#include <limits>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/model_source.h"
#include "io/reader.h"

namespace ignis {

using json = nlohmann::json;

namespace {

struct Arch {
  const char* hf_class;
  const char* model_type;
  const char* arch;
};
constexpr Arch kArchs[] = {
    {"LlamaForCausalLM", "llama", "llama"},
    {"MistralForCausalLM", "mistral", "mistral"},
    {"Qwen2ForCausalLM", "qwen2", "qwen2"},
};
constexpr const char* kSupported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";

class Fields {
 public:
  Fields(const json& j, const std::string& what) : j_(j), what_(what) {}

  // nullptr when the key is absent or JSON null (HF writes null for "use the default").
  const json* get(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  int integer(const char* key, std::optional<int> def, int lo, int hi) const {
    const json* v = get(key);
    if (!v) {
      if (!def) fail(what_, ": \"", key, "\" is missing");
      return *def;
    }
    int64_t x;
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      x = u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max() : int64_t(u);
    } else if (v->is_number_integer()) {
      x = v->get<int64_t>();
    } else {
      fail(what_, ": \"", key, "\" must be an integer");
    }
    if (x < lo || x > hi) fail(what_, ": \"", key, "\" is ", x, " (expected ", lo, " to ", hi, ")");
    return int(x);
  }

  float number(const char* key, float def) const {
    const json* v = get(key);
    if (!v) return def;
    return to_float(*v, key);
  }

  float to_float(const json& v, const std::string& key) const {
    if (!v.is_number()) fail(what_, ": \"", key, "\" must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > double(std::numeric_limits<float>::max()))
      fail(what_, ": \"", key, "\" is ", d, ", out of range");
    return float(d);
  }

  bool boolean(const char* key, bool def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(what_, ": \"", key, "\" must be true or false");
    return v->get<bool>();
  }

  std::string string(const char* key) const {
    const json* v = get(key);
    if (!v) return {};
    if (!v->is_string()) fail(what_, ": \"", key, "\" must be a string");
    return v->get<std::string>();
  }

 private:
  const json& j_;
  const std::string& what_;
};

}  // namespace

LlamaConfig parse_hf_llama_config(const std::string& json_text, const std::string& what) {
  const json j = parse_json(json_text, what);
  if (!j.is_object()) fail(what, ": config.json is not a JSON object");
  Fields f(j, what);

  // Which architecture: "architectures": ["LlamaForCausalLM"], else "model_type": "llama".
  const Arch* arch = nullptr;
  std::string found;
  if (const json* a = f.get("architectures")) {
    if (!a->is_array() || a->empty() || !(*a)[0].is_string())
      fail(what, ": \"architectures\" must be a non-empty list of class names");
    if (a->size() > 1) fail(what, ": \"architectures\" lists ", a->size(), " classes; ignis runs one");
    found = (*a)[0].get<std::string>();
    for (const Arch& x : kArchs)
      if (found == x.hf_class) arch = &x;
  } else {
    found = f.string("model_type");
    if (found.empty()) fail(what, ": neither \"architectures\" nor \"model_type\" says what model this is");
    for (const Arch& x : kArchs)
      if (found == x.model_type) arch = &x;
  }
  if (!arch) fail(what, ": architecture '", found, "' is not supported (ignis runs ", kSupported, ")");

  LlamaConfig c;
  c.arch = arch->arch;
  c.name = f.string("_name_or_path");
  c.dim = f.integer("hidden_size", std::nullopt, 1, 1 << 16);
  c.hidden_dim = f.integer("intermediate_size", std::nullopt, 1, 1 << 18);
  c.n_layers = f.integer("num_hidden_layers", std::nullopt, 1, 1024);
  c.n_heads = f.integer("num_attention_heads", std::nullopt, 1, 1024);
  c.n_kv_heads = f.integer("num_key_value_heads", c.n_heads, 1, 1024);
  c.head_dim = f.integer("head_dim", c.dim / c.n_heads, 1, 1024);
  c.rope_dim = c.head_dim;
  c.vocab_size = f.integer("vocab_size", std::nullopt, 1, 1 << 22);
  const int default_ctx = c.arch == "llama" ? 2048 : 32768;
  c.max_seq_len = f.integer("max_position_embeddings", default_ctx, 1, 1 << 24);
  c.norm_eps = f.number("rms_norm_eps", 1e-6f);
  c.rope_theta = f.number("rope_theta", 10000.0f);
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  c.rope_style = RopeStyle::kHalfSplit;  // HF checkpoints rotate halves; the converter never permuted q/k
  c.qkv_bias = c.arch == "qwen2";

  const std::string act = f.string("hidden_act");
  if (!act.empty() && act != "silu")
    fail(what, ": hidden_act \"", act, "\" is not supported (the Llama family uses silu)");
  if (f.boolean("attention_bias", false))
    fail(what, ": attention_bias = true (biases on the q/k/v/o projections) is not supported");
  if (f.boolean("mlp_bias", false)) fail(what, ": mlp_bias = true is not supported");
  if (f.boolean("use_sliding_window", false))
    fail(what, ": use_sliding_window = true (sliding-window attention) is not supported");
  if (c.arch == "mistral") {
    // Mistral's sliding window only matters past its length: cap the context there, which is exact.
    const int window = f.integer("sliding_window", c.max_seq_len, 1, 1 << 24);
    if (window < c.max_seq_len) c.max_seq_len = window;
  }
  if (const json* td = f.get("torch_dtype"); td && !td->is_string())
    fail(what, ": \"torch_dtype\" must be a string");

  // transformers >= 5 writes "rope_parameters" {rope_theta, rope_type, factor, ...} instead of
  // "rope_theta" + "rope_scaling"; read either.
  const json* rs = f.get("rope_scaling");
  if (const json* rp = f.get("rope_parameters")) {
    if (!rp->is_object()) fail(what, ": \"rope_parameters\" must be an object");
    Fields p(*rp, what);
    c.rope_theta = p.number("rope_theta", c.rope_theta);
    if (!rs) rs = rp;
  }
  if (rs) {
    if (!rs->is_object()) fail(what, ": \"rope_scaling\" must be an object or null");
    Fields r(*rs, what);
    std::string type = r.string("rope_type");
    if (type.empty()) type = r.string("type");
    auto factor = [&] {
      const json* v = r.get("factor");
      if (!v) fail(what, ": rope_scaling of type ", type, " needs a \"factor\"");
      return r.to_float(*v, "rope_scaling.factor");
    };
    if (type == "default" || type.empty()) {
      // plain RoPE
    } else if (type == "linear") {
      c.rope_scaling = RopeScaling::kLinear;
      c.rope_factor = factor();
    } else if (type == "llama3") {
      c.rope_scaling = RopeScaling::kLlama3;
      c.rope_factor = factor();
      c.rope_low_freq_factor = r.number("low_freq_factor", 1.0f);
      c.rope_high_freq_factor = r.number("high_freq_factor", 4.0f);
      c.rope_original_max_pos = r.integer("original_max_position_embeddings", 8192, 1, 1 << 24);
      if (!(c.rope_low_freq_factor > 0) || !(c.rope_high_freq_factor > c.rope_low_freq_factor))
        fail(what, ": llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor (got ", c.rope_low_freq_factor,
             ", ", c.rope_high_freq_factor, ")");
    } else {
      fail(what, ": rope_scaling type \"", type, "\" is not supported (ignis supports linear and llama3)");
    }
  }

  c.validate(what);
  if (c.head_dim * c.n_heads != c.dim && !f.get("head_dim"))
    fail(what, ": hidden_size ", c.dim, " is not a multiple of num_attention_heads ", c.n_heads,
         " and no head_dim is given");
  return c;
}

}  // namespace ignis
