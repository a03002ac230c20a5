#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"

namespace ignis {

int32_t argmax(const float* logits, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

void Sampler::validate(const SamplerParams& p) {
  if (!(p.temperature >= 0 && p.temperature <= 100)) fail("--temp must be between 0 and 100, got ", p.temperature);
  if (!(p.top_p > 0 && p.top_p <= 1)) fail("--top-p must be in (0, 1], got ", p.top_p);
  if (!(p.min_p >= 0 && p.min_p < 1)) fail("--min-p must be in [0, 1), got ", p.min_p);
  if (!(p.repeat_penalty > 0 && p.repeat_penalty <= 10)) fail("--repeat-penalty must be in (0, 10], got ", p.repeat_penalty);
  if (p.repeat_last_n < 0) fail("--repeat-last-n must not be negative, got ", p.repeat_last_n);
}

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) { validate(p); }

int32_t Sampler::sample(const float* logits, int vocab, const std::vector<int32_t>& history) {
  cand_.resize(size_t(vocab));
  for (int i = 0; i < vocab; ++i) cand_[size_t(i)] = {logits[i], i};

  // Repetition penalty (CTRL paper / HF): divide positive logits, multiply negative ones.
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
    std::unordered_set<int32_t> seen;
    const size_t start = history.size() > size_t(p_.repeat_last_n) ? history.size() - size_t(p_.repeat_last_n) : 0;
    for (size_t i = start; i < history.size(); ++i) seen.insert(history[i]);
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      float& l = cand_[size_t(t)].first;
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };

  if (p_.temperature <= 0) return std::min_element(cand_.begin(), cand_.end(), by_logit)->second;

  size_t n = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = size_t(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // softmax with temperature over the survivors (sorted, so cand_[0] is the max)
  const float mx = cand_[0].first;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    cand_[i].first = std::exp((cand_[i].first - mx) / p_.temperature);
    sum += cand_[i].first;
  }
  for (size_t i = 0; i < n; ++i) cand_[i].first = float(cand_[i].first / sum);
  // top-p: the smallest prefix whose mass reaches top_p
  if (p_.top_p < 1) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += cand_[i].first;
      if (cum >= p_.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  // min-p: drop tokens below min_p times the most likely one
  if (p_.min_p > 0) {
    const float floor = cand_[0].first * p_.min_p;
    size_t keep = 1;
    while (keep < n && cand_[keep].first >= floor) ++keep;
    n = keep;
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i) total += cand_[i].first;
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), acc = 0;
  for (size_t i = 0; i < n; ++i) {
    acc += cand_[i].first;
    if (r < acc) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace ignis
