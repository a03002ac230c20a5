// UTF-8 and Unicode helpers for the tokenizers: lossy UTF-8 repair, code point iteration,
// character classes as Hugging Face `tokenizers` (Rust's char methods) define them, and
// normalisation forms. Categories, case mapping and NFC/NFD/NFKC/NFKD come from libutf8proc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ignis::tok {

// Length of the UTF-8 sequence that starts with lead byte c (1 for a stray byte).
inline size_t utf8_seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) return 2;
  if ((c & 0xf0) == 0xe0) return 3;
  if ((c & 0xf8) == 0xf0) return 4;
  return 1;
}

// Decodes the code point at s[i] of a VALID UTF-8 string and advances i past it.
uint32_t next_cp(std::string_view s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);

// Appends `in` to `out`, replacing each maximal invalid subsequence with U+FFFD (the rule of
// the Unicode standard, WHATWG and Rust's String::from_utf8_lossy). When `final` is false an
// incomplete but so far valid sequence at the end is not consumed: the return value is the
// number of bytes of `in` consumed (always in.size() when final).
size_t append_utf8_lossy(std::string& out, std::string_view in, bool final);
// `s` when it is valid UTF-8, otherwise its lossy repair.
std::string to_valid_utf8(std::string_view s);

// Character classes (all take a code point).
bool is_white_space(uint32_t cp);   // Unicode White_Space (Rust char::is_whitespace)
bool is_numeric(uint32_t cp);       // general category N* (Rust char::is_numeric)
bool is_alphanumeric(uint32_t cp);  // L* or N*
bool is_bert_punctuation(uint32_t cp);  // ASCII punctuation or category P*
bool is_bert_control(uint32_t cp);      // Cc Cf Cs Co except \t \n \r (HF keeps Cn)
bool is_cjk_ideograph(uint32_t cp);     // the CJK blocks BERT pads with spaces
bool is_mark_nonspacing(uint32_t cp);   // category Mn

enum class NormForm { kNFC, kNFD, kNFKC, kNFKD };
// `s` must be valid UTF-8.
std::string normalize(std::string_view s, NormForm form);
// Per-character full lowercase mapping, as Rust's char::to_lowercase.
std::string lowercase(std::string_view s);

// GPT-2's byte <-> printable code point table: bytes that are printable Latin-1 map to
// themselves, the other 68 to U+0100.. in byte order.
uint32_t byte_to_cp(uint8_t b);
// -1 when cp is not in the table.
int cp_to_byte(uint32_t cp);

}  // namespace ignis::tok
