// Tokenizer::from_hf_json: a Hugging Face tokenizer.json (+ tokenizer_config.json) mapped onto the
// pipeline stage by stage. Every component type that is not implemented is an error naming it,
// never a silent approximation.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/presets.h"

namespace ignis {
namespace tok {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxJsonBytes = size_t{1} << 30;

std::string type_of(const json& j, const std::string& what, const char* where) {
  if (!j.is_object()) fail(what, ": ", where, " is not an object");
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) fail(what, ": ", where, " has no \"type\"");
  return it->get<std::string>();
}

// A token id from the file: an integer in [0, 2^24), never a float or a huge number (nlohmann
// converts 2e49 to an integer with undefined behaviour, so the type is checked first).
int32_t token_id(const json& v, const std::string& what, const char* where) {
  if (!v.is_number_integer()) fail(what, ": ", where, " must be an integer token id, found ", v.dump());
  const int64_t id = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), uint64_t{1} << 62))
                                            : v.get<int64_t>();
  if (id < 0 || id >= (int64_t{1} << 24)) fail(what, ": ", where, " has token id ", id, ", outside [0, 2^24)");
  return static_cast<int32_t>(id);
}

// A Split / Replace pattern: {"String": "..."} or {"Regex": "..."}.
std::shared_ptr<Regex> parse_pattern(const json& p, const std::string& what) {
  if (!p.is_object()) fail(what, ": a pattern must be {\"String\": ...} or {\"Regex\": ...}");
  if (p.contains("String")) return std::make_shared<Regex>(p.at("String").get<std::string>(), true, what);
  if (p.contains("Regex")) return std::make_shared<Regex>(p.at("Regex").get<std::string>(), false, what);
  fail(what, ": a pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

SplitBehavior parse_behavior(const json& j, const std::string& what) {
  const std::string b = j.get<std::string>();
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  fail(what, ": unknown split behavior '", b, "'");
}

void parse_normalizer(const json& j, PipelineTokenizer& t, int depth) {
  if (j.is_null()) return;
  if (depth > 16) fail(t.what, ": normalizers nested too deeply");
  const std::string type = type_of(j, t.what, "a normalizer");
  Normalizer n;
  if (type == "Sequence") {
    for (const json& s : j.at("normalizers")) parse_normalizer(s, t, depth + 1);
    return;
  } else if (type == "BertNormalizer") {
    n.kind = Normalizer::Kind::kBert;
    n.clean_text = j.value("clean_text", true);
    n.handle_chinese_chars = j.value("handle_chinese_chars", true);
    n.lower = j.value("lowercase", true);
    const auto it = j.find("strip_accents");
    n.strip_accents = (it == j.end() || it->is_null()) ? n.lower : it->get<bool>();
  } else if (type == "Lowercase") {
    n.kind = Normalizer::Kind::kLowercase;
  } else if (type == "NFC") {
    n.kind = Normalizer::Kind::kNFC;
  } else if (type == "NFD") {
    n.kind = Normalizer::Kind::kNFD;
  } else if (type == "NFKC") {
    n.kind = Normalizer::Kind::kNFKC;
  } else if (type == "NFKD") {
    n.kind = Normalizer::Kind::kNFKD;
  } else if (type == "StripAccents") {
    n.kind = Normalizer::Kind::kStripAccents;
  } else if (type == "Strip") {
    n.kind = Normalizer::Kind::kStrip;
    n.strip_left = j.value("strip_left", true);
    n.strip_right = j.value("strip_right", true);
  } else if (type == "Prepend") {
    n.kind = Normalizer::Kind::kPrepend;
    n.content = j.at("prepend").get<std::string>();
  } else if (type == "Replace") {
    n.kind = Normalizer::Kind::kReplace;
    n.regex = parse_pattern(j.at("pattern"), t.what);
    n.content = j.at("content").get<std::string>();
  } else {
    fail(t.what, ": normalizer type '", type, "' is not supported");
  }
  t.normalizers.push_back(std::move(n));
}

void parse_pre_tokenizer(const json& j, PipelineTokenizer& t, int depth) {
  if (j.is_null()) return;
  if (depth > 16) fail(t.what, ": pre-tokenizers nested too deeply");
  const std::string type = type_of(j, t.what, "a pre-tokenizer");
  PreTokenizer p;
  if (type == "Sequence") {
    for (const json& s : j.at("pretokenizers")) parse_pre_tokenizer(s, t, depth + 1);
    return;
  } else if (type == "ByteLevel") {
    p = byte_level_pre(j.value("add_prefix_space", true), j.value("use_regex", true), t.what);
  } else if (type == "Split") {
    p.kind = PreTokenizer::Kind::kRegexSplit;
    p.regex = parse_pattern(j.at("pattern"), t.what);
    p.behavior = parse_behavior(j.at("behavior"), t.what);
    p.invert = j.value("invert", false);
  } else if (type == "Digits") {
    p.kind = PreTokenizer::Kind::kCharSplit;
    p.char_class = PreTokenizer::CharClass::kNumeric;
    p.behavior = j.value("individual_digits", false) ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  } else if (type == "Metaspace") {
    p.kind = PreTokenizer::Kind::kMetaspace;
    p.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    if (p.replacement.empty()) fail(t.what, ": Metaspace replacement is empty");
    if (j.contains("prepend_scheme")) {
      const std::string s = j.at("prepend_scheme").get<std::string>();
      if (s == "always") p.prepend = PreTokenizer::Prepend::kAlways;
      else if (s == "first") p.prepend = PreTokenizer::Prepend::kFirst;
      else if (s == "never") p.prepend = PreTokenizer::Prepend::kNever;
      else fail(t.what, ": unknown Metaspace prepend_scheme '", s, "'");
    } else {
      p.prepend = j.value("add_prefix_space", true) ? PreTokenizer::Prepend::kAlways : PreTokenizer::Prepend::kNever;
    }
    p.split = j.value("split", true);
  } else if (type == "BertPreTokenizer") {
    p.kind = PreTokenizer::Kind::kBert;
  } else if (type == "Whitespace") {
    p = regex_split_pre(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true, t.what);
  } else if (type == "WhitespaceSplit") {
    p.kind = PreTokenizer::Kind::kCharSplit;
    p.char_class = PreTokenizer::CharClass::kWhitespace;
    p.behavior = SplitBehavior::kRemoved;
  } else if (type == "Punctuation") {
    p.kind = PreTokenizer::Kind::kCharSplit;
    p.char_class = PreTokenizer::CharClass::kBertPunct;
    p.behavior = j.contains("behavior") ? parse_behavior(j.at("behavior"), t.what) : SplitBehavior::kIsolated;
  } else if (type == "CharDelimiterSplit") {
    p.kind = PreTokenizer::Kind::kRegexSplit;
    p.regex = std::make_shared<Regex>(j.at("delimiter").get<std::string>(), true, t.what);
    p.behavior = SplitBehavior::kRemoved;
  } else {
    fail(t.what, ": pre-tokenizer type '", type, "' is not supported");
  }
  t.pre_tokenizers.push_back(std::move(p));
}

void parse_decoder(const json& j, PipelineTokenizer& t, int depth) {
  if (j.is_null()) return;
  if (depth > 16) fail(t.what, ": decoders nested too deeply");
  const std::string type = type_of(j, t.what, "a decoder");
  DecoderCfg& d = t.decoder;
  if (type == "Sequence") {
    for (const json& s : j.at("decoders")) parse_decoder(s, t, depth + 1);
  } else if (type == "ByteLevel") {
    d.byte_level = true;
  } else if (type == "ByteFallback") {
    d.byte_tokens = true;
  } else if (type == "Fuse") {
    // Joining is what the per-token decoder does anyway.
  } else if (type == "Replace") {
    const json& p = j.at("pattern");
    if (!p.is_object() || !p.contains("String")) fail(t.what, ": only String patterns are supported in the Replace decoder");
    if (!d.replace_from.empty()) fail(t.what, ": more than one Replace decoder is not supported");
    d.replace_from = p.at("String").get<std::string>();
    d.replace_to = j.at("content").get<std::string>();
  } else if (type == "Strip") {
    if (j.value("content", std::string(" ")) != " " || j.value("stop", 0) != 0)
      fail(t.what, ": only Strip(content=' ', stop=0) is supported in decoders");
    d.strip_first_spaces = j.value("start", 0);
    if (d.strip_first_spaces < 0 || d.strip_first_spaces > 1024) fail(t.what, ": Strip start out of range");
  } else if (type == "Metaspace") {
    const std::string rep = j.value("replacement", std::string("\xE2\x96\x81"));
    if (!d.replace_from.empty()) fail(t.what, ": more than one Replace decoder is not supported");
    d.replace_from = rep;
    d.replace_to = " ";
    bool strip;
    if (j.contains("prepend_scheme")) strip = j.at("prepend_scheme").get<std::string>() != "never";
    else strip = j.value("add_prefix_space", true);
    d.strip_first_spaces = strip ? 1 : 0;
  } else if (type == "WordPiece") {
    d.wordpiece = true;
    d.wp_cont = j.value("prefix", std::string("##"));
    d.wp_cleanup = j.value("cleanup", true);
    d.wp_word.clear();
  } else {
    fail(t.what, ": decoder type '", type, "' is not supported");
  }
}

// Appends the ids of a post-processor's single-sequence template to prefix/suffix.
void parse_post_processor(const json& j, PipelineTokenizer& t, const TokenMap& ids, int depth) {
  if (j.is_null()) return;
  if (depth > 16) fail(t.what, ": post-processors nested too deeply");
  const std::string type = type_of(j, t.what, "the post-processor");
  auto id_of_pair = [&](const json& p) -> int32_t {  // ["[CLS]", 101]
    if (!p.is_array() || p.size() != 2) fail(t.what, ": expected [token, id] in the post-processor");
    return token_id(p.at(1), t.what, "a post-processor token");
  };
  if (type == "Sequence") {
    for (const json& s : j.at("processors")) parse_post_processor(s, t, ids, depth + 1);
  } else if (type == "ByteLevel") {
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    t.prefix_ids.push_back(id_of_pair(j.at("cls")));
    t.suffix_ids.push_back(id_of_pair(j.at("sep")));
  } else if (type == "TemplateProcessing") {
    const json& specials = j.at("special_tokens");
    bool after = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        after = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      std::vector<int32_t> v;
      if (specials.is_object() && specials.contains(name)) {
        for (const json& x : specials.at(name).at("ids")) v.push_back(token_id(x, t.what, "a post-processor token"));
      } else {
        auto it = ids.find(name);
        if (it == ids.end()) fail(t.what, ": post-processor token '", name, "' is not in the vocabulary");
        v.push_back(it->second);
      }
      auto& dst = after ? t.suffix_ids : t.prefix_ids;
      dst.insert(dst.end(), v.begin(), v.end());
    }
  } else {
    fail(t.what, ": post-processor type '", type, "' is not supported");
  }
}

std::string token_content(const json& j) {  // "eos_token": "</s>" or {"content": "</s>", ...}
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j.at("content").get<std::string>();
  return {};
}

std::unique_ptr<PipelineTokenizer> load(std::string_view text, std::string_view config_text, const std::string& what) {
  if (text.size() > kMaxJsonBytes) fail(what, ": tokenizer.json of ", text.size(), " bytes is too large");
  const json j = json::parse(text.begin(), text.end());
  json cfg = json::object();
  if (!config_text.empty()) cfg = json::parse(config_text.begin(), config_text.end());
  if (!j.is_object()) fail(what, ": tokenizer.json is not a JSON object");
  if (!cfg.is_object()) fail(what, ": tokenizer_config.json is not a JSON object");

  auto t = std::make_unique<PipelineTokenizer>();
  t->what = what;
  const json& m = j.at("model");
  if (!m.is_object()) fail(what, ": \"model\" is not an object");
  std::string mtype = m.value("type", std::string());
  if (mtype.empty()) mtype = m.contains("merges") ? "BPE" : "WordPiece";
  if (mtype != "BPE" && mtype != "WordPiece")
    fail(what, ": model type '", mtype, "' is not supported (supported: BPE, WordPiece)");

  // Ids: the model vocabulary plus the added tokens.
  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) fail(what, ": model.vocab is not an object of token -> id");
  const json empty_array = json::array();
  const json& added = j.contains("added_tokens") && !j.at("added_tokens").is_null() ? j.at("added_tokens") : empty_array;
  if (!added.is_array()) fail(what, ": added_tokens is not an array");
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) max_id = std::max<int64_t>(max_id, token_id(it.value(), what, "model.vocab"));
  for (const json& a : added) max_id = std::max<int64_t>(max_id, token_id(a.at("id"), what, "an added token"));
  const size_t entries = vocab.size() + added.size();
  if (max_id < 0) fail(what, ": the vocabulary is empty");
  if (max_id >= (int64_t{1} << 24) || static_cast<size_t>(max_id) > 2 * entries + 1024)
    fail(what, ": token id ", max_id, " is far beyond the ", entries, " tokens listed");
  const size_t n = static_cast<size_t>(max_id) + 1;
  t->vocab.assign(n, std::string());
  t->attrs.assign(n, TokenAttr::kUnused);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = token_id(it.value(), what, "model.vocab");
    if (id < 0) fail(what, ": token '", it.key(), "' has negative id ", id);
    if (t->attrs[id] != TokenAttr::kUnused) continue;  // duplicate id: the first string wins
    t->vocab[id] = it.key();
    t->attrs[id] = TokenAttr::kNormal;
  }
  for (const json& a : added) {
    AddedToken at;
    at.id = token_id(a.at("id"), what, "an added token");
    if (at.id < 0) fail(what, ": added token has negative id ", at.id);
    at.content = a.at("content").get<std::string>();
    at.special = a.value("special", false);
    at.lstrip = a.value("lstrip", false);
    at.rstrip = a.value("rstrip", false);
    at.single_word = a.value("single_word", false);
    if (t->attrs[at.id] == TokenAttr::kUnused) t->vocab[at.id] = at.content;
    t->attrs[at.id] = at.special ? TokenAttr::kControl : TokenAttr::kUserDefined;
    t->added.push_back(std::move(at));
  }
  TokenMap ids;
  for (size_t i = 0; i < n; ++i)
    if (t->attrs[i] != TokenAttr::kUnused) ids.emplace(t->vocab[i], static_cast<int32_t>(i));
  auto lookup = [&](const std::string& s, const char* item) {
    auto it = ids.find(s);
    if (it == ids.end()) fail(what, ": ", item, " '", s, "' is not in the vocabulary");
    return it->second;
  };

  parse_normalizer(j.value("normalizer", json()), *t, 0);
  parse_pre_tokenizer(j.value("pre_tokenizer", json()), *t, 0);
  parse_decoder(j.value("decoder", json()), *t, 0);
  if (j.value("decoder", json()).is_null()) t->decoder.join_spaces = true;  // HF: tokens joined by ' '

  parse_post_processor(j.value("post_processor", json()), *t, ids, 0);
  for (size_t k = 0; k < t->pre_tokenizers.size(); ++k)
    if (t->pre_tokenizers[k].kind == PreTokenizer::Kind::kByteLevel && k + 1 != t->pre_tokenizers.size())
      fail(what, ": a ByteLevel pre-tokenizer that is not the last one is not supported");
  const bool byte_level =
      !t->pre_tokenizers.empty() && t->pre_tokenizers.back().kind == PreTokenizer::Kind::kByteLevel;

  const json& unk = m.value("unk_token", json());
  if (!unk.is_null()) t->model.unk_id = lookup(unk.get<std::string>(), "unk_token");
  if (mtype == "BPE") {
    t->model.type = ModelCfg::Type::kBPE;
    t->model.byte_level = byte_level;
    t->model.byte_fallback = m.value("byte_fallback", false);
    t->model.fuse_unk = m.value("fuse_unk", false);
    t->model.ignore_merges = m.value("ignore_merges", false);
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json& v = m.value(k, json());
      if (!v.is_null() && !v.get<std::string>().empty()) fail(what, ": BPE ", k, " is not supported");
    }
    const json& merges = m.at("merges");
    if (!merges.is_array()) fail(what, ": model.merges is not an array");
    t->model.merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const json& e = merges[r];
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) fail(what, ": merge ", r, " ('", s, "') is not two tokens separated by a space");
        t->model.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2) {
        t->model.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        fail(what, ": merge ", r, " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
    t->tkind = byte_level ? TokenizerKind::kByteBPE : TokenizerKind::kSentencePiece;
    t->name = byte_level ? "byte-level BPE" : (t->model.byte_fallback ? "SentencePiece BPE" : "BPE");
  } else {
    t->model.type = ModelCfg::Type::kWordPiece;
    t->model.word_prefix.clear();
    t->model.cont_prefix = m.value("continuing_subword_prefix", std::string("##"));
    const int64_t mx = m.value("max_input_chars_per_word", int64_t{100});
    if (mx < 0) fail(what, ": max_input_chars_per_word is negative");
    t->model.max_input_chars_per_word = static_cast<size_t>(mx);
    t->tkind = TokenizerKind::kWordPiece;
    t->name = "WordPiece";
  }

  // tokenizer_config.json: explicit add_bos_token / add_eos_token rebuild the template the way
  // transformers' Llama/Gemma tokenizers do; special token names; the chat template.
  int32_t bos = -1, eos = -1;
  if (cfg.contains("bos_token")) {
    const std::string s = token_content(cfg.at("bos_token"));
    if (!s.empty()) bos = lookup(s, "bos_token");
  }
  if (cfg.contains("eos_token")) {
    const std::string s = token_content(cfg.at("eos_token"));
    if (!s.empty()) eos = lookup(s, "eos_token");
  }
  if (bos < 0 && !t->prefix_ids.empty()) bos = t->prefix_ids.front();
  if (eos < 0 && !t->suffix_ids.empty()) eos = t->suffix_ids.back();
  for (const char* s : {"<s>", "<|begin_of_text|>", "[CLS]", "<bos>"})
    if (bos < 0 && ids.count(std::string(s))) bos = ids.find(std::string(s))->second;
  for (const char* s : {"</s>", "<|end_of_text|>", "<|endoftext|>", "[SEP]", "<eos>"})
    if (eos < 0 && ids.count(std::string(s))) eos = ids.find(std::string(s))->second;
  if (cfg.contains("add_bos_token") && cfg.at("add_bos_token").is_boolean() && bos >= 0) {
    const bool want = cfg.at("add_bos_token").get<bool>();
    const bool has = !t->prefix_ids.empty() && t->prefix_ids.front() == bos;
    if (want && !has) t->prefix_ids.insert(t->prefix_ids.begin(), bos);
    if (!want && has) t->prefix_ids.erase(t->prefix_ids.begin());
  }
  if (cfg.contains("add_eos_token") && cfg.at("add_eos_token").is_boolean() && eos >= 0) {
    const bool want = cfg.at("add_eos_token").get<bool>();
    const bool has = !t->suffix_ids.empty() && t->suffix_ids.back() == eos;
    if (want && !has) t->suffix_ids.push_back(eos);
    if (!want && has) t->suffix_ids.pop_back();
  }
  if (cfg.contains("chat_template")) {
    const json& ct = cfg.at("chat_template");
    if (ct.is_string()) {
      t->set_chat_template(ct.get<std::string>());
    } else if (ct.is_array()) {
      for (const json& e : ct)
        if (t->chat_template_text().empty() || e.value("name", std::string()) == "default")
          t->set_chat_template(e.at("template").get<std::string>());
    }
  }
  t->finalize();
  t->set_special_ids(bos, eos, find_stop_tokens(*t));
  return t;
}

std::string read_file(const std::string& path, bool required) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    if (required) fail(path, ": cannot open");
    return {};
  }
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > kMaxJsonBytes) fail(path, ": unexpected file size ", size);
  f.seekg(0);
  std::string s(static_cast<size_t>(size), '\0');
  if (!f.read(s.data(), size)) fail(path, ": read failed");
  return s;
}

}  // namespace
}  // namespace tok

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json_text(std::string_view json_text, std::string_view config_json,
                                                        const std::string& what) {
  try {
    return tok::load(json_text, config_json, what);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": malformed tokenizer JSON: ", e.what());
  }
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(const std::string& tokenizer_json_path) {
  const std::string text = tok::read_file(tokenizer_json_path, true);
  std::string dir;
  const size_t slash = tokenizer_json_path.find_last_of('/');
  if (slash != std::string::npos) dir = tokenizer_json_path.substr(0, slash + 1);
  const std::string cfg = tok::read_file(dir + "tokenizer_config.json", false);
  return from_hf_json_text(text, cfg, tokenizer_json_path);
}

}  // namespace ignis
