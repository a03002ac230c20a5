// Sliding-window perplexity, as in Hugging Face's "Perplexity of fixed-length models" guide:
// windows of `ctx` tokens starting every `stride` tokens; each window scores only the tokens not
// scored by the previous window (the first window scores all but its first token), each from the
// logits of the token before it, with the window's earlier tokens as context.
//   ppl = exp(sum of -log p(token) / number of tokens scored)
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "models/llama.h"

namespace ignis::quant {

struct PerplexityResult {
  double ppl = 0, nll = 0;  // nll: mean negative log-likelihood (nats)
  int64_t scored = 0;       // tokens scored
  int64_t processed = 0;    // tokens run through the model (windows overlap)
  double seconds = 0;       // model time
};

PerplexityResult perplexity(LlamaModel& model, const std::vector<int32_t>& ids, int ctx, int stride,
                            const std::function<void(double)>& progress = nullptr);

}  // namespace ignis::quant
