// The one tokenizer implementation behind every format. It follows the stages of Hugging Face
// `tokenizers`, so that a tokenizer.json maps onto it one to one and a GGUF or llama2.c vocabulary
// is described by the stages HF would use for the same model:
//
//   text --(added/special tokens split out)--> segments
//        --normalizers--> --pre-tokenizers (splits)--> pieces --model (BPE / WordPiece)--> ids
//   ids  --decoder (per token, streamable)--> bytes --lossy UTF-8--> text
//
// Loaders (gguf_loader.cpp, hf_json_loader.cpp, llama2c_loader.cpp) fill in the public fields
// and call finalize(), which checks everything and builds the lookup tables.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace ignis::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// How a token behaves. kControl/kUnknown are "special" (HF special=true); kUserDefined are added
// tokens that are always matched in the text; kByte are SentencePiece's <0xNN> tokens.
enum class TokenAttr : uint8_t { kNormal, kUnknown, kControl, kUserDefined, kUnused, kByte };

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = true;
  bool lstrip = false, rstrip = false, single_word = false;
};

// ---- normalizers ----------------------------------------------------------------------------------
struct Normalizer {
  enum class Kind { kBert, kLowercase, kNFC, kNFD, kNFKC, kNFKD, kStripAccents, kStrip, kPrepend, kReplace };
  Kind kind = Kind::kNFC;
  // kBert
  bool clean_text = true, handle_chinese_chars = true, strip_accents = false, lower = false;
  // kStrip
  bool strip_left = false, strip_right = false;
  // kPrepend (content), kReplace (regex -> content)
  std::string content;
  std::shared_ptr<Regex> regex;
  // Prepend only to the segment that starts the text (HF Metaspace prepend_scheme "first").
  bool first_only = false;
};

// ---- pre-tokenizers -------------------------------------------------------------------------------
enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizer {
  enum class Kind { kRegexSplit, kCharSplit, kByteLevel, kMetaspace, kBert };
  enum class CharClass { kNumeric, kWhitespace, kBertPunct };
  Kind kind = Kind::kRegexSplit;
  std::shared_ptr<Regex> regex;  // kRegexSplit; kByteLevel when use_regex
  CharClass char_class = CharClass::kNumeric;  // kCharSplit
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // kByteLevel
  // kMetaspace
  std::string replacement = "\xE2\x96\x81";
  enum class Prepend { kAlways, kFirst, kNever } prepend = Prepend::kAlways;
  bool split = true;
};

// ---- the model ------------------------------------------------------------------------------------
struct ModelCfg {
  enum class Type { kBPE, kWordPiece } type = Type::kBPE;
  // BPE
  bool byte_level = false;       // symbols are GPT-2's byte code points
  bool byte_fallback = false;    // unknown characters become <0xNN> tokens
  bool fuse_unk = false;         // consecutive unknowns become one
  bool ignore_merges = false;    // a piece that is a whole token is taken as is (Llama-3)
  // Merges by score (SentencePiece): any adjacent pair whose concatenation is a normal token
  // merges, highest score first. Otherwise explicit merges by rank.
  bool merge_by_score = false;
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  // WordPiece: word-initial pieces are looked up with word_prefix, the others with cont_prefix
  // (tokenizer.json: "" and "##"; llama.cpp's GGUF: "\u2581" and "").
  std::string word_prefix, cont_prefix = "##";
  size_t max_input_chars_per_word = 100;
  int32_t unk_id = -1;
};

struct DecoderCfg {
  bool byte_level = false;          // map GPT-2 byte code points back to bytes
  std::string replace_from, replace_to;  // e.g. U+2581 -> ' ' for SentencePiece
  bool byte_tokens = false;         // <0xNN> tokens produce the raw byte
  int strip_first_spaces = 0;       // drop up to this many leading ' ' of the first token
  bool wordpiece = false;           // join with ' ', pieces starting with `wp_cont` are glued
  bool wp_cleanup = true;           // HF WordPiece decoder cleanup (" ." -> "." ...), per token
  bool join_spaces = false;         // no decoder in tokenizer.json: HF joins tokens with ' '
  std::string wp_cont = "##";
  std::string wp_word;              // GGUF WordPiece: word-initial prefix replaced by ' '
};

class PipelineTokenizer final : public Tokenizer {
 public:
  // ---- configuration filled in by the loaders ----
  std::string what;      // names the source in error messages
  std::string name;      // for describe(): "byte-level BPE (smollm)"
  TokenizerKind tkind = TokenizerKind::kByteBPE;
  std::vector<std::string> vocab;   // id -> token string (model space: byte-level, U+2581, ...)
  std::vector<TokenAttr> attrs;     // per id
  std::vector<float> scores;        // per id (merge_by_score)
  std::vector<AddedToken> added;    // matched in the raw text
  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> pre_tokenizers;
  ModelCfg model;
  DecoderCfg decoder;
  std::vector<int32_t> prefix_ids, suffix_ids;  // added by encode(add_special)
  // Tokens other than eos that end a generation, looked up by name when present.
  void set_special_ids(int32_t bos, int32_t eos, const std::vector<int32_t>& extra_stops);

  void set_chat_template(std::string t) { chat_template_ = std::move(t); }
  const std::string& chat_template_text() const { return chat_template_; }
  // Checks the configuration and builds the tables. Throws ignis::Error.
  void finalize();

  // ---- Tokenizer ----
  TokenizerKind kind() const override { return tkind; }
  int vocab_size() const override { return static_cast<int>(vocab.size()); }
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode_piece(int32_t id, bool first) const override;
  int32_t token_id(std::string_view token) const override;
  bool is_special(int32_t id) const override;
  std::string describe() const override;

 private:
  struct Segment {
    bool is_token;
    int32_t id;
    size_t begin, end;
  };
  void split_added(std::string_view text, bool parse_special, std::vector<Segment>& out) const;
  std::string normalize_segment(std::string_view s, bool first_segment) const;
  void pre_tokenize(std::string&& s, bool first_segment, std::vector<std::string>& pieces) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void wordpiece(std::string_view word, std::vector<int32_t>& out) const;

  TokenMap token_to_id_;      // every token
  TokenMap symbol_to_id_;     // tokens a BPE/WordPiece piece may consist of
  struct Merge {
    double key;   // lower merges first
    int32_t id;
  };
  // Open-addressing table (pair of ids -> merge): one probe, usually in cache, per lookup.
  struct PairTable {
    struct Slot {
      uint64_t key = ~uint64_t{0};
      Merge m{};
    };
    std::vector<Slot> slots;
    size_t mask = 0, count = 0;
    static size_t mix(uint64_t k) {
      k ^= k >> 33;
      k *= 0xff51afd7ed558ccdULL;
      k ^= k >> 33;
      return static_cast<size_t>(k);
    }
    void clear() { slots.clear(), mask = 0, count = 0; }
    void reserve(size_t n);
    // insert: overwrite=false keeps an existing entry.
    void put(uint64_t key, Merge m, bool overwrite);
    const Merge* find(uint64_t key) const {
      if (slots.empty()) return nullptr;
      for (size_t i = mix(key) & mask;; i = (i + 1) & mask) {
        const Slot& s = slots[i];
        if (s.key == key) return &s.m;
        if (s.key == ~uint64_t{0}) return nullptr;
      }
    }
  };
  PairTable pairs_;
  std::array<int32_t, 256> byte_symbol_{};  // byte-level: id of each byte's code point
  std::array<int32_t, 256> byte_token_{};   // <0xNN> token ids, -1 when absent
  std::vector<int16_t> byte_of_token_;      // per id: the byte of a <0xNN> token, else -1
  // When no token has the word-boundary symbol (U+2581 or ' ') after another character, a
  // SentencePiece-style text can be cut before each run of that symbol and each part merged on its
  // own: exactly the same result, but small heaps instead of one over the whole text.
  std::string split_symbol_;
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
  // Added tokens grouped by first byte, longest first.
  std::array<std::vector<int>, 256> added_by_first_{};
};

// Parses "<0xNN>" -> NN, or -1.
int parse_byte_token(std::string_view s);

}  // namespace ignis::tok
