// Token sampling from logits, in the order llama.cpp and HF apply the knobs:
// repetition penalty -> top-k -> temperature -> softmax -> top-p -> min-p -> draw.
// temperature <= 0 means greedy (argmax, ties to the lowest id).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace ignis {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off; > 1 discourages tokens seen in the last repeat_last_n
  int repeat_last_n = 64;
  uint64_t seed = 0;         // same seed, same model, same prompt: same text
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);
  // Picks a token from logits[0..vocab); `history` is the tokens so far (for the penalty).
  int32_t sample(const float* logits, int vocab, const std::vector<int32_t>& history);
  const SamplerParams& params() const { return p_; }
  // Throws ignis::Error naming the first parameter out of its range.
  static void validate(const SamplerParams& p);

 private:
  SamplerParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

int32_t argmax(const float* logits, int n);

}  // namespace ignis
