// Tokenizers that match Hugging Face `tokenizers` exactly:
//  - byte-level BPE (GPT-2, SmolLM2, Llama-3, Qwen2, ...), with the pre-tokenizer regex of each family;
//  - SentencePiece BPE (Llama-2 family) with byte fallback;
//  - WordPiece (BERT).
// Built from GGUF metadata, a tokenizer.json (+ tokenizer_config.json), or a llama2.c tokenizer.bin.
//
// GGUF tokenizer.ggml.pre values understood for byte-level BPE: gpt2, gpt-2, default, mpt, olmo,
// phi-2 (GPT-2's ByteLevel regex); smollm, starcoder, refact (Digits(individual) + ByteLevel);
// llama-bpe, llama3, llama-v3 (Llama-3 regex, ignore_merges); qwen2 (NFC + Qwen2 regex). Any
// other value is an error that lists these. tokenizer.json: models BPE and WordPiece; normalizers
// BertNormalizer, Lowercase, NF(K)C/D, StripAccents, Strip, Prepend, Replace, Sequence;
// pre-tokenizers ByteLevel (last), Split, Digits, Metaspace, BertPreTokenizer, Whitespace,
// WhitespaceSplit, Punctuation, CharDelimiterSplit, Sequence; decoders ByteLevel, ByteFallback,
// Fuse, Replace, Strip, Metaspace, WordPiece, Sequence; post-processors TemplateProcessing,
// BertProcessing, RobertaProcessing, ByteLevel, Sequence. Others are errors naming the type.
// Implementation: pipeline.h (stages), *_loader.cpp (formats), unicode.h (libutf8proc), regex.h (PCRE2).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ignis {

class GGUFFile;

enum class TokenizerKind : uint8_t { kByteBPE, kSentencePiece, kWordPiece };

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  static std::unique_ptr<Tokenizer> from_gguf(const GGUFFile& gguf);
  // tokenizer.json, with tokenizer_config.json from the same folder when present
  // (special tokens, add_bos/add_eos, chat template).
  static std::unique_ptr<Tokenizer> from_hf_json(const std::string& tokenizer_json_path);
  // llama2.c tokenizer.bin (int max_token_length, then per token: float score, int len, bytes).
  static std::unique_ptr<Tokenizer> from_llama2c(const std::string& path, int vocab_size);
  // Parses from memory (used by the fuzzers); `what` names the source in errors.
  static std::unique_ptr<Tokenizer> from_hf_json_text(std::string_view json, std::string_view config_json,
                                                      const std::string& what);
  static std::unique_ptr<Tokenizer> from_llama2c_bytes(const uint8_t* data, size_t size, int vocab_size,
                                                       const std::string& what);

  virtual TokenizerKind kind() const = 0;
  virtual int vocab_size() const = 0;

  // Text -> ids. add_special: add BOS/EOS (or [CLS]/[SEP]) as the model's rules say.
  // parse_special: text like "<|im_start|>" becomes its special token instead of being split
  // (non-special added tokens are always matched, as HF does).
  // Text that is not valid UTF-8 is first repaired: each maximal invalid subsequence becomes
  // U+FFFD (Python's errors="replace"); HF tokenizers only accepts valid strings. Thread-safe.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = false,
                                      bool parse_special = true) const = 0;
  // The raw bytes a token stands for (may be part of a UTF-8 character); specials as their text.
  virtual std::string token_bytes(int32_t id) const = 0;
  // Whole-sequence decode (as HF's decode with skip_special_tokens=False, no cleanup).
  // Always valid UTF-8: bytes that do not form characters become U+FFFD.
  virtual std::string decode(const std::vector<int32_t>& ids) const;
  // skip_special: drop special tokens first (HF skip_special_tokens=True).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;
  // The bytes token `id` adds to decoded text; `first`: it is the first token decoded (SentencePiece
  // drops its leading space, WordPiece does not put a space before it). Throws on a bad id.
  virtual std::string decode_piece(int32_t id, bool first) const { return token_bytes(id); }

  // Token id of an exact token string, or -1.
  virtual int32_t token_id(std::string_view token) const = 0;
  virtual bool is_special(int32_t id) const = 0;

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  // Tokens that end a generation: eos plus end-of-turn tokens such as <|im_end|>, <|eot_id|>.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // The model's chat template (Jinja source) if the tokenizer files carry one.
  const std::string& chat_template() const { return chat_template_; }
  // A name for `ignis info`: e.g. "byte-level BPE (smollm), 49152 tokens".
  virtual std::string describe() const = 0;

 protected:
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  std::vector<int32_t> stop_ids_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  std::string chat_template_;
};

// Turns a stream of token ids into text without ever emitting a broken UTF-8 sequence:
// bytes of a character that spans tokens are held back until the character is complete.
// The concatenated output equals decode(ids, skip_special). To stream a continuation exactly as
// the whole text would decode, push the prompt's ids first and ignore what they return.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false) : tok_(tok), skip_special_(skip_special) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back (invalid bytes become U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_ = false;
  std::string pending_;
  bool first_ = true;
};

}  // namespace ignis
