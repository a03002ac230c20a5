// load_encoder: a Hugging Face folder of a BERT-family encoder -> EncoderSource (see models/bert.h).
//
//   config.json                      model_type bert / roberta / xlm-roberta / camembert, the sizes,
//                                    architectures[0] (which head), id2label, problem_type
//   model.safetensors (or sharded)   weights; else pytorch_model.bin (torch zip + pickle, tensors only)
//   tokenizer.json (+ _config)       else vocab.txt (WordPiece) or vocab.json + merges.txt (RoBERTa BPE)
//   modules.json, 1_Pooling/         sentence-transformers: pooling mode, Normalize, max_seq_length
//
// Weight names lose their "bert." / "roberta." prefix; old "LayerNorm.gamma/beta" become weight/bias.
// Every weight the config needs is checked for presence and shape here, so backends can index freely.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/safetensors.h"
#include "io/torch_checkpoint.h"
#include "models/bert.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/presets.h"
#include "tokenizer/tokenizer.h"

namespace ignis {

namespace fs = std::filesystem;
using json = nlohmann::json;

EncoderSource::EncoderSource() = default;
EncoderSource::~EncoderSource() = default;
EncoderSource::EncoderSource(EncoderSource&&) noexcept = default;
EncoderSource& EncoderSource::operator=(EncoderSource&&) noexcept = default;

int EncoderConfig::max_tokens() const {
  // RoBERTa's positions start at pad_token_id + 1, so the first pad_token_id + 1 rows are unusable.
  const int offset = family == EncoderFamily::Roberta ? pad_token_id + 1 : 0;
  return std::max(0, max_positions - offset);
}

namespace {

json parse_json_file(const fs::path& p) {
  const std::string text = read_text_file(p.string());
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(p.string(), ": malformed JSON: ", e.what());
  }
}

int get_int(const json& j, const char* key, const std::string& what, int fallback, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail(what, ": \"", key, "\" is missing");
    return fallback;
  }
  if (!it->is_number_integer()) fail(what, ": \"", key, "\" must be an integer, found ", it->dump());
  const int64_t v = it->get<int64_t>();
  if (v < -1 || v > (int64_t{1} << 30)) fail(what, ": \"", key, "\" = ", v, " is out of range");
  return int(v);
}

EncoderConfig parse_config(const json& j, const std::string& what) {
  if (!j.is_object()) fail(what, ": not a JSON object");
  EncoderConfig c;
  c.model_type = j.value("model_type", std::string());
  if (c.model_type == "bert") {
    c.family = EncoderFamily::Bert;
  } else if (c.model_type == "roberta" || c.model_type == "xlm-roberta" || c.model_type == "camembert") {
    c.family = EncoderFamily::Roberta;
  } else {
    fail(what, ": model_type '", c.model_type,
         "' is not an encoder ignis runs (supported: bert, roberta, xlm-roberta, camembert; MiniLM is 'bert')");
  }
  if (j.contains("architectures") && j.at("architectures").is_array() && !j.at("architectures").empty() &&
      j.at("architectures")[0].is_string())
    c.architecture = j.at("architectures")[0].get<std::string>();
  const std::string& a = c.architecture;
  auto ends_with = [&](std::string_view s) { return a.size() >= s.size() && a.compare(a.size() - s.size(), s.size(), s) == 0; };
  if (a.empty() || ends_with("Model") || ends_with("ForMaskedLM") || ends_with("ForPreTraining")) {
    c.head = EncoderHead::Embedding;
  } else if (ends_with("ForSequenceClassification")) {
    c.head = EncoderHead::SequenceClassification;
  } else if (ends_with("ForTokenClassification")) {
    c.head = EncoderHead::TokenClassification;
  } else {
    fail(what, ": architecture '", a,
         "' is not supported (supported heads: *Model / *ForMaskedLM (embeddings), *ForSequenceClassification, "
         "*ForTokenClassification)");
  }
  if (j.value("is_decoder", false) || j.value("add_cross_attention", false))
    fail(what, ": is_decoder / add_cross_attention are set; ignis runs these models as encoders only");
  const std::string pet = j.value("position_embedding_type", std::string("absolute"));
  if (pet != "absolute")
    fail(what, ": position_embedding_type '", pet, "' is not supported (only 'absolute')");

  c.vocab_size = get_int(j, "vocab_size", what, 0, true);
  c.hidden = get_int(j, "hidden_size", what, 0, true);
  c.layers = get_int(j, "num_hidden_layers", what, 0, true);
  c.heads = get_int(j, "num_attention_heads", what, 0, true);
  c.intermediate = get_int(j, "intermediate_size", what, 0, true);
  c.max_positions = get_int(j, "max_position_embeddings", what, 512, false);
  c.type_vocab_size = get_int(j, "type_vocab_size", what, 2, false);
  c.pad_token_id = get_int(j, "pad_token_id", what, c.family == EncoderFamily::Roberta ? 1 : 0, false);
  if (c.pad_token_id < 0) c.pad_token_id = 0;
  if (j.contains("layer_norm_eps") && j.at("layer_norm_eps").is_number())
    c.layer_norm_eps = j.at("layer_norm_eps").get<float>();
  if (!(c.layer_norm_eps > 0 && c.layer_norm_eps < 1)) fail(what, ": layer_norm_eps ", c.layer_norm_eps, " is out of range");
  if (c.vocab_size <= 0 || c.hidden <= 0 || c.layers <= 0 || c.heads <= 0 || c.intermediate <= 0 ||
      c.max_positions <= 0 || c.type_vocab_size <= 0)
    fail(what, ": sizes must be positive (vocab_size ", c.vocab_size, ", hidden_size ", c.hidden, ", num_hidden_layers ",
         c.layers, ", num_attention_heads ", c.heads, ", intermediate_size ", c.intermediate,
         ", max_position_embeddings ", c.max_positions, ", type_vocab_size ", c.type_vocab_size, ")");
  if (c.hidden % c.heads != 0)
    fail(what, ": hidden_size ", c.hidden, " is not a multiple of num_attention_heads ", c.heads);
  if (c.max_tokens() < 3) fail(what, ": max_position_embeddings ", c.max_positions, " leaves no room for any text");
  const std::string act = j.value("hidden_act", std::string("gelu"));
  if (act == "gelu" || act == "gelu_python") c.activation = "gelu";
  else if (act == "gelu_new" || act == "gelu_pytorch_tanh") c.activation = "gelu_new";
  else fail(what, ": hidden_act '", act, "' is not supported (supported: gelu, gelu_new, gelu_pytorch_tanh)");

  const std::string pt = j.value("problem_type", std::string());
  c.multi_label = pt == "multi_label_classification";
  if (pt == "regression") fail(what, ": problem_type 'regression' is not supported by `classify` (no labels)");
  if (c.head != EncoderHead::Embedding) {
    int n = get_int(j, "num_labels", what, 0, false);
    std::map<int, std::string> id2label;
    if (j.contains("id2label") && j.at("id2label").is_object()) {
      for (auto it = j.at("id2label").begin(); it != j.at("id2label").end(); ++it) {
        int id = -1;
        try {
          id = std::stoi(it.key());
        } catch (const std::exception&) {
          fail(what, ": id2label key '", it.key(), "' is not a number");
        }
        if (id < 0 || id > 1000000 || !it->is_string()) fail(what, ": id2label entry '", it.key(), "' is invalid");
        id2label[id] = it->get<std::string>();
      }
      n = std::max(n, id2label.empty() ? 0 : id2label.rbegin()->first + 1);
    }
    if (n <= 0) n = 2;  // transformers' default num_labels
    c.labels.resize(size_t(n));
    for (int i = 0; i < n; ++i) c.labels[size_t(i)] = id2label.count(i) ? id2label[i] : "LABEL_" + std::to_string(i);
  }
  return c;
}

// Renames a checkpoint tensor to the model-relative HF name, or "" to drop it.
std::string canonical_name(std::string n, const EncoderConfig& c) {
  for (const char* p : {"bert.", "roberta.", "model."})
    if (n.rfind(p, 0) == 0) {
      n = n.substr(std::string_view(p).size());
      break;
    }
  auto replace_suffix = [&](std::string_view from, std::string_view to) {
    if (n.size() >= from.size() && n.compare(n.size() - from.size(), from.size(), from) == 0)
      n = n.substr(0, n.size() - from.size()) + std::string(to);
  };
  replace_suffix("LayerNorm.gamma", "LayerNorm.weight");
  replace_suffix("LayerNorm.beta", "LayerNorm.bias");
  // Only parameters: buffers such as embeddings.position_ids (int64) are not weights.
  auto ends = [&](std::string_view s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
  if (!ends(".weight") && !ends(".bias")) return {};
  if (n.rfind("embeddings.", 0) == 0 || n.rfind("encoder.layer.", 0) == 0) return n;
  if (n.rfind("pooler.", 0) == 0) return n;
  if (c.head != EncoderHead::Embedding && n.rfind("classifier.", 0) == 0) return n;
  return {};  // lm_head, cls.predictions, position_ids buffers, ...
}

struct Expect {
  std::string name;
  std::vector<int64_t> shape;
};

std::vector<Expect> expected_weights(const EncoderConfig& c, bool with_pooler) {
  const int64_t H = c.hidden, I = c.intermediate;
  std::vector<Expect> e = {
      {"embeddings.word_embeddings.weight", {c.vocab_size, H}},
      {"embeddings.position_embeddings.weight", {c.max_positions, H}},
      {"embeddings.token_type_embeddings.weight", {c.type_vocab_size, H}},
      {"embeddings.LayerNorm.weight", {H}},
      {"embeddings.LayerNorm.bias", {H}},
  };
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"}) {
      e.push_back({p + m + ".weight", {H, H}});
      e.push_back({p + m + ".bias", {H}});
    }
    e.push_back({p + "attention.output.LayerNorm.weight", {H}});
    e.push_back({p + "attention.output.LayerNorm.bias", {H}});
    e.push_back({p + "intermediate.dense.weight", {I, H}});
    e.push_back({p + "intermediate.dense.bias", {I}});
    e.push_back({p + "output.dense.weight", {H, I}});
    e.push_back({p + "output.dense.bias", {H}});
    e.push_back({p + "output.LayerNorm.weight", {H}});
    e.push_back({p + "output.LayerNorm.bias", {H}});
  }
  const int64_t L = int64_t(c.labels.size());
  if (with_pooler) {
    e.push_back({"pooler.dense.weight", {H, H}});
    e.push_back({"pooler.dense.bias", {H}});
  }
  if (c.head == EncoderHead::SequenceClassification && c.family == EncoderFamily::Roberta) {
    e.push_back({"classifier.dense.weight", {H, H}});
    e.push_back({"classifier.dense.bias", {H}});
    e.push_back({"classifier.out_proj.weight", {L, H}});
    e.push_back({"classifier.out_proj.bias", {L}});
  } else if (c.head != EncoderHead::Embedding) {
    e.push_back({"classifier.weight", {L, H}});
    e.push_back({"classifier.bias", {L}});
  }
  return e;
}

std::string shape_of(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void check_weights(EncoderSource& src, const std::string& what) {
  EncoderConfig& c = src.config;
  // Classification heads: the label count comes from the classifier when config.json disagrees
  // (HF derives num_labels from id2label; a hand-written config may not list them).
  if (c.head != EncoderHead::Embedding) {
    const char* out = c.family == EncoderFamily::Roberta && c.head == EncoderHead::SequenceClassification
                          ? "classifier.out_proj.weight"
                          : "classifier.weight";
    auto it = src.weights.find(out);
    if (it == src.weights.end())
      fail(what, ": the config says ", c.architecture, " but the checkpoint has no '", out, "' (is it a base model?)");
    const int64_t n = it->second.ndim() == 2 ? it->second.dim(0) : 0;
    if (n <= 0 || n > 1000000) fail(what, ": '", out, "' has shape ", it->second.shape_str());
    if (n != int64_t(c.labels.size())) {
      if (int64_t(c.labels.size()) > n)
        fail(what, ": config.json lists ", c.labels.size(), " labels but '", out, "' has ", n, " rows");
      for (int64_t i = int64_t(c.labels.size()); i < n; ++i) c.labels.push_back("LABEL_" + std::to_string(i));
    }
  }
  const bool with_pooler =
      c.head == EncoderHead::SequenceClassification && c.family == EncoderFamily::Bert;
  for (const Expect& e : expected_weights(c, with_pooler)) {
    auto it = src.weights.find(e.name);
    if (it == src.weights.end())
      fail(what, ": weight '", e.name, "' is missing (expected shape ", shape_of(e.shape), ")");
    const Tensor& t = it->second;
    bool ok = t.ndim() == int(e.shape.size());
    for (size_t i = 0; ok && i < e.shape.size(); ++i) ok = t.dim(int(i)) == e.shape[i];
    if (!ok) fail(what, ": weight '", e.name, "' has shape ", t.shape_str(), ", expected ", shape_of(e.shape));
    if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16)
      fail(what, ": weight '", e.name, "' is ", dtype_name(t.dtype()), "; encoders take F32, F16 or BF16 weights");
  }
  // Drop what no backend reads (the pooler of an embedding model, ...), so weights is exactly the model.
  std::set<std::string> keep;
  for (const Expect& e : expected_weights(c, with_pooler)) keep.insert(e.name);
  for (auto it = src.weights.begin(); it != src.weights.end();) it = keep.count(it->first) ? std::next(it) : src.weights.erase(it);
}

void load_weights(EncoderSource& src, const fs::path& dir) {
  std::error_code ec;
  const bool st = fs::is_regular_file(dir / "model.safetensors", ec) ||
                  fs::is_regular_file(dir / "model.safetensors.index.json", ec);
  std::map<std::string, Tensor> raw;
  if (st) {
    auto m = SafetensorsModel::open_folder(dir.string());
    for (const std::string& n : m->names()) {
      const std::string cn = canonical_name(n, src.config);
      if (!cn.empty()) raw[cn] = m->tensor(n);
    }
  } else if (fs::is_regular_file(dir / "pytorch_model.bin", ec)) {
    std::map<std::string, Tensor> all = read_torch_state_dict((dir / "pytorch_model.bin").string());
    for (auto& [n, t] : all) {
      const std::string cn = canonical_name(n, src.config);
      if (!cn.empty()) raw[cn] = std::move(t);
    }
  } else {
    fail(dir.string(), ": no weights found (expected model.safetensors, model.safetensors.index.json or pytorch_model.bin)");
  }
  src.weights = std::move(raw);
}

// ---- tokenizers from vocab files (no tokenizer.json) -------------------------------------------------

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail(p.string(), ": cannot open");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// BERT's vocab.txt (one token per line, id = line number) as HF's BertTokenizerFast builds it.
std::unique_ptr<Tokenizer> wordpiece_from_vocab_txt(const fs::path& vocab, const json& tcfg) {
  auto t = std::make_unique<tok::PipelineTokenizer>();
  t->what = vocab.string();
  t->name = "WordPiece";
  t->tkind = TokenizerKind::kWordPiece;
  const std::vector<std::string> lines = read_lines(vocab);
  if (lines.empty()) fail(vocab.string(), ": the vocabulary is empty");
  t->vocab = lines;
  t->attrs.assign(lines.size(), tok::TokenAttr::kNormal);
  tok::TokenMap ids;
  for (size_t i = 0; i < lines.size(); ++i) ids.emplace(lines[i], int32_t(i));
  auto need = [&](const char* key, const char* dflt) {
    std::string name = dflt;
    if (tcfg.contains(key) && tcfg.at(key).is_string()) name = tcfg.at(key).get<std::string>();
    auto it = ids.find(name);
    if (it == ids.end()) fail(vocab.string(), ": special token '", name, "' (", key, ") is not in the vocabulary");
    return it->second;
  };
  const int32_t unk = need("unk_token", "[UNK]"), cls = need("cls_token", "[CLS]"), sep = need("sep_token", "[SEP]");
  for (const char* k : {"pad_token", "mask_token"}) {
    const char* d = std::string_view(k) == "pad_token" ? "[PAD]" : "[MASK]";
    std::string name = tcfg.contains(k) && tcfg.at(k).is_string() ? tcfg.at(k).get<std::string>() : d;
    auto it = ids.find(name);
    if (it != ids.end()) t->added.push_back({name, it->second, true});
  }
  for (int32_t id : {unk, cls, sep}) t->added.push_back({t->vocab[size_t(id)], id, true});
  for (const auto& a : t->added) t->attrs[size_t(a.id)] = tok::TokenAttr::kControl;
  tok::Normalizer n;
  n.kind = tok::Normalizer::Kind::kBert;
  n.lower = tcfg.value("do_lower_case", true);
  const auto sa = tcfg.find("strip_accents");
  n.strip_accents = (sa == tcfg.end() || sa->is_null()) ? n.lower : sa->get<bool>();
  n.handle_chinese_chars = tcfg.value("tokenize_chinese_chars", true);
  t->normalizers.push_back(n);
  tok::PreTokenizer p;
  p.kind = tok::PreTokenizer::Kind::kBert;
  t->pre_tokenizers.push_back(p);
  t->model.type = tok::ModelCfg::Type::kWordPiece;
  t->model.word_prefix.clear();
  t->model.cont_prefix = "##";
  t->model.unk_id = unk;
  t->decoder.wordpiece = true;
  t->prefix_ids = {cls};
  t->suffix_ids = {sep};
  t->finalize();
  t->set_special_ids(cls, sep, {});
  return t;
}

// RoBERTa's vocab.json + merges.txt (byte-level BPE, <s> text </s>).
std::unique_ptr<Tokenizer> bpe_from_vocab_json(const fs::path& dir, const json& tcfg) {
  const fs::path vp = dir / "vocab.json", mp = dir / "merges.txt";
  const json v = parse_json_file(vp);
  if (!v.is_object() || v.empty()) fail(vp.string(), ": expected an object of token -> id");
  auto t = std::make_unique<tok::PipelineTokenizer>();
  t->what = vp.string();
  int64_t max_id = -1;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it->is_number_integer()) fail(vp.string(), ": the id of '", it.key(), "' is not an integer");
    max_id = std::max<int64_t>(max_id, it->get<int64_t>());
  }
  if (max_id < 0 || max_id > 2 * int64_t(v.size()) + 1024) fail(vp.string(), ": token ids are out of range");
  t->vocab.assign(size_t(max_id + 1), std::string());
  t->attrs.assign(size_t(max_id + 1), tok::TokenAttr::kUnused);
  tok::TokenMap ids;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const int64_t id = it->get<int64_t>();
    if (id < 0) fail(vp.string(), ": token '", it.key(), "' has a negative id");
    t->vocab[size_t(id)] = it.key();
    t->attrs[size_t(id)] = tok::TokenAttr::kNormal;
    ids.emplace(it.key(), int32_t(id));
  }
  auto special = [&](const char* key, const char* dflt) -> int32_t {
    std::string name = dflt;
    if (tcfg.contains(key)) {
      const json& s = tcfg.at(key);
      if (s.is_string()) name = s.get<std::string>();
      else if (s.is_object() && s.contains("content")) name = s.at("content").get<std::string>();
    }
    auto it = ids.find(name);
    if (it == ids.end()) return -1;
    t->added.push_back({name, it->second, true, std::string_view(key) == "mask_token"});
    t->attrs[size_t(it->second)] = tok::TokenAttr::kControl;
    return it->second;
  };
  const int32_t bos = special("bos_token", "<s>"), eos = special("eos_token", "</s>");
  special("unk_token", "<unk>");
  special("pad_token", "<pad>");
  special("mask_token", "<mask>");
  if (bos < 0 || eos < 0) fail(vp.string(), ": <s> and </s> must be in the vocabulary");
  for (const std::string& line : read_lines(mp)) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ', 1);
    if (sp == std::string::npos) fail(mp.string(), ": merge '", line, "' is not two tokens separated by a space");
    t->model.merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  t->pre_tokenizers.push_back(tok::byte_level_pre(tcfg.value("add_prefix_space", false), true, t->what));
  t->model.type = tok::ModelCfg::Type::kBPE;
  t->model.byte_level = true;
  t->decoder.byte_level = true;
  t->tkind = TokenizerKind::kByteBPE;
  t->name = "byte-level BPE";
  t->prefix_ids = {bos};
  t->suffix_ids = {eos};
  t->finalize();
  t->set_special_ids(bos, eos, {});
  return t;
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir, const EncoderConfig& c, const json& tcfg) {
  std::error_code ec;
  std::unique_ptr<Tokenizer> t;
  if (fs::is_regular_file(dir / "tokenizer.json", ec)) {
    t = Tokenizer::from_hf_json((dir / "tokenizer.json").string());
  } else if (c.family == EncoderFamily::Bert && fs::is_regular_file(dir / "vocab.txt", ec)) {
    t = wordpiece_from_vocab_txt(dir / "vocab.txt", tcfg);
  } else if (c.family == EncoderFamily::Roberta && fs::is_regular_file(dir / "vocab.json", ec) &&
             fs::is_regular_file(dir / "merges.txt", ec)) {
    t = bpe_from_vocab_json(dir, tcfg);
  } else {
    fail(dir.string(), ": no tokenizer found (expected tokenizer.json",
         c.family == EncoderFamily::Bert ? ", or vocab.txt" : ", or vocab.json + merges.txt",
         "; a SentencePiece-only model needs its tokenizer.json)");
  }
  // Every id the tokenizer can produce must index the embedding table.
  if (t->vocab_size() > c.vocab_size)
    fail(dir.string(), ": the tokenizer has ", t->vocab_size(), " tokens but the model's vocab_size is ", c.vocab_size);
  // The encoder needs [CLS] ... [SEP] (or <s> ... </s>): a tokenizer.json without a post-processor
  // gets them here, as transformers' BertTokenizer/RobertaTokenizer would add them.
  if (auto* p = dynamic_cast<tok::PipelineTokenizer*>(t.get()); p && p->prefix_ids.empty() && p->suffix_ids.empty()) {
    const bool bert = c.family == EncoderFamily::Bert;
    const int32_t cls = p->token_id(bert ? "[CLS]" : "<s>"), sep = p->token_id(bert ? "[SEP]" : "</s>");
    if (cls < 0 || sep < 0)
      fail(dir.string(), ": the tokenizer adds no special tokens and has no ", bert ? "[CLS]/[SEP]" : "<s>/</s>");
    p->prefix_ids = {cls};
    p->suffix_ids = {sep};
  }
  return t;
}

// sentence-transformers: modules.json lists Transformer, Pooling, Normalize (any other module
// changes the embedding and is an error); 1_Pooling/config.json picks CLS or mean pooling.
void read_sentence_transformers(const fs::path& dir, EncoderConfig& c) {
  std::error_code ec;
  const fs::path mp = dir / "modules.json";
  if (!fs::is_regular_file(mp, ec)) return;  // a plain HF model: mean pooling, normalised
  const json m = parse_json_file(mp);
  if (!m.is_array()) fail(mp.string(), ": expected a list of modules");
  c.normalize = false;
  for (const json& mod : m) {
    if (!mod.is_object()) fail(mp.string(), ": a module is not an object");
    const std::string type = mod.value("type", std::string());
    const std::string path = mod.value("path", std::string());
    if (type == "sentence_transformers.models.Transformer") continue;
    if (type == "sentence_transformers.models.Normalize") {
      c.normalize = true;
    } else if (type == "sentence_transformers.models.Pooling") {
      if (path.find("..") != std::string::npos || (!path.empty() && path[0] == '/'))
        fail(mp.string(), ": module path '", path, "' leaves the model folder");
      const fs::path pc = dir / path / "config.json";
      if (!fs::is_regular_file(pc, ec)) fail(mp.string(), ": the Pooling module's ", pc.string(), " is missing");
      const json p = parse_json_file(pc);
      if (!p.is_object()) fail(pc.string(), ": not a JSON object");
      const bool cls = p.value("pooling_mode_cls_token", false), mean = p.value("pooling_mode_mean_tokens", false);
      for (const char* k : {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                            "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
        if (p.value(k, false)) fail(pc.string(), ": ", k, " is not supported (supported: cls_token, mean_tokens)");
      if (cls == mean) fail(pc.string(), ": exactly one of pooling_mode_cls_token / pooling_mode_mean_tokens must be set");
      c.pooling = cls ? Pooling::Cls : Pooling::Mean;
    } else {
      fail(mp.string(), ": sentence-transformers module '", type,
           "' is not supported (supported: Transformer, Pooling, Normalize)");
    }
  }
  const fs::path sb = dir / "sentence_bert_config.json";
  if (fs::is_regular_file(sb, ec)) {
    const json s = parse_json_file(sb);
    if (s.is_object() && s.contains("max_seq_length") && s.at("max_seq_length").is_number_integer()) {
      const int64_t v = s.at("max_seq_length").get<int64_t>();
      if (v >= 3) c.max_length = int(std::min<int64_t>(v, c.max_tokens()));
    }
  }
}

}  // namespace

EncoderSource load_encoder(const std::string& folder) {
  std::error_code ec;
  const fs::path dir(folder);
  if (!fs::is_directory(dir, ec))
    fail(folder, ": not a folder; an encoder model is a Hugging Face folder (config.json, model.safetensors, tokenizer.json)");
  const fs::path cp = dir / "config.json";
  if (!fs::is_regular_file(cp, ec)) fail(folder, ": no config.json in this folder");
  EncoderSource src;
  src.path = folder;
  src.config = parse_config(parse_json_file(cp), cp.string());
  json tcfg = json::object();
  if (fs::is_regular_file(dir / "tokenizer_config.json", ec)) {
    tcfg = parse_json_file(dir / "tokenizer_config.json");
    if (!tcfg.is_object()) fail((dir / "tokenizer_config.json").string(), ": not a JSON object");
  }
  // transformers uses a huge sentinel for "no limit"; only a real value below the positions counts.
  if (tcfg.contains("model_max_length") && tcfg.at("model_max_length").is_number_integer()) {
    const int64_t v = tcfg.at("model_max_length").get<int64_t>();
    if (v >= 3 && v < src.config.max_tokens()) src.config.max_length = int(v);
  }
  read_sentence_transformers(dir, src.config);
  load_weights(src, dir);
  check_weights(src, folder);
  src.tokenizer = load_tokenizer(dir, src.config, tcfg);
  return src;
}

EncodedText encode_text(const EncoderSource& src, std::string_view text) {
  if (!src.tokenizer) fail(src.path, ": the encoder has no tokenizer");
  const Tokenizer& tok = *src.tokenizer;
  std::vector<int32_t> prefix, suffix;
  if (auto* p = dynamic_cast<const tok::PipelineTokenizer*>(&tok)) {
    prefix = p->prefix_ids;
    suffix = p->suffix_ids;
  }
  EncodedText out;
  // Text that looks like a special token ("[SEP]") stays plain text here? HF parses added tokens
  // in the input, so ignis does too.
  std::vector<int32_t> body = tok.encode(text, /*add_special=*/false, /*parse_special=*/true);
  out.full_length = int(prefix.size() + body.size() + suffix.size());
  const int limit = src.config.truncation_length();
  const int room = limit - int(prefix.size() + suffix.size());
  if (room < 0) fail(src.path, ": the model's maximum length ", limit, " leaves no room for its special tokens");
  if (int(body.size()) > room) body.resize(size_t(room));
  out.ids.reserve(prefix.size() + body.size() + suffix.size());
  out.ids.insert(out.ids.end(), prefix.begin(), prefix.end());
  out.ids.insert(out.ids.end(), body.begin(), body.end());
  out.ids.insert(out.ids.end(), suffix.begin(), suffix.end());
  return out;
}

void validate_batch(const EncoderConfig& c, const EncoderBatch& b) {
  if (b.offsets.empty() || b.offsets[0] != 0) fail("encoder batch: offsets must start at 0");
  if (b.type_ids.size() != b.ids.size())
    fail("encoder batch: ", b.type_ids.size(), " token types for ", b.ids.size(), " tokens");
  if (size_t(b.offsets.back()) != b.ids.size())
    fail("encoder batch: the offsets end at ", b.offsets.back(), " but there are ", b.ids.size(), " tokens");
  for (int i = 0; i < b.size(); ++i) {
    const int n = b.length(i);
    if (n <= 0) fail("encoder batch: sequence ", i, " is empty (it needs at least its special tokens)");
    if (n > c.max_tokens()) fail("encoder batch: sequence ", i, " has ", n, " tokens; the model takes at most ", c.max_tokens());
  }
  for (size_t k = 0; k < b.ids.size(); ++k) {
    if (b.ids[k] < 0 || b.ids[k] >= c.vocab_size)
      fail("encoder batch: token id ", b.ids[k], " at position ", k, " is outside the vocabulary (", c.vocab_size, ")");
    if (b.type_ids[k] < 0 || b.type_ids[k] >= c.type_vocab_size)
      fail("encoder batch: token type ", b.type_ids[k], " at position ", k, " is outside 0..", c.type_vocab_size - 1);
  }
}

std::vector<int32_t> encoder_position_ids(const EncoderConfig& c, const EncoderBatch& b) {
  std::vector<int32_t> pos(b.ids.size());
  for (int i = 0; i < b.size(); ++i) {
    int32_t next = c.family == EncoderFamily::Roberta ? c.pad_token_id + 1 : 0;
    for (int32_t k = b.offsets[size_t(i)]; k < b.offsets[size_t(i) + 1]; ++k) {
      if (c.family == EncoderFamily::Roberta && b.ids[size_t(k)] == c.pad_token_id) pos[size_t(k)] = c.pad_token_id;
      else pos[size_t(k)] = next++;
    }
  }
  return pos;
}

}  // namespace ignis
