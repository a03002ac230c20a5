#include "tokenizer/pipeline.h"

#include <algorithm>
#include <cmath>
#include <queue>

#include "core/error.h"
#include "io/reader.h"

namespace ignis::tok {

namespace {
constexpr size_t kMaxVocab = size_t{1} << 24;
constexpr size_t kMaxMerges = size_t{1} << 24;

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

bool starts_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.compare(0, p.size(), p) == 0; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string r;
  r.reserve(s.size());
  size_t i = 0;
  while (true) {
    const size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    r.append(s, i, j - i);
    r.append(to);
    i = j + from.size();
  }
  r.append(s, i, std::string::npos);
  s.swap(r);
}

// Start of the UTF-8 character that ends right before byte `i` (i > 0).
size_t prev_char_start(std::string_view s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xc0) == 0x80 && i - j < 4) --j;
  return j;
}

struct Piece {
  std::string text;
  bool at_start;  // begins at offset 0 of the text (HF's offsets_original().0 == 0)
};

// HF's split with a SplitDelimiterBehavior: `matches` are sorted, non-overlapping, non-empty.
void split_pieces(const Piece& p, const std::vector<std::pair<size_t, size_t>>& matches, SplitBehavior behavior,
                  bool invert, std::vector<Piece>& out) {
  struct Span {
    size_t a, b;
    bool m;
  };
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [a, b] : matches) {
    if (a > prev) spans.push_back({prev, a, false});
    spans.push_back({a, b, true});
    prev = b;
  }
  if (prev < p.text.size()) spans.push_back({prev, p.text.size(), false});
  if (invert)
    for (auto& s : spans) s.m = !s.m;

  std::vector<std::pair<size_t, size_t>> res;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& s : spans) res.emplace_back(s.a, s.b);
      break;
    case SplitBehavior::kRemoved:
      for (auto& s : spans)
        if (!s.m) res.emplace_back(s.a, s.b);
      break;
    case SplitBehavior::kContiguous: {
      bool prev_m = false;
      for (auto& s : spans) {
        if (s.m == prev_m && !res.empty()) res.back().second = s.b;
        else res.emplace_back(s.a, s.b);
        prev_m = s.m;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_m = false;
      for (auto& s : spans) {
        if (s.m && !prev_m && !res.empty()) res.back().second = s.b;
        else res.emplace_back(s.a, s.b);
        prev_m = s.m;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_m = false;  // whether the span to the right was a delimiter
      for (size_t k = spans.size(); k-- > 0;) {
        const auto& s = spans[k];
        if (s.m && !prev_m && !res.empty()) res.back().first = s.a;
        else res.emplace_back(s.a, s.b);
        prev_m = s.m;
      }
      std::reverse(res.begin(), res.end());
      break;
    }
  }
  for (auto [a, b] : res)
    if (b > a) out.push_back({p.text.substr(a, b - a), p.at_start && a == 0});
}

void char_matches(std::string_view s, PreTokenizer::CharClass cls, std::vector<std::pair<size_t, size_t>>& out) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t a = i;
    const uint32_t cp = next_cp(s, i);
    bool m = false;
    switch (cls) {
      case PreTokenizer::CharClass::kNumeric: m = is_numeric(cp); break;
      case PreTokenizer::CharClass::kWhitespace: m = is_white_space(cp); break;
      case PreTokenizer::CharClass::kBertPunct: m = is_bert_punctuation(cp); break;
    }
    if (m) out.emplace_back(a, i);
  }
}
}  // namespace

int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int h = hex(s[3]), l = hex(s[4]);
  return (h < 0 || l < 0) ? -1 : h * 16 + l;
}

void PipelineTokenizer::set_special_ids(int32_t bos, int32_t eos, const std::vector<int32_t>& extra_stops) {
  const auto n = static_cast<int32_t>(vocab.size());
  if (bos >= n) fail(what, ": BOS token id ", bos, " is out of range (vocabulary of ", n, ")");
  if (eos >= n) fail(what, ": EOS token id ", eos, " is out of range (vocabulary of ", n, ")");
  bos_id_ = bos < 0 ? -1 : bos;
  eos_id_ = eos < 0 ? -1 : eos;
  stop_ids_.clear();
  if (eos_id_ >= 0) stop_ids_.push_back(eos_id_);
  for (int32_t id : extra_stops)
    if (id >= 0 && id < n && std::find(stop_ids_.begin(), stop_ids_.end(), id) == stop_ids_.end())
      stop_ids_.push_back(id);
}

void PipelineTokenizer::PairTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n + 2) cap <<= 1;
  if (cap <= slots.size()) return;
  std::vector<Slot> old;
  old.swap(slots);
  slots.assign(cap, Slot{});
  mask = cap - 1;
  count = 0;
  for (const Slot& s : old)
    if (s.key != ~uint64_t{0}) put(s.key, s.m, true);
}

void PipelineTokenizer::PairTable::put(uint64_t key, Merge m, bool overwrite) {
  if (2 * (count + 1) > slots.size()) reserve(std::max(count + 1, slots.size()));
  for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
    Slot& s = slots[i];
    if (s.key == key) {
      if (overwrite) s.m = m;
      return;
    }
    if (s.key == ~uint64_t{0}) {
      s.key = key;
      s.m = m;
      ++count;
      return;
    }
  }
}

void PipelineTokenizer::finalize() {
  const size_t n = vocab.size();
  if (n == 0) fail(what, ": the vocabulary is empty");
  if (n > kMaxVocab) fail(what, ": vocabulary of ", n, " tokens is larger than the supported ", kMaxVocab);
  if (attrs.empty()) attrs.assign(n, TokenAttr::kNormal);
  if (attrs.size() != n) fail(what, ": ", attrs.size(), " token types for ", n, " tokens");
  if (model.merge_by_score && scores.size() != n) fail(what, ": ", scores.size(), " scores for ", n, " tokens");
  for (size_t i = 0; i < n; ++i)
    if (!is_valid_utf8(vocab[i])) fail(what, ": token ", i, " is not valid UTF-8");
  if (model.merges.size() > kMaxMerges) fail(what, ": ", model.merges.size(), " merges is more than supported");
  const auto nid = static_cast<int32_t>(n);
  auto check_id = [&](int32_t id, const char* item) {
    if (id < -1 || id >= nid) fail(what, ": ", item, " token id ", id, " is out of range (vocabulary of ", n, ")");
  };
  check_id(model.unk_id, "unknown");
  for (int32_t id : prefix_ids) check_id(id, "added-at-start");
  for (int32_t id : suffix_ids) check_id(id, "added-at-end");
  if (std::find(prefix_ids.begin(), prefix_ids.end(), -1) != prefix_ids.end() ||
      std::find(suffix_ids.begin(), suffix_ids.end(), -1) != suffix_ids.end())
    fail(what, ": a token to add at the start or end is missing from the vocabulary");
  add_bos_ = !prefix_ids.empty();
  add_eos_ = !suffix_ids.empty();

  token_to_id_.clear();
  token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) token_to_id_.emplace(vocab[i], static_cast<int32_t>(i));

  byte_of_token_.assign(n, -1);
  byte_token_.fill(-1);
  for (size_t i = 0; i < n; ++i) {
    const int b = parse_byte_token(vocab[i]);
    if (attrs[i] == TokenAttr::kByte && b < 0) fail(what, ": token ", i, " has the byte type but is not named <0xNN>");
    if (b >= 0 && (attrs[i] == TokenAttr::kByte || model.byte_fallback)) {
      byte_of_token_[i] = static_cast<int16_t>(b);
      if (byte_token_[b] < 0) byte_token_[b] = static_cast<int32_t>(i);
    }
  }

  symbol_to_id_.clear();
  for (size_t i = 0; i < n; ++i) {
    const TokenAttr a = attrs[i];
    const bool ok = model.merge_by_score ? (a == TokenAttr::kNormal)
                                         : (a != TokenAttr::kControl && a != TokenAttr::kByte);
    if (ok) symbol_to_id_.emplace(vocab[i], static_cast<int32_t>(i));
  }

  pairs_.clear();
  if (model.type == ModelCfg::Type::kBPE) {
    if (model.merge_by_score) {
      for (size_t t = 0; t < n; ++t) {
        if (attrs[t] != TokenAttr::kNormal) continue;
        const std::string& s = vocab[t];
        size_t k = 0;
        if (!s.empty()) k = utf8_seq_len(static_cast<unsigned char>(s[0]));
        for (; k < s.size(); k += utf8_seq_len(static_cast<unsigned char>(s[k]))) {
          auto l = symbol_to_id_.find(std::string_view(s).substr(0, k));
          if (l == symbol_to_id_.end()) continue;
          auto r = symbol_to_id_.find(std::string_view(s).substr(k));
          if (r == symbol_to_id_.end()) continue;
          if (std::isnan(scores[t])) fail(what, ": token ", t, " has a NaN score");
          pairs_.put(pair_key(l->second, r->second), Merge{-static_cast<double>(scores[t]), static_cast<int32_t>(t)},
                     false);
        }
      }
    } else {
      pairs_.reserve(model.merges.size());
      std::string cat;
      for (size_t r = 0; r < model.merges.size(); ++r) {
        const auto& [a, b] = model.merges[r];
        auto ia = symbol_to_id_.find(a);
        if (ia == symbol_to_id_.end()) fail(what, ": merge ", r, " ('", a, " ", b, "') names unknown token '", a, "'");
        auto ib = symbol_to_id_.find(b);
        if (ib == symbol_to_id_.end()) fail(what, ": merge ", r, " ('", a, " ", b, "') names unknown token '", b, "'");
        cat.assign(a).append(b);
        auto im = symbol_to_id_.find(cat);
        if (im == symbol_to_id_.end())
          fail(what, ": merge ", r, " ('", a, " ", b, "') makes '", cat, "', which is not in the vocabulary");
        pairs_.put(pair_key(ia->second, ib->second), Merge{static_cast<double>(r), im->second}, true);
      }
    }
    model.merges.clear();
    model.merges.shrink_to_fit();
  }

  split_symbol_.clear();
  if (model.type == ModelCfg::Type::kBPE && !model.byte_level && !model.ignore_merges) {
    for (std::string_view sym : {std::string_view("\xE2\x96\x81"), std::string_view(" ")}) {
      bool ok = true;
      for (const auto& [tokstr, id] : symbol_to_id_) {
        // The token must be sym* followed by text without sym.
        size_t i = 0;
        while (tokstr.compare(i, sym.size(), sym) == 0) i += sym.size();
        if (tokstr.find(sym, i) != std::string::npos) {
          ok = false;
          break;
        }
      }
      if (ok) {
        split_symbol_ = sym;
        break;
      }
    }
  }

  byte_symbol_.fill(-1);
  if (model.byte_level) {
    for (int b = 0; b < 256; ++b) {
      std::string c;
      append_utf8(c, byte_to_cp(static_cast<uint8_t>(b)));
      auto it = symbol_to_id_.find(c);
      if (it != symbol_to_id_.end()) byte_symbol_[b] = it->second;
    }
  }

  for (auto& v : added_by_first_) v.clear();
  for (size_t k = 0; k < added.size(); ++k) {
    const auto& t = added[k];
    if (t.id < 0 || t.id >= nid) fail(what, ": added token '", t.content, "' has id ", t.id, " out of range");
    if (t.content.empty()) continue;
    if (!is_valid_utf8(t.content)) fail(what, ": added token ", t.id, " is not valid UTF-8");
    added_by_first_[static_cast<unsigned char>(t.content[0])].push_back(static_cast<int>(k));
  }
  for (auto& v : added_by_first_)
    std::stable_sort(v.begin(), v.end(), [&](int x, int y) { return added[x].content.size() > added[y].content.size(); });
}

// ---- encode ----------------------------------------------------------------------------------------

void PipelineTokenizer::split_added(std::string_view s, bool parse_special, std::vector<Segment>& out) const {
  const size_t n = s.size();
  size_t seg = 0, pos = 0;
  auto is_word = [&](uint32_t cp) { return cp == '_' || is_alphanumeric(cp); };
  while (pos < n) {
    const auto& cands = added_by_first_[static_cast<unsigned char>(s[pos])];
    const AddedToken* hit = nullptr;
    for (int k : cands) {
      const AddedToken& t = added[k];
      if (t.special && !parse_special) continue;
      if (s.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        if (pos > 0) {
          size_t j = prev_char_start(s, pos);
          if (is_word(next_cp(s, j))) continue;
        }
        if (pos + t.content.size() < n) {
          size_t j = pos + t.content.size();
          if (is_word(next_cp(s, j))) continue;
        }
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t a = pos, b = pos + hit->content.size();
    if (hit->lstrip) {
      while (a > seg) {
        size_t j = prev_char_start(s, a), k = j;
        if (!is_white_space(next_cp(s, k))) break;
        a = j;
      }
    }
    if (hit->rstrip) {
      while (b < n) {
        size_t k = b;
        if (!is_white_space(next_cp(s, k))) break;
        b = k;
      }
    }
    if (a > seg) out.push_back({false, -1, seg, a});
    out.push_back({true, hit->id, a, b});
    seg = pos = b;
  }
  if (n > seg) out.push_back({false, -1, seg, n});
}

std::string PipelineTokenizer::normalize_segment(std::string_view in, bool first_segment) const {
  std::string s(in);
  for (const Normalizer& nz : normalizers) {
    switch (nz.kind) {
      case Normalizer::Kind::kBert: {
        std::string r;
        r.reserve(s.size() + 8);
        size_t i = 0;
        while (i < s.size()) {
          uint32_t cp = next_cp(s, i);
          if (nz.clean_text) {
            if (cp == 0 || cp == 0xfffd || is_bert_control(cp)) continue;
            if (is_white_space(cp)) cp = ' ';
          }
          if (nz.handle_chinese_chars && is_cjk_ideograph(cp)) {
            r += ' ';
            append_utf8(r, cp);
            r += ' ';
          } else {
            append_utf8(r, cp);
          }
        }
        if (nz.strip_accents) {
          const std::string d = normalize(r, NormForm::kNFD);
          r.clear();
          size_t k = 0;
          while (k < d.size()) {
            const size_t a = k;
            if (!is_mark_nonspacing(next_cp(d, k))) r.append(d, a, k - a);
          }
        }
        if (nz.lower) r = lowercase(r);
        s.swap(r);
        break;
      }
      case Normalizer::Kind::kLowercase: s = lowercase(s); break;
      case Normalizer::Kind::kNFC: s = normalize(s, NormForm::kNFC); break;
      case Normalizer::Kind::kNFD: s = normalize(s, NormForm::kNFD); break;
      case Normalizer::Kind::kNFKC: s = normalize(s, NormForm::kNFKC); break;
      case Normalizer::Kind::kNFKD: s = normalize(s, NormForm::kNFKD); break;
      case Normalizer::Kind::kStripAccents: {
        std::string r;
        size_t k = 0;
        while (k < s.size()) {
          const size_t a = k;
          if (!is_mark_nonspacing(next_cp(s, k))) r.append(s, a, k - a);
        }
        s.swap(r);
        break;
      }
      case Normalizer::Kind::kStrip: {
        size_t a = 0, b = s.size();
        if (nz.strip_left)
          while (a < b) {
            size_t k = a;
            if (!is_white_space(next_cp(s, k))) break;
            a = k;
          }
        if (nz.strip_right)
          while (b > a) {
            size_t j = prev_char_start(s, b), k = j;
            if (!is_white_space(next_cp(s, k))) break;
            b = j;
          }
        s = s.substr(a, b - a);
        break;
      }
      case Normalizer::Kind::kPrepend:
        if (!s.empty() && (!nz.first_only || first_segment)) s.insert(0, nz.content);
        break;
      case Normalizer::Kind::kReplace: {
        std::vector<std::pair<size_t, size_t>> m;
        nz.regex->find_all(s, m);
        if (m.empty()) break;
        std::string r;
        size_t prev = 0;
        for (auto [a, b] : m) {
          r.append(s, prev, a - prev);
          r += nz.content;
          prev = b;
        }
        r.append(s, prev, std::string::npos);
        s.swap(r);
        break;
      }
    }
  }
  return s;
}

void PipelineTokenizer::pre_tokenize(std::string&& s, bool first_segment, std::vector<std::string>& out) const {
  std::vector<Piece> cur, next;
  cur.push_back({std::move(s), first_segment});
  std::vector<std::pair<size_t, size_t>> m;
  for (const PreTokenizer& pt : pre_tokenizers) {
    next.clear();
    for (Piece& p : cur) {
      m.clear();
      switch (pt.kind) {
        case PreTokenizer::Kind::kRegexSplit:
          pt.regex->find_all(p.text, m);
          split_pieces(p, m, pt.behavior, pt.invert, next);
          break;
        case PreTokenizer::Kind::kCharSplit:
          char_matches(p.text, pt.char_class, m);
          split_pieces(p, m, pt.behavior, pt.invert, next);
          break;
        case PreTokenizer::Kind::kByteLevel:
          if (pt.add_prefix_space && !starts_with(p.text, " ")) p.text = " " + p.text;
          if (pt.regex) {
            pt.regex->find_all(p.text, m);
            split_pieces(p, m, SplitBehavior::kIsolated, false, next);
          } else {
            next.push_back(std::move(p));
          }
          break;
        case PreTokenizer::Kind::kMetaspace: {
          replace_all(p.text, " ", pt.replacement);
          if (!starts_with(p.text, pt.replacement) &&
              (pt.prepend == PreTokenizer::Prepend::kAlways || (pt.prepend == PreTokenizer::Prepend::kFirst && p.at_start)))
            p.text.insert(0, pt.replacement);
          if (pt.split) {
            for (size_t k = p.text.find(pt.replacement); k != std::string::npos;
                 k = p.text.find(pt.replacement, k + pt.replacement.size()))
              m.emplace_back(k, k + pt.replacement.size());
            split_pieces(p, m, SplitBehavior::kMergedWithNext, false, next);
          } else {
            next.push_back(std::move(p));
          }
          break;
        }
        case PreTokenizer::Kind::kBert: {
          std::vector<Piece> words;
          char_matches(p.text, PreTokenizer::CharClass::kWhitespace, m);
          split_pieces(p, m, SplitBehavior::kRemoved, false, words);
          for (Piece& w : words) {
            m.clear();
            char_matches(w.text, PreTokenizer::CharClass::kBertPunct, m);
            split_pieces(w, m, SplitBehavior::kIsolated, false, next);
          }
          break;
        }
      }
    }
    cur.swap(next);
  }
  for (Piece& p : cur)
    if (!p.text.empty()) out.push_back(std::move(p.text));
}

void PipelineTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  if (split_symbol_.empty() || piece.size() < 64) return bpe_piece(piece, out);
  // Cut before every run of the boundary symbol that follows another character.
  const std::string_view sym = split_symbol_;
  size_t start = 0, k = piece.find(sym);
  while (k != std::string_view::npos) {
    size_t run_end = k;
    while (piece.compare(run_end, sym.size(), sym) == 0) run_end += sym.size();
    if (k > start) {
      bpe_piece(piece.substr(start, k - start), out);
      start = k;
    }
    k = piece.find(sym, run_end);
  }
  bpe_piece(piece.substr(start), out);
}

void PipelineTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (model.ignore_merges) {
    std::string mapped;
    std::string_view key = piece;
    if (model.byte_level) {
      for (unsigned char c : piece) append_utf8(mapped, byte_to_cp(c));
      key = mapped;
    }
    auto it = symbol_to_id_.find(key);
    if (it != symbol_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Sym> sy;
  sy.reserve(piece.size());
  auto push_sym = [&](int32_t id) {
    const auto k = static_cast<int32_t>(sy.size());
    sy.push_back({id, k - 1, k + 1, true});
  };
  if (model.byte_level) {
    for (unsigned char c : piece) {
      const int32_t id = byte_symbol_[c];
      if (id >= 0) push_sym(id);
      else if (model.unk_id >= 0 && !(model.fuse_unk && !sy.empty() && sy.back().id == model.unk_id)) push_sym(model.unk_id);
    }
  } else {
    size_t i = 0;
    while (i < piece.size()) {
      const size_t a = i;
      i += utf8_seq_len(static_cast<unsigned char>(piece[i]));
      if (i > piece.size()) i = piece.size();
      auto it = symbol_to_id_.find(piece.substr(a, i - a));
      if (it != symbol_to_id_.end()) {
        push_sym(it->second);
        continue;
      }
      bool have_bytes = model.byte_fallback;
      for (size_t k = a; k < i && have_bytes; ++k) have_bytes = byte_token_[static_cast<unsigned char>(piece[k])] >= 0;
      if (have_bytes) {
        for (size_t k = a; k < i; ++k) push_sym(byte_token_[static_cast<unsigned char>(piece[k])]);
      } else if (model.unk_id >= 0 && !(model.fuse_unk && !sy.empty() && sy.back().id == model.unk_id)) {
        push_sym(model.unk_id);
      }
    }
  }
  if (sy.empty()) return;
  sy.back().next = -1;

  struct Cand {
    double key;
    int32_t left, left_id, right_id, new_id;
  };
  auto worse = [](const Cand& x, const Cand& y) { return x.key != y.key ? x.key > y.key : x.left > y.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto try_push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = sy[l].next;
    if (r < 0) return;
    const Merge* m = pairs_.find(pair_key(sy[l].id, sy[r].id));
    if (m) heap.push({m->key, l, sy[l].id, sy[r].id, m->id});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(sy.size()); ++k) try_push(k);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& L = sy[c.left];
    if (!L.alive || L.id != c.left_id || L.next < 0) continue;
    Sym& R = sy[L.next];
    if (R.id != c.right_id) continue;
    L.id = c.new_id;
    R.alive = false;
    L.next = R.next;
    if (R.next >= 0) sy[R.next].prev = c.left;
    try_push(L.prev);
    try_push(c.left);
  }
  for (int32_t k = 0; k >= 0; k = sy[k].next) out.push_back(sy[k].id);
}

void PipelineTokenizer::wordpiece(std::string_view word, std::vector<int32_t>& out) const {
  size_t nchars = 0;
  for (size_t i = 0; i < word.size(); i += utf8_seq_len(static_cast<unsigned char>(word[i]))) ++nchars;
  if (nchars > model.max_input_chars_per_word) {
    if (model.unk_id >= 0) out.push_back(model.unk_id);
    return;
  }
  const size_t mark = out.size();
  std::string key;
  size_t start = 0;
  while (start < word.size()) {
    size_t end = word.size();
    int32_t found = -1;
    const std::string& prefix = start == 0 ? model.word_prefix : model.cont_prefix;
    while (end > start) {
      key.assign(prefix).append(word.substr(start, end - start));
      auto it = symbol_to_id_.find(key);
      if (it != symbol_to_id_.end()) {
        found = it->second;
        break;
      }
      end = prev_char_start(word, end);
      if (end < start) end = start;
    }
    if (found < 0) {
      out.resize(mark);
      if (model.unk_id >= 0) out.push_back(model.unk_id);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

std::vector<int32_t> PipelineTokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = to_valid_utf8(text);
    text = repaired;
  }
  std::vector<Segment> segs;
  split_added(text, parse_special, segs);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special) out = prefix_ids;
  std::vector<std::string> pieces;
  for (const Segment& sg : segs) {
    if (sg.is_token) {
      out.push_back(sg.id);
      continue;
    }
    const bool first = sg.begin == 0;
    std::string norm = normalize_segment(text.substr(sg.begin, sg.end - sg.begin), first);
    pieces.clear();
    pre_tokenize(std::move(norm), first, pieces);
    for (const std::string& p : pieces) {
      if (model.type == ModelCfg::Type::kBPE) bpe(p, out);
      else wordpiece(p, out);
    }
  }
  if (add_special) out.insert(out.end(), suffix_ids.begin(), suffix_ids.end());
  return out;
}

// ---- decode ----------------------------------------------------------------------------------------

std::string PipelineTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= vocab.size())
    fail("tokenizer: token id ", id, " is out of range (vocabulary of ", vocab.size(), ")");
  const TokenAttr a = attrs[id];
  if (a == TokenAttr::kControl || a == TokenAttr::kUnknown || a == TokenAttr::kUserDefined) return vocab[id];
  if (decoder.byte_tokens && byte_of_token_[id] >= 0) return std::string(1, static_cast<char>(byte_of_token_[id]));
  const std::string& t = vocab[id];
  std::string s;
  if (decoder.byte_level) {
    s.reserve(t.size());
    size_t i = 0;
    while (i < t.size()) {
      const size_t a0 = i;
      const uint32_t cp = next_cp(t, i);
      const int b = cp_to_byte(cp);
      if (b >= 0) s += static_cast<char>(b);
      else s.append(t, a0, i - a0);
    }
  } else {
    s = t;
  }
  if (!decoder.replace_from.empty()) replace_all(s, decoder.replace_from, decoder.replace_to);
  if (decoder.wordpiece) {
    if (!decoder.wp_cont.empty() && starts_with(s, decoder.wp_cont)) s.erase(0, decoder.wp_cont.size());
    else if (!decoder.wp_word.empty() && starts_with(s, decoder.wp_word)) s.erase(0, decoder.wp_word.size());
  }
  return s;
}

std::string PipelineTokenizer::decode_piece(int32_t id, bool first) const {
  std::string s = token_bytes(id);
  if (decoder.wordpiece) {
    const std::string& t = vocab[id];
    if (!decoder.wp_cont.empty()) {
      // HF: from the second token on, "##x" -> "x" and anything else -> " x"; the first is kept as is.
      if (first) {
        if (starts_with(t, decoder.wp_cont) && !is_special(id)) s = t;
      } else if (is_special(id) || attrs[id] == TokenAttr::kUserDefined || !starts_with(t, decoder.wp_cont)) {
        s.insert(0, " ");
      }
    } else if (!first) {
      // llama.cpp's GGUF spelling: word-initial tokens carry U+2581, continuations nothing.
      const bool word = is_special(id) || attrs[id] == TokenAttr::kUserDefined ||
                        (!decoder.wp_word.empty() && starts_with(t, decoder.wp_word));
      if (word) s.insert(0, " ");
    }
    if (decoder.wp_cleanup && s.find(' ') != std::string::npos) {
      static constexpr std::pair<std::string_view, std::string_view> kCleanup[] = {
          {" .", "."},     {" ?", "?"},    {" !", "!"},   {" ,", ","},   {" ' ", "'"},  {" n't", "n't"},
          {" 'm", "'m"},   {" do not", " don't"},          {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
      for (auto [from, to] : kCleanup) replace_all(s, from, to);
    }
  } else if (decoder.join_spaces && !first) {
    s.insert(0, " ");
  }
  if (first && decoder.strip_first_spaces > 0) {
    size_t k = 0;
    while (k < s.size() && k < static_cast<size_t>(decoder.strip_first_spaces) && s[k] == ' ') ++k;
    s.erase(0, k);
  }
  return s;
}

int32_t PipelineTokenizer::token_id(std::string_view token) const {
  auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

bool PipelineTokenizer::is_special(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= attrs.size()) return false;
  return attrs[id] == TokenAttr::kControl || attrs[id] == TokenAttr::kUnknown;
}

std::string PipelineTokenizer::describe() const { return detail::concat(name, ", ", vocab.size(), " tokens"); }

}  // namespace ignis::tok
