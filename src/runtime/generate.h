// The generation loop: prompt processing in one batched pass, then one token at a time,
// streaming text as it becomes complete UTF-8; stops on EOS / end-of-turn tokens, stop
// strings, the token budget or a full context.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"

namespace ignis {

class LlamaModel;
class Tokenizer;

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplerParams sampler;
  bool ignore_eos = false;
  std::vector<std::string> stop_strings;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens (not the prompt)
  std::string text;             // generated text, up to (excluding) a stop string
  std::string stop_reason;      // "eos", "stop string", "max tokens", "context full", "cancelled"
  int prompt_tokens = 0;        // tokens actually processed for the prompt (after prefix reuse)
  double prompt_seconds = 0, decode_seconds = 0;
  int decoded_tokens = 0;       // forward passes after the prompt
};

// A conversation with the model: keeps the tokens in the KV cache so that a follow-up
// prompt that extends them (multi-turn chat) only processes the new tokens.
class Session {
 public:
  Session(LlamaModel& model, const Tokenizer& tok) : model_(model), tok_(tok) {}

  // Continues from `prompt` (the full token sequence so far, as the caller rendered it).
  // on_text receives text pieces as they become complete; return false to stop.
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                          const std::function<bool(std::string_view)>& on_text);
  // Tokens currently held in the KV cache.
  const std::vector<int32_t>& cached() const { return cached_; }
  void reset() { cached_.clear(); }

 private:
  LlamaModel& model_;
  const Tokenizer& tok_;
  std::vector<int32_t> cached_;
};

}  // namespace ignis
