// Test data shared by the CPU and GPU GPTQ tests (tests/test_gptq.cpp, tests/gpu/test_cuda_gptq.cpp).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace ignis::testdata {

// X [T, K] with correlated columns: X = Z A + noise, Z [T, K/4] Gaussian, A random; every 17th
// column scaled up (outlier features, as in real activations); the columns in `dead` are zero
// (inputs that never fire).
inline std::vector<float> correlated_inputs(int64_t T, int64_t K, uint32_t seed, const std::vector<int64_t>& dead = {}) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  const int64_t r = K / 4;
  std::vector<float> A(size_t(r * K)), X(size_t(T * K)), z(static_cast<size_t>(r));
  for (auto& a : A) a = d(rng);
  for (int64_t t = 0; t < T; ++t) {
    for (auto& v : z) v = d(rng);
    for (int64_t k = 0; k < K; ++k) {
      float s = 0.1f * d(rng);
      for (int64_t i = 0; i < r; ++i) s += z[size_t(i)] * A[size_t(i * K + k)];
      X[size_t(t * K + k)] = s * (k % 17 == 0 ? 4.f : 1.f);
    }
  }
  for (int64_t k : dead)
    for (int64_t t = 0; t < T; ++t) X[size_t(t * K + k)] = 0.f;
  return X;
}

}  // namespace ignis::testdata
