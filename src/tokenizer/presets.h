// Pre-tokenizer presets shared by the loaders: the regular expressions of the model families, and
// the tokens that end a turn.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pipeline.h"

namespace ignis::tok {

// GPT-2's ByteLevel pre-tokenizer pattern (also used by HF's ByteLevel with use_regex=true).
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama-3 (tiktoken cl100k-style): digits in groups of up to three.
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: as Llama-3 but every digit alone.
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

PreTokenizer byte_level_pre(bool add_prefix_space, bool use_regex, const std::string& what);
PreTokenizer regex_split_pre(std::string_view pattern, SplitBehavior b, bool invert, const std::string& what);

// Sets up `t` (normalizers, pre-tokenizers, model flags) for GGUF's tokenizer.ggml.pre value of a
// byte-level BPE vocabulary. Throws for an unknown value, listing the known ones.
void apply_bpe_preset(PipelineTokenizer& t, const std::string& pre);

// Ids of the end-of-turn tokens present in the vocabulary (<|im_end|>, <|eot_id|>, ...).
std::vector<int32_t> find_stop_tokens(const PipelineTokenizer& t);

}  // namespace ignis::tok
