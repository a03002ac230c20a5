// Whole-model quantization, in-place (simulated) quantization, and GPTQ checkpoint folders
// (model_quant.h).
#include "quant/model_quant.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "io/reader.h"
#include "io/safetensors.h"
#include "ops/quant.h"
#include "quant/safetensors_writer.h"
#include "tokenizer/tokenizer.h"

namespace ignis::quant {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr std::pair<const char*, const char*> kLinear[] = {
    {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},     {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"}};
constexpr std::pair<const char*, const char*> kOther[] = {
    {"attn_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},       {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"}};

// Float copy of any weight tensor (plain or GGML blocks), [rows, cols].
Tensor to_f32(const Tensor& t) {
  Tensor out = Tensor::empty_like_shape(t.shape(), t.ndim(), DType::F32);
  for (int64_t r = 0; r < t.rows(); ++r) quant::dequantize_row(t.dtype(), t.row<void>(r), out.row<float>(r), t.cols());
  return out;
}

Tensor f32_tensor(const std::vector<float>& v, int64_t rows, int64_t cols) {
  Tensor t = Tensor::empty({rows, cols}, DType::F32);
  std::copy(v.begin(), v.end(), t.ptr<float>());
  return t;
}

// Rows of each head: interleaved pairs (2i, 2i+1) -> half-split pairs (i, i + d/2).
void permute_heads(Tensor& t, int heads, int hd) {
  const int64_t cols = t.cols();
  IGNIS_CHECK(t.rows() == int64_t(heads) * hd, "permute_heads: ", t.shape_str(), " is not ", heads, " heads of ", hd);
  std::vector<float> tmp(size_t(hd * cols));
  for (int h = 0; h < heads; ++h) {
    float* base = t.row<float>(int64_t(h) * hd);
    std::copy(base, base + hd * cols, tmp.begin());
    for (int i = 0; i < hd / 2; ++i) {
      std::copy_n(tmp.begin() + int64_t(2 * i) * cols, cols, base + int64_t(i) * cols);
      std::copy_n(tmp.begin() + int64_t(2 * i + 1) * cols, cols, base + int64_t(hd / 2 + i) * cols);
    }
  }
}

void write_text_atomic(const fs::path& p, const std::string& text) {
  const std::string tmp = p.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("cannot write '", tmp, "'");
    f << text;
    if (!f) fail("error writing '", tmp, "'");
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) fail("cannot rename '", tmp, "': ", ec.message());
}

std::string hf_layer_prefix(int l, const char* hf) { return "model.layers." + std::to_string(l) + "." + hf; }

json synth_config(const LlamaConfig& c) {
  json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = c.dim;
  j["intermediate_size"] = c.hidden_dim;
  j["num_hidden_layers"] = c.n_layers;
  j["num_attention_heads"] = c.n_heads;
  j["num_key_value_heads"] = c.n_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["tie_word_embeddings"] = c.tied_embeddings;
  j["hidden_act"] = "silu";
  if (c.rope_scaling == RopeScaling::kLinear) j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_factor}};
  if (c.rope_scaling == RopeScaling::kLlama3)
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_factor},
                         {"low_freq_factor", c.rope_low_freq_factor},
                         {"high_freq_factor", c.rope_high_freq_factor},
                         {"original_max_position_embeddings", c.rope_original_max_pos}};
  return j;
}

const char* hf_of_linear(const std::string& gguf_suffix) {
  for (const auto& [g, h] : kLinear)
    if (gguf_suffix == g) return h;
  return nullptr;
}

}  // namespace

std::vector<std::string> linear_weight_names(const LlamaConfig& c) {
  std::vector<std::string> v;
  for (int l = 0; l < c.n_layers; ++l)
    for (const auto& [g, h] : kLinear) v.push_back("blk." + std::to_string(l) + "." + g + ".weight");
  return v;
}

bool quantizable(const QuantSpec& spec, int64_t N, int64_t K) {
  if (spec.format == QFormat::kInt8) return N > 0 && K % 4 == 0;
  return N > 0 && spec.group > 0 && K % spec.group == 0;
}

void to_hf_convention(ModelSource& src) {
  const LlamaConfig& c = src.config;
  const bool permute = c.rope_style == RopeStyle::kInterleaved;
  if (permute && c.rope_dim != c.head_dim)
    fail(src.path, ": partial rotary embeddings (rope_dim ", c.rope_dim, " < head_dim ", c.head_dim,
         ") with interleaved pairs cannot be converted to the Hugging Face layout");
  for (const std::string& name : linear_weight_names(c)) {
    auto it = src.weights.find(name);
    if (it == src.weights.end()) fail(src.path, ": weight '", name, "' is missing");
    Tensor t = to_f32(it->second);
    if (permute && name.find(".attn_q.") != std::string::npos) permute_heads(t, c.n_heads, c.head_dim);
    if (permute && name.find(".attn_k.") != std::string::npos) permute_heads(t, c.n_kv_heads, c.head_dim);
    it->second = t;
  }
  if (permute && c.qkv_bias) {
    for (int l = 0; l < c.n_layers; ++l)
      for (const auto& [nm, heads] : {std::pair{"attn_q", c.n_heads}, std::pair{"attn_k", c.n_kv_heads}}) {
        const std::string b = "blk." + std::to_string(l) + "." + nm + ".bias";
        auto it = src.weights.find(b);
        if (it == src.weights.end()) continue;
        Tensor t = to_f32(it->second).reshape({it->second.numel(), 1});
        permute_heads(t, heads, c.head_dim);
        it->second = t.reshape({t.numel()});
      }
  }
  src.config.rope_style = RopeStyle::kHalfSplit;
}

std::map<std::string, QuantLinear> quantize_model(ThreadPool& pool, const ModelSource& src,
                                                  const ModelQuantOptions& opt) {
  if (src.config.rope_style != RopeStyle::kHalfSplit)
    fail("quantize_model: convert the model with to_hf_convention first");
  if (opt.method == "gptq")
    return gptq_quantize_model(pool, src, opt.calib_tokens, opt.calib_seq_len, opt.spec, opt.gptq, opt.progress);
  if (opt.method != "rtn") fail("unknown quantization method '", opt.method, "' (rtn or gptq)");
  std::map<std::string, QuantLinear> out;
  const auto names = linear_weight_names(src.config);
  for (size_t i = 0; i < names.size(); ++i) {
    const Tensor& w = src.weights.at(names[i]);
    if (!quantizable(opt.spec, w.dim(0), w.dim(1))) continue;
    Tensor f = w.dtype() == DType::F32 ? w : to_f32(w);
    out[names[i]] = quantize_rtn(f.ptr<float>(), f.dim(0), f.dim(1), opt.spec, &pool);
    if (opt.progress) opt.progress(double(i + 1) / double(names.size()), names[i]);
  }
  return out;
}

void apply_dequantized(ModelSource& src, const std::map<std::string, QuantLinear>& layers) {
  for (const auto& [name, q] : layers) src.weights[name] = f32_tensor(dequantize(q), q.N, q.K);
}

std::vector<std::string> quantize_weights_in_place(ModelSource& src, const QuantSpec& spec, ThreadPool* pool) {
  std::vector<std::string> skipped;
  for (const std::string& name : linear_weight_names(src.config)) {
    auto it = src.weights.find(name);
    if (it == src.weights.end()) fail(src.path, ": weight '", name, "' is missing");
    if (!quantizable(spec, it->second.dim(0), it->second.dim(1))) {
      skipped.push_back(name);
      continue;
    }
    Tensor f = to_f32(it->second);
    const QuantLinear q = quantize_rtn(f.ptr<float>(), f.dim(0), f.dim(1), spec, pool);
    it->second = f32_tensor(dequantize(q), q.N, q.K);
  }
  return skipped;
}

void dequantize_weights_in_place(ModelSource& src, DType to_dtype) {
  IGNIS_CHECK(to_dtype == DType::F32 || to_dtype == DType::BF16, "dequantize_weights_in_place: f32 or bf16 only");
  for (auto& [name, t] : src.weights) {
    if (!is_quantized(t.dtype()) && t.dtype() != DType::F16 && t.dtype() != DType::BF16) continue;
    Tensor f = to_f32(t);
    if (to_dtype == DType::BF16) {
      Tensor b = Tensor::empty_like_shape(f.shape(), f.ndim(), DType::BF16);
      quant::quantize_row(DType::BF16, f.ptr<float>(), b.data(), f.numel());
      f = b;
    }
    t = f;
  }
}

// ---- saving ------------------------------------------------------------------------------------

void save_quantized_checkpoint(const ModelSource& src, const std::map<std::string, QuantLinear>& layers,
                               const SaveOptions& opt) {
  const LlamaConfig& c = src.config;
  if (c.rope_style != RopeStyle::kHalfSplit) fail("save_quantized_checkpoint: the model is not in HF convention");
  IGNIS_CHECK(!layers.empty(), "save_quantized_checkpoint: no quantized layers");
  const QuantLinear& first = layers.begin()->second;
  const bool int8 = first.format == QFormat::kInt8;
  bool any_asym = false, any_act = false;
  for (const auto& [n, q] : layers) {
    IGNIS_CHECK(q.format == first.format && q.group == (int8 ? q.K : first.group),
                "save_quantized_checkpoint: every layer must use the same format and group size (", n, ")");
    any_asym |= !q.symmetric();
    any_act |= !q.g_idx.empty();
  }
  const bool v2 = any_asym;  // see formats.h: v1 cannot hold a zero point of 0

  const fs::path dir(opt.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create the output folder '", opt.out_dir, "': ", ec.message());

  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  auto add_plain = [&](const std::string& hf, const Tensor& t) {
    if (t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16)
      w.add(hf, t);
    else
      w.add(hf, to_f32(t));
  };
  add_plain("model.embed_tokens.weight", src.weights.at("token_embd.weight"));
  std::vector<std::string> skipped;
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const auto& [g, h] : kOther) {
      auto it = src.weights.find(b + g);
      if (it != src.weights.end()) add_plain(hf_layer_prefix(l, h), it->second);
    }
    for (const auto& [g, h] : kLinear) {
      const std::string name = b + g + ".weight";
      auto it = layers.find(name);
      const std::string p = hf_layer_prefix(l, h);
      if (it == layers.end()) {  // left unquantized (see quantizable)
        add_plain(p + ".weight", src.weights.at(name));
        skipped.push_back(p);
        continue;
      }
      const GptqTensors t = to_gptq(it->second, v2);
      w.add(p + ".qweight", t.qweight);
      w.add(p + ".qzeros", t.qzeros);
      w.add(p + ".scales", t.scales);
      w.add(p + ".g_idx", t.g_idx);
    }
  }
  add_plain("model.norm.weight", src.weights.at("output_norm.weight"));
  if (!c.tied_embeddings) add_plain("lm_head.weight", src.weights.at("output.weight"));

  json cfg;
  if (src.format == "hf" && fs::is_regular_file(fs::path(src.path) / "config.json", ec)) {
    const std::string p = (fs::path(src.path) / "config.json").string();
    cfg = json::parse(read_text_file(p), nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object()) fail(p, ": not valid JSON");
  } else {
    cfg = synth_config(c);
  }
  cfg["quantization_config"] = {{"quant_method", "gptq"},
                                {"bits", first.bits()},
                                {"group_size", int8 ? -1 : first.group},
                                {"desc_act", any_act},
                                {"sym", !any_asym},
                                {"checkpoint_format", v2 ? "gptq_v2" : "gptq"},
                                {"quantizer", "ignis"}};
  if (!skipped.empty()) cfg["quantization_config"]["modules_to_not_convert"] = skipped;
  cfg["torch_dtype"] = "float16";

  // Write everything to temporary names first, then rename (no partial folder on error).
  w.write((dir / "model.safetensors").string());
  write_text_atomic(dir / "config.json", cfg.dump(2) + "\n");
  auto copy = [&](const fs::path& from, const fs::path& to) {
    std::error_code e;
    if (fs::exists(to, e)) fs::remove(to, e);
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, e);
    if (e) fail("cannot copy '", from.string(), "' to '", to.string(), "': ", e.message());
    fs::permissions(to, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add, e);  // from read-only data
  };
  if (src.format == "hf") {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                          "generation_config.json"})
      if (fs::is_regular_file(fs::path(src.path) / f, ec)) copy(fs::path(src.path) / f, dir / f);
  } else if (!opt.tokenizer_file.empty()) {
    copy(opt.tokenizer_file, dir / "tokenizer.bin");
  } else {
    std::fprintf(stderr, "warning: the tokenizer of '%s' cannot be written to a Hugging Face folder; pass "
                 "--tokenizer %s (the GGUF file itself works) when using %s\n", src.path.c_str(), src.path.c_str(),
                 opt.out_dir.c_str());
  }
}

// ---- loading -----------------------------------------------------------------------------------

bool is_quantized_checkpoint(const std::string& path) {
  std::error_code ec;
  const fs::path dir(path);
  if (!fs::is_directory(dir, ec)) return false;
  if (fs::is_regular_file(dir / "quantize_config.json", ec)) return true;
  if (!fs::is_regular_file(dir / "config.json", ec)) return false;
  const json j = json::parse(read_text_file((dir / "config.json").string()), nullptr, false);
  return j.is_object() && j.contains("quantization_config");
}

QuantizedCheckpoint load_quantized_checkpoint(const std::string& folder, const std::string& tokenizer_path,
                                              bool dequantize_layers) {
  QuantizedCheckpoint out;
  ModelSource& src = out.src;
  src.path = folder;
  src.format = "hf";
  const fs::path dir(folder);
  std::error_code ec;
  const fs::path cfg = dir / "config.json";
  if (!fs::is_regular_file(cfg, ec)) fail(folder, ": no config.json in this folder");
  const std::string cfg_text = read_text_file(cfg.string());
  src.config = parse_hf_llama_config(cfg_text, cfg.string());
  const json cj = json::parse(cfg_text, nullptr, false);
  if (cj.is_object() && cj.contains("quantization_config"))
    out.config = parse_gptq_config(cfg_text, cfg.string());
  else if (fs::is_regular_file(dir / "quantize_config.json", ec))
    out.config = parse_gptq_config(read_text_file((dir / "quantize_config.json").string()),
                                   (dir / "quantize_config.json").string());
  else
    fail(folder, ": config.json has no quantization_config (and there is no quantize_config.json)");
  const LlamaConfig& c = src.config;

  auto st = SafetensorsModel::open_folder(folder);
  auto plain = [&](const std::string& hf, const std::string& gguf, std::vector<int64_t> shape) {
    if (!st->has(hf)) fail(folder, ": tensor '", hf, "' is missing");
    Tensor t = st->tensor(hf);
    bool ok = t.ndim() == int(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = t.dim(int(i)) == shape[i];
    if (!ok) {
      std::string s = "[";
      for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
      fail(folder, ": tensor '", hf, "' has shape ", t.shape_str(), ", expected ", s, "]");
    }
    if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16)
      fail(folder, ": tensor '", hf, "' has type ", dtype_name(t.dtype()), ", expected a float type");
    src.weights[gguf] = t;
  };
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
  const int64_t qd = int64_t(c.n_heads) * c.head_dim, kvd = int64_t(c.n_kv_heads) * c.head_dim;
  plain("model.embed_tokens.weight", "token_embd.weight", {V, D});
  plain("model.norm.weight", "output_norm.weight", {D});
  if (!c.tied_embeddings) plain("lm_head.weight", "output.weight", {V, D});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    plain(hf_layer_prefix(l, "input_layernorm.weight"), b + "attn_norm.weight", {D});
    plain(hf_layer_prefix(l, "post_attention_layernorm.weight"), b + "ffn_norm.weight", {D});
    if (c.qkv_bias) {
      plain(hf_layer_prefix(l, "self_attn.q_proj.bias"), b + "attn_q.bias", {qd});
      plain(hf_layer_prefix(l, "self_attn.k_proj.bias"), b + "attn_k.bias", {kvd});
      plain(hf_layer_prefix(l, "self_attn.v_proj.bias"), b + "attn_v.bias", {kvd});
    }
    const std::pair<const char*, std::pair<int64_t, int64_t>> shapes[] = {
        {"attn_q", {qd, D}}, {"attn_k", {kvd, D}}, {"attn_v", {kvd, D}}, {"attn_output", {D, qd}},
        {"ffn_gate", {H, D}}, {"ffn_up", {H, D}}, {"ffn_down", {D, H}}};
    for (const auto& [g, nk] : shapes) {
      const std::string p = hf_layer_prefix(l, hf_of_linear(g));
      if (!st->has(p + ".qweight")) {
        if (st->has(p + ".weight")) {  // a layer left unquantized
          plain(p + ".weight", b + g + ".weight", {nk.first, nk.second});
          continue;
        }
        fail(folder, ": tensor '", p, ".qweight' is missing");
      }
      GptqTensors t;
      t.qweight = st->tensor(p + ".qweight");
      if (st->has(p + ".qzeros")) t.qzeros = st->tensor(p + ".qzeros");
      if (st->has(p + ".scales")) t.scales = st->tensor(p + ".scales");
      if (st->has(p + ".g_idx")) t.g_idx = st->tensor(p + ".g_idx");
      if (!t.scales.defined() || !st->has(p + ".scales")) fail(folder, ": tensor '", p, ".scales' is missing");
      if (!st->has(p + ".qzeros")) fail(folder, ": tensor '", p, ".qzeros' is missing");
      QuantLinear q = from_gptq(t, out.config, folder + ": " + p);
      if (q.N != nk.first || q.K != nk.second)
        fail(folder, ": '", p, "' is ", q.N, " x ", q.K, " (out x in) but config.json implies ", nk.first, " x ",
             nk.second);
      out.layers[b + g + ".weight"] = std::move(q);
    }
  }
  if (dequantize_layers) apply_dequantized(src, out.layers);

  auto ends_with = [&](const char* e) {
    const size_t n = std::strlen(e);
    return tokenizer_path.size() >= n && tokenizer_path.compare(tokenizer_path.size() - n, n, e) == 0;
  };
  if (!tokenizer_path.empty()) {
    if (ends_with(".json"))
      src.tokenizer = Tokenizer::from_hf_json(tokenizer_path);
    else if (ends_with(".gguf"))  // the tokenizer of the GGUF file a folder was quantized from
      src.tokenizer = Tokenizer::from_gguf(*GGUFFile::open(tokenizer_path));
    else
      src.tokenizer = Tokenizer::from_llama2c(tokenizer_path, c.vocab_size);
  } else if (fs::is_regular_file(dir / "tokenizer.json", ec)) {
    src.tokenizer = Tokenizer::from_hf_json((dir / "tokenizer.json").string());
  } else if (fs::is_regular_file(dir / "tokenizer.bin", ec)) {
    src.tokenizer = Tokenizer::from_llama2c((dir / "tokenizer.bin").string(), c.vocab_size);
  }
  return out;
}

std::optional<Tensor> to_ggml_blocks(const QuantLinear& q) {
  if (!q.g_idx.empty() || q.K % 32 != 0) return std::nullopt;
  if (q.format == QFormat::kInt4 && (!q.symmetric() || q.group % 32 != 0)) return std::nullopt;
  for (float s : q.scales)
    if (!(f16_to_f32(f32_to_f16(s)) == s)) return std::nullopt;  // also rejects NaN
  const int64_t N = q.N, K = q.K, G = q.groups();
  if (q.format == QFormat::kInt8) {
    Tensor t = Tensor::empty({N, K}, DType::Q8_0);
    for (int64_t n = 0; n < N; ++n) {
      auto* row = t.row<quant::blocks::Q8_0>(n);
      const uint16_t d = f32_to_f16(q.scales[size_t(n)]);
      for (int64_t b = 0; b < K / 32; ++b) {
        row[b].d = d;
        std::memcpy(row[b].qs, q.qdata.data() + size_t(n * K + 32 * b), 32);  // signed q - 128, as Q8_0 holds it
      }
    }
    return t;
  }
  Tensor t = Tensor::empty({N, K}, DType::Q4_0);
  for (int64_t n = 0; n < N; ++n) {
    auto* row = t.row<quant::blocks::Q4_0>(n);
    for (int64_t b = 0; b < K / 32; ++b) {
      const int64_t k0 = 32 * b;
      row[b].d = f32_to_f16(q.scales[size_t(n * G + k0 / q.group)]);
      for (int j = 0; j < 16; ++j)  // Q4_0: value j in the low nibble of qs[j], value j + 16 in its high nibble
        row[b].qs[j] = uint8_t(q.q(n, k0 + j) | (q.q(n, k0 + j + 16) << 4));
    }
  }
  return t;
}

ModelSource open_model_for_inference(const std::string& path, const LoadOptions& opt, std::string* note) {
  if (is_quantized_checkpoint(path)) {
    if (!opt.quant.empty()) fail("--quant applies to float models; ", path, " is already quantized");
    // Layers are converted one by one: no f32 copy of the whole model is made on the way.
    QuantizedCheckpoint ck = load_quantized_checkpoint(path, opt.tokenizer, /*dequantize_layers=*/false);
    int native = 0;
    std::map<std::string, QuantLinear> rest;
    for (auto& [name, layer] : ck.layers) {
      if (auto t = to_ggml_blocks(layer)) {
        ck.src.weights[name] = std::move(*t);
        ++native;
      } else {
        rest.emplace(name, std::move(layer));
      }
    }
    apply_dequantized(ck.src, rest);
    if (note) {
      *note = "GPTQ " + std::to_string(ck.config.bits) + "-bit checkpoint: " + std::to_string(native) + " of " +
              std::to_string(ck.layers.size()) + " layers run on their integers";
      if (native < int(ck.layers.size()))
        *note += ", the others dequantized to f32 (no exact GGML block form: an input size not a multiple of 32, "
                 "zero points or act-order)";
    }
    return std::move(ck.src);
  }
  ModelSource src = open_model(path, opt.tokenizer);
  if (opt.quant.empty()) return src;
  IGNIS_CHECK(opt.quant == "int8" || opt.quant == "int4", "--quant takes int8 or int4, got '", opt.quant, "'");
  QuantSpec spec;
  spec.format = opt.quant == "int8" ? QFormat::kInt8 : QFormat::kInt4;
  spec.group = opt.group;
  spec.symmetric = true;
  spec.scale_dtype = DType::F16;
  int done = 0, kept = 0;
  for (const std::string& name : linear_weight_names(src.config)) {
    auto it = src.weights.find(name);
    if (it == src.weights.end()) fail(src.path, ": weight '", name, "' is missing");
    const int64_t N = it->second.dim(0), K = it->second.dim(1);
    std::optional<Tensor> blocks;
    if (quantizable(spec, N, K) && K % 32 == 0) {
      const Tensor f = to_f32(it->second);
      blocks = to_ggml_blocks(quantize_rtn(f.ptr<float>(), N, K, spec, opt.pool));
    }
    if (blocks) {
      it->second = std::move(*blocks);
      ++done;
    } else {
      ++kept;
    }
  }
  if (note) {
    *note = opt.quant + (spec.format == QFormat::kInt4 ? " group " + std::to_string(opt.group) : " per channel") +
            " (RTN at load time): " + std::to_string(done) + " layers";
    if (kept) *note += ", " + std::to_string(kept) + " left as they were (shape not divisible)";
  }
  return src;
}

}  // namespace ignis::quant
