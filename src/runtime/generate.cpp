#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "models/llama.h"
#include "tokenizer/tokenizer.h"

namespace ignis {

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string:
// that much text must be held back until we know whether a stop string follows.
size_t held_back(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops)
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len)
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
  return hold;
}
}  // namespace

GenerateResult Session::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                 const std::function<bool(std::string_view)>& on_text) {
  IGNIS_CHECK(!prompt.empty(), "the prompt is empty (nothing to continue from)");
  IGNIS_CHECK(opt.max_new_tokens >= 0, "the number of tokens to generate must not be negative");
  const int ctx = model_.context_size();
  if (int(prompt.size()) >= ctx)
    fail("the prompt has ", prompt.size(), " tokens but the context holds only ", ctx,
         " (use a shorter prompt or a larger --ctx)");
  for (const auto& s : opt.stop_strings) IGNIS_CHECK(!s.empty(), "stop strings must not be empty");

  GenerateResult res;
  // Reuse the cached prefix; always recompute at least the last prompt token for its logits.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  cached_.resize(common);

  const double t0 = now();
  const float* logits = model_.forward(prompt.data() + common, int(prompt.size() - common), int(common));
  cached_.assign(prompt.begin(), prompt.end());
  res.prompt_tokens = int(prompt.size() - common);
  res.prompt_seconds = now() - t0;

  Sampler sampler(opt.sampler);
  StreamDecoder dec(tok_);
  std::string pending;  // decoded text not yet emitted (may be the start of a stop string)
  std::vector<int32_t> history = prompt;
  const auto& stops = tok_.stop_ids();
  bool cancelled = false;
  const double t1 = now();

  auto emit = [&](std::string_view s) {
    if (s.empty() || cancelled) return;
    res.text.append(s);
    if (on_text && !on_text(s)) cancelled = true;
  };

  for (int step = 0;; ++step) {
    if (step >= opt.max_new_tokens) { res.stop_reason = "max tokens"; break; }
    const int32_t tok = sampler.sample(logits, model_.config().vocab_size, history);
    if (!opt.ignore_eos && std::find(stops.begin(), stops.end(), tok) != stops.end()) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(tok);
    history.push_back(tok);
    pending += dec.push(tok);
    if (!opt.stop_strings.empty()) {
      size_t hit = std::string::npos;
      for (const auto& s : opt.stop_strings) hit = std::min(hit, pending.find(s));
      if (hit != std::string::npos) {
        emit(std::string_view(pending).substr(0, hit));
        pending.clear();
        res.stop_reason = "stop string";
        break;
      }
      const size_t hold = held_back(pending, opt.stop_strings);
      emit(std::string_view(pending).substr(0, pending.size() - hold));
      pending.erase(0, pending.size() - hold);
    } else {
      emit(pending);
      pending.clear();
    }
    if (cancelled) { res.stop_reason = "cancelled"; break; }
    if (int(cached_.size()) + 1 > ctx) { res.stop_reason = "context full"; break; }
    if (step + 1 >= opt.max_new_tokens) { res.stop_reason = "max tokens"; break; }
    logits = model_.forward(&tok, 1, int(cached_.size()));
    cached_.push_back(tok);
    ++res.decoded_tokens;
  }
  if (res.stop_reason != "stop string" && res.stop_reason != "cancelled") {
    pending += dec.flush();
    emit(pending);
  }
  res.decode_seconds = now() - t1;
  return res;
}

}  // namespace ignis
