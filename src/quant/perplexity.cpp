#include "quant/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"

namespace ignis::quant {

PerplexityResult perplexity(LlamaModel& model, const std::vector<int32_t>& ids, int ctx, int stride,
                            const std::function<void(double)>& progress) {
  IGNIS_CHECK(ctx >= 2, "perplexity: --ctx must be at least 2, got ", ctx);
  IGNIS_CHECK(stride >= 1 && stride <= ctx, "perplexity: --stride must be in [1, ctx], got ", stride);
  IGNIS_CHECK(ctx <= model.context_size(), "perplexity: --ctx ", ctx, " exceeds the model's context ",
              model.context_size());
  IGNIS_CHECK(ids.size() >= 2, "perplexity: the text has ", ids.size(), " tokens; at least 2 are needed");
  const int64_t n = int64_t(ids.size());
  const int V = model.config().vocab_size;
  PerplexityResult r;
  double nll = 0;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += stride) {
    const int64_t end = std::min(begin + ctx, n);
    const int len = int(end - begin);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> logits = model.forward_all(ids.data() + begin, len, 0);
    r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.processed += len;
    for (int64_t g = std::max(prev_end, begin + 1); g < end; ++g) {
      const float* l = logits.data() + (g - begin - 1) * int64_t(V);
      float m = l[0];
      for (int j = 1; j < V; ++j) m = std::max(m, l[j]);
      double s = 0;
      for (int j = 0; j < V; ++j) s += std::exp(double(l[j]) - m);
      nll += std::log(s) + m - l[ids[size_t(g)]];
      ++r.scored;
    }
    prev_end = end;
    if (progress) progress(double(end) / double(n));
    if (end == n) break;
  }
  r.nll = nll / double(r.scored);
  r.ppl = std::exp(r.nll);
  return r;
}

}  // namespace ignis::quant
