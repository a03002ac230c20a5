// Helpers shared by the GPU tests: skip without a GPU, the data folder, random host data rounded
// to a dtype, device upload/download, NaN poisoning, relative error, expected errors.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "cuda/common.h"
#include "cuda/device.h"

namespace ignis::gputest {

#define REQUIRE_GPU()                                                       \
  do {                                                                      \
    if (::ignis::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA GPU"; \
  } while (0)

// $IGNIS_DATA, else IGNIS_SOURCE_DIR/../shared/data (the dev machines), else IGNIS_SOURCE_DIR/shared/data.
inline std::string data_dir() {
  const char* e = std::getenv("IGNIS_DATA");
  if (e && *e) return e;
  const std::string beside = IGNIS_SOURCE_DIR "/../shared/data";
  if (std::filesystem::exists(beside + "/stories260K.bin")) return beside;
  return IGNIS_SOURCE_DIR "/shared/data";
}

// Runs f, expects an ignis::Error whose message contains `want` (and prints the message).
inline void expect_error(const std::function<void()>& f, const std::string& want) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << want << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << "message: " << e.what();
    std::printf("  error as expected: %s\n", e.what());
  }
}

inline size_t esize(DType t) { return t == DType::BF16 ? 2 : 4; }

// Rounds every value to what dtype t can hold (bf16: round to nearest even).
inline void round_to(DType t, std::vector<float>& v) {
  if (t == DType::BF16)
    for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
}

inline std::vector<float> random_vec(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A device copy of host floats stored as dtype t (F32 or BF16).
inline cuda::DeviceBuffer upload(DType t, const std::vector<float>& v) {
  cuda::DeviceBuffer b(std::max<size_t>(1, v.size()) * esize(t));
  if (t == DType::BF16) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_bf16(v[i]);
    CUDA_CHECK(cudaMemcpy(b.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  } else {
    CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  }
  return b;
}

inline std::vector<float> download(DType t, const void* p, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> v(n);
  if (t == DType::BF16) {
    std::vector<uint16_t> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(h[i]);
  } else {
    CUDA_CHECK(cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost));
  }
  return v;
}

// Fills with 0xFF bytes: NaN in f32 and bf16, so unwritten outputs are caught.
inline void poison(cuda::DeviceBuffer& b) { CUDA_CHECK(cudaMemset(b.get(), 0xFF, b.size())); }

// ||out - ref|| / ||ref||; infinity if any output is not finite (unwritten poison).
inline double rel_err(const std::vector<float>& out, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (double(out[i]) - ref[i]) * (double(out[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

inline double tol(DType t) { return t == DType::BF16 ? 1e-2 : 1e-5; }

}  // namespace ignis::gputest
