// Tokenizer::from_gguf: builds the pipeline HF tokenizers would use for the model from GGUF's
// tokenizer.ggml.* metadata (the keys llama.cpp's converter writes).
#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/presets.h"

namespace ignis {
namespace tok {

PreTokenizer byte_level_pre(bool add_prefix_space, bool use_regex, const std::string& what) {
  PreTokenizer p;
  p.kind = PreTokenizer::Kind::kByteLevel;
  p.add_prefix_space = add_prefix_space;
  if (use_regex) p.regex = std::make_shared<Regex>(std::string(kGpt2Pattern), false, what);
  return p;
}

PreTokenizer regex_split_pre(std::string_view pattern, SplitBehavior b, bool invert, const std::string& what) {
  PreTokenizer p;
  p.kind = PreTokenizer::Kind::kRegexSplit;
  p.regex = std::make_shared<Regex>(std::string(pattern), false, what);
  p.behavior = b;
  p.invert = invert;
  return p;
}

void apply_bpe_preset(PipelineTokenizer& t, const std::string& pre) {
  const std::string& w = t.what;
  if (pre == "gpt2" || pre == "gpt-2" || pre == "default" || pre == "mpt" || pre == "olmo" || pre == "phi-2") {
    // HF: ByteLevel(add_prefix_space=false, use_regex=true).
    t.pre_tokenizers.push_back(byte_level_pre(false, true, w));
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact") {
    // HF: Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false)].
    PreTokenizer d;
    d.kind = PreTokenizer::Kind::kCharSplit;
    d.char_class = PreTokenizer::CharClass::kNumeric;
    d.behavior = SplitBehavior::kIsolated;
    t.pre_tokenizers.push_back(d);
    t.pre_tokenizers.push_back(byte_level_pre(false, true, w));
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
    // HF: Sequence[Split(pattern, Isolated), ByteLevel(use_regex=false)], BPE ignore_merges=true.
    t.pre_tokenizers.push_back(regex_split_pre(kLlama3Pattern, SplitBehavior::kIsolated, false, w));
    t.pre_tokenizers.push_back(byte_level_pre(false, false, w));
    t.model.ignore_merges = true;
  } else if (pre == "qwen2") {
    // HF: NFC, then Sequence[Split(pattern, Isolated), ByteLevel(use_regex=false)].
    Normalizer n;
    n.kind = Normalizer::Kind::kNFC;
    t.normalizers.push_back(n);
    t.pre_tokenizers.push_back(regex_split_pre(kQwen2Pattern, SplitBehavior::kIsolated, false, w));
    t.pre_tokenizers.push_back(byte_level_pre(false, false, w));
  } else {
    fail(w, ": tokenizer.ggml.pre '", pre,
         "' is not supported; known: gpt2, gpt-2, default, mpt, olmo, phi-2, smollm, starcoder, refact, "
         "llama-bpe, llama3, llama-v3, qwen2");
  }
}

std::vector<int32_t> find_stop_tokens(const PipelineTokenizer& t) {
  static constexpr std::string_view kNames[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>",
                                                "<|eom_id|>", "<|end|>",    "<|endoftext|>"};
  std::vector<int32_t> ids;
  for (std::string_view n : kNames) {
    const int32_t id = t.token_id(n);
    if (id >= 0 && t.is_special(id)) ids.push_back(id);
  }
  return ids;
}

}  // namespace tok

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& g) {
  using namespace tok;
  auto t = std::make_unique<PipelineTokenizer>();
  t->what = g.path() + " (tokenizer)";
  const std::string& w = t->what;
  const auto model = g.get_string("tokenizer.ggml.model");
  if (!model) fail(g.path(), ": no tokenizer.ggml.model key: the file carries no tokenizer");
  const auto* tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) fail(g.path(), ": no tokenizer.ggml.tokens array");
  const size_t n = tokens->size();
  t->vocab = *tokens;

  if (const auto* types = g.get_int_array("tokenizer.ggml.token_type")) {
    if (types->size() != n) fail(w, ": ", types->size(), " token types for ", n, " tokens");
    t->attrs.resize(n);
    for (size_t i = 0; i < n; ++i) {
      switch ((*types)[i]) {
        case 1: t->attrs[i] = TokenAttr::kNormal; break;
        case 2: t->attrs[i] = TokenAttr::kUnknown; break;
        case 3: t->attrs[i] = TokenAttr::kControl; break;
        case 4: t->attrs[i] = TokenAttr::kUserDefined; break;
        case 5: t->attrs[i] = TokenAttr::kUnused; break;
        case 6: t->attrs[i] = TokenAttr::kByte; break;
        default: fail(w, ": token ", i, " has unknown token type ", (*types)[i]);
      }
    }
  } else {
    t->attrs.assign(n, TokenAttr::kNormal);
  }
  if (const auto* scores = g.get_float_array("tokenizer.ggml.scores")) {
    if (scores->size() != n) fail(w, ": ", scores->size(), " scores for ", n, " tokens");
    t->scores.assign(scores->begin(), scores->end());
  }
  auto get_id = [&](const char* key) -> int32_t {
    const auto v = g.get_int(key);
    if (!v) return -1;
    if (*v < 0 || static_cast<uint64_t>(*v) >= n) fail(w, ": ", key, " = ", *v, " is out of range (", n, " tokens)");
    return static_cast<int32_t>(*v);
  };
  const int32_t bos = get_id("tokenizer.ggml.bos_token_id");
  const int32_t eos = get_id("tokenizer.ggml.eos_token_id");
  int32_t unk = get_id("tokenizer.ggml.unknown_token_id");
  const int32_t eot = get_id("tokenizer.ggml.eot_token_id");
  const int32_t eom = get_id("tokenizer.ggml.eom_token_id");
  get_id("tokenizer.ggml.padding_token_id");  // validated only
  if (unk < 0)
    for (size_t i = 0; i < n; ++i)
      if (t->attrs[i] == TokenAttr::kUnknown) {
        unk = static_cast<int32_t>(i);
        break;
      }
  const std::string pre = g.get_string("tokenizer.ggml.pre").value_or("default");
  if (auto ct = g.get_string("tokenizer.chat_template")) t->chat_template_ = *ct;

  // Control/unknown tokens are matched in the text when parse_special is on; user-defined ones always.
  for (size_t i = 0; i < n; ++i) {
    const TokenAttr a = t->attrs[i];
    if (a == TokenAttr::kControl || a == TokenAttr::kUnknown || a == TokenAttr::kUserDefined) {
      AddedToken at;
      at.content = t->vocab[i];
      at.id = static_cast<int32_t>(i);
      at.special = a != TokenAttr::kUserDefined;
      t->added.push_back(std::move(at));
    }
  }

  bool add_bos = false, add_eos = false;
  if (*model == "gpt2") {
    t->tkind = TokenizerKind::kByteBPE;
    t->name = "byte-level BPE (" + pre + ")";
    t->model.type = ModelCfg::Type::kBPE;
    t->model.byte_level = true;
    t->model.unk_id = -1;
    const auto* merges = g.get_string_array("tokenizer.ggml.merges");
    if (!merges) fail(w, ": a BPE tokenizer needs tokenizer.ggml.merges");
    t->model.merges.reserve(merges->size());
    for (size_t r = 0; r < merges->size(); ++r) {
      const std::string& m = (*merges)[r];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos) fail(w, ": merge ", r, " ('", m, "') is not two tokens separated by a space");
      t->model.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    if (g.get_bool("tokenizer.ggml.add_space_prefix").value_or(false))
      t->pre_tokenizers.push_back(byte_level_pre(true, false, w));
    apply_bpe_preset(*t, pre);
    t->decoder.byte_level = true;
    add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
    add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  } else if (*model == "llama") {
    // HF's Llama tokenizer (legacy): normalizer Prepend("\u2581") + Replace(" ", "\u2581"), BPE with
    // byte fallback; decoder Replace("\u2581", " "), ByteFallback, Fuse, Strip(" ", 1, 0).
    t->tkind = TokenizerKind::kSentencePiece;
    t->name = "SentencePiece BPE";
    if (t->scores.empty()) fail(w, ": a SentencePiece tokenizer needs tokenizer.ggml.scores");
    const bool prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    const std::string sp = "\xE2\x96\x81";
    if (prefix) {
      Normalizer p;
      p.kind = Normalizer::Kind::kPrepend;
      p.content = sp;
      t->normalizers.push_back(p);
    }
    Normalizer r;
    r.kind = Normalizer::Kind::kReplace;
    r.regex = std::make_shared<Regex>(" ", true, w);
    r.content = sp;
    t->normalizers.push_back(r);
    t->model.type = ModelCfg::Type::kBPE;
    t->model.merge_by_score = true;
    t->model.byte_fallback = true;
    t->model.unk_id = unk;
    t->decoder.replace_from = sp;
    t->decoder.replace_to = " ";
    t->decoder.byte_tokens = true;
    t->decoder.strip_first_spaces = prefix ? 1 : 0;
    add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
    add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  } else if (*model == "bert") {
    // llama.cpp's converter stores word-initial WordPiece tokens with a U+2581 prefix and
    // continuations ("##x") without one.
    t->tkind = TokenizerKind::kWordPiece;
    bool cased = false;
    for (size_t i = 0; i < n && !cased; ++i) {
      if (t->attrs[i] != TokenAttr::kNormal) continue;
      for (char c : t->vocab[i])
        if (c >= 'A' && c <= 'Z') {
          cased = true;
          break;
        }
    }
    t->name = cased ? "WordPiece (cased)" : "WordPiece (uncased)";
    Normalizer b;
    b.kind = Normalizer::Kind::kBert;
    b.lower = !cased;
    b.strip_accents = !cased;
    t->normalizers.push_back(b);
    PreTokenizer p;
    p.kind = PreTokenizer::Kind::kBert;
    t->pre_tokenizers.push_back(p);
    t->model.type = ModelCfg::Type::kWordPiece;
    t->model.word_prefix = "\xE2\x96\x81";
    t->model.cont_prefix = "";
    t->model.unk_id = unk;
    t->decoder.wordpiece = true;
    t->decoder.wp_cont = "";
    t->decoder.wp_word = "\xE2\x96\x81";
    int32_t cls = get_id("tokenizer.ggml.cls_token_id");
    int32_t sep = get_id("tokenizer.ggml.seperator_token_id");
    if (sep < 0) sep = get_id("tokenizer.ggml.separator_token_id");
    auto find_tok = [&](std::string_view name, int32_t fallback) {
      for (size_t i = 0; i < n; ++i)
        if (t->vocab[i] == name) return static_cast<int32_t>(i);
      return fallback;
    };
    if (cls < 0) cls = find_tok("[CLS]", bos);
    if (sep < 0) sep = find_tok("[SEP]", eos);
    if (g.get_bool("tokenizer.ggml.add_bos_token").value_or(true) && cls >= 0) t->prefix_ids.push_back(cls);
    if (g.get_bool("tokenizer.ggml.add_eos_token").value_or(true) && sep >= 0) t->suffix_ids.push_back(sep);
    t->finalize();
    t->set_special_ids(bos >= 0 ? bos : cls, eos >= 0 ? eos : sep, {});
    return t;
  } else if (*model == "no_vocab" || *model == "none") {
    fail(g.path(), ": the model has no vocabulary (tokenizer.ggml.model = '", *model, "')");
  } else {
    fail(w, ": tokenizer.ggml.model '", *model, "' is not supported (supported: gpt2, llama, bert)");
  }
  if (add_bos) {
    if (bos < 0) fail(w, ": add_bos_token is set but there is no tokenizer.ggml.bos_token_id");
    t->prefix_ids.push_back(bos);
  }
  if (add_eos) {
    if (eos < 0) fail(w, ": add_eos_token is set but there is no tokenizer.ggml.eos_token_id");
    t->suffix_ids.push_back(eos);
  }
  t->finalize();
  std::vector<int32_t> stops = find_stop_tokens(*t);
  if (eot >= 0) stops.push_back(eot);
  if (eom >= 0) stops.push_back(eom);
  t->set_special_ids(bos, eos, stops);
  return t;
}

}  // namespace ignis
