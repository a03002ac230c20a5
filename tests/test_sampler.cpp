// Sampler: greedy, determinism by seed, the distribution it draws from, and each filter.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "runtime/sampler.h"

using namespace ignis;

namespace {
SamplerParams plain(float temp) {
  SamplerParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 7;
  return p;
}
}  // namespace

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
  std::vector<float> l = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
  Sampler s(plain(0.0f));
  EXPECT_EQ(s.sample(l.data(), 5, {}), 1);
  EXPECT_EQ(argmax(l.data(), 5), 1);
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[size_t(i)] = std::sin(float(i));
  Sampler a(plain(1.0f)), b(plain(1.0f));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(l.data(), 100, {}), b.sample(l.data(), 100, {}));
}

TEST(Sampler, FrequenciesFollowSoftmaxWithTemperature) {
  std::vector<float> l = {1.0f, 2.0f, 0.0f, 1.5f};
  const float temp = 0.7f;
  Sampler s(plain(temp));
  std::map<int, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) count[s.sample(l.data(), 4, {})]++;
  double z = 0;
  for (float v : l) z += std::exp(v / temp);
  for (int t = 0; t < 4; ++t) {
    const double p = std::exp(l[size_t(t)] / temp) / z;
    EXPECT_NEAR(count[t] / double(n), p, 0.01) << "token " << t;
  }
}

TEST(Sampler, TopKTopPMinPRestrictTheCandidates) {
  std::vector<float> l = {5.0f, 4.9f, 4.8f, 0.0f, -1.0f};
  auto p = plain(1.0f);
  p.top_k = 2;
  Sampler k(p);
  for (int i = 0; i < 500; ++i) EXPECT_LT(k.sample(l.data(), 5, {}), 2);
  p = plain(1.0f);
  p.top_p = 0.5f;  // the first token has ~0.35 of the mass, the first two ~0.67
  Sampler tp(p);
  for (int i = 0; i < 500; ++i) EXPECT_LT(tp.sample(l.data(), 5, {}), 2);
  p = plain(1.0f);
  p.min_p = 0.5f;  // tokens 3 and 4 are far below half of token 0
  Sampler mp(p);
  for (int i = 0; i < 500; ++i) EXPECT_LT(mp.sample(l.data(), 5, {}), 3);
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  std::vector<float> l = {2.0f, 1.9f, -1.0f};
  auto p = plain(0.0f);
  p.repeat_penalty = 1.5f;
  Sampler s(p);
  EXPECT_EQ(s.sample(l.data(), 3, {0}), 1);  // 2.0 / 1.5 < 1.9
  EXPECT_EQ(s.sample(l.data(), 3, {2}), 0);
}

TEST(Sampler, RejectsBadParameters) {
  auto p = plain(1.0f);
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = plain(-1.0f);
  EXPECT_THROW(Sampler{p}, Error);
}
