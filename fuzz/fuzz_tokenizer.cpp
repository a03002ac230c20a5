// libFuzzer target for the tokenizers. The first byte picks what the rest is:
//   0: a tokenizer.json (the text after the first 0x00 byte, if any, is tokenizer_config.json)
//   1: a llama2.c tokenizer.bin (next two bytes: the vocabulary size)
//   2..: text for one of three small built-in tokenizers (byte-level BPE with specials,
//        SentencePiece-style BPE with byte fallback, uncased WordPiece)
// Whenever a tokenizer loads, some strings are encoded and decoded (whole and streamed) and
// random ids are decoded. ignis::Error is the only acceptable failure; anything else is a bug.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"
#include "io/reader.h"
#include "tokenizer/tokenizer.h"

namespace {

constexpr const char* kByteLevel = R"({
  "added_tokens": [{"id": 9, "content": "<|im_start|>", "special": true},
                   {"id": 10, "content": "<sep>", "special": false, "lstrip": true, "rstrip": true}],
  "normalizer": {"type": "NFC"},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
                    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]},
  "decoder": {"type": "ByteLevel"},
  "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|im_start|>"}},
                     {"Sequence": {"id": "A"}}], "special_tokens": {}},
  "model": {"type": "BPE", "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "he": 4, "ll": 5, "hell": 6, "\u0120": 7,
            "\u0120h": 8}, "merges": ["h e", "l l", "he ll", "\u0120 h"]}})";

constexpr const char* kSpm = R"({
  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                 {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}],
  "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
            "vocab": {"<unk>": 0, "<s>": 1, "<0xE2>": 2, "<0x96>": 3, "<0x81>": 4, "<0xF0>": 5, "<0x9F>": 6,
                      "\u2581": 7, "a": 8, "b": 9, "\u2581a": 10, "ab": 11, "\u2581ab": 12},
            "merges": ["\u2581 a", "a b", "\u2581a b"]}})";

constexpr const char* kWordPiece = R"({
  "normalizer": {"type": "BertNormalizer", "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "decoder": {"type": "WordPiece", "prefix": "##"},
  "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 2], "sep": ["[SEP]", 3]},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "max_input_chars_per_word": 12,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "un": 4, "##aff": 5, "##able": 6, "a": 7,
                      ",": 8, "##b": 9, "\u4e2d": 10}}})";

void exercise(const ignis::Tokenizer& t, std::string_view text, uint32_t seed) {
  const std::string samples[] = {std::string(text), " héllo  wörld\n\t12345 🦙 中文 <|im_start|>user\nhi<sep>x",
                                 "\xff\xfe broken \xc3"};
  for (const std::string& s : samples) {
    for (int mode = 0; mode < 4; ++mode) {
      const auto ids = t.encode(s, mode & 1, mode & 2);
      for (int32_t id : ids)
        if (id < 0 || id >= t.vocab_size()) __builtin_trap();
      const std::string whole = t.decode(ids);
      if (!ignis::is_valid_utf8(whole)) __builtin_trap();
      ignis::StreamDecoder sd(t);
      std::string streamed;
      for (int32_t id : ids) streamed += sd.push(id);
      streamed += sd.flush();
      if (streamed != whole) __builtin_trap();
    }
  }
  // Random ids (in range) decode to valid UTF-8, streamed or not.
  std::vector<int32_t> ids;
  uint32_t x = seed | 1;
  for (int i = 0; i < 16 && t.vocab_size() > 0; ++i) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(static_cast<int32_t>(x % static_cast<uint32_t>(t.vocab_size())));
  }
  const std::string whole = t.decode(ids, (seed & 1) != 0);
  if (!ignis::is_valid_utf8(whole)) __builtin_trap();
  for (int32_t id : ids) (void)t.token_bytes(id);
  (void)t.describe();
  (void)t.token_id(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    std::unique_ptr<ignis::Tokenizer> t;
    std::string_view text = "fuzz";
    if (mode == 0) {
      const size_t nul = rest.find('\0');
      const std::string_view json = rest.substr(0, nul);
      const std::string_view cfg = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
      t = ignis::Tokenizer::from_hf_json_text(json, cfg, "fuzz.json");
    } else if (mode == 1) {
      if (rest.size() < 2) return 0;
      const int vocab = static_cast<uint8_t>(rest[0]) | (static_cast<uint8_t>(rest[1]) << 8);
      t = ignis::Tokenizer::from_llama2c_bytes(reinterpret_cast<const uint8_t*>(rest.data() + 2), rest.size() - 2,
                                                vocab, "fuzz.bin");
    } else {
      const char* which = mode % 3 == 0 ? kByteLevel : mode % 3 == 1 ? kSpm : kWordPiece;
      t = ignis::Tokenizer::from_hf_json_text(which, "", "builtin");
      text = rest.substr(0, 4096);  // longer texts only slow the fuzzer down
    }
    uint32_t seed = 0;
    for (size_t i = 0; i < size && i < 8; ++i) seed = seed * 31 + data[i];
    exercise(*t, text, seed);
  } catch (const ignis::Error&) {
  }
  return 0;
}
