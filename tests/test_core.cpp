// Core: dtype table, half conversions, tensors, thread pool, GGUF reader on the shared vocab files.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/gguf.h"

using namespace ignis;

TEST(DType, BlockSizesMatchGGML) {
  // Sizes from ggml-common.h's static_asserts.
  EXPECT_EQ(dtype_info(DType::Q4_0).block_bytes, 18u);
  EXPECT_EQ(dtype_info(DType::Q4_1).block_bytes, 20u);
  EXPECT_EQ(dtype_info(DType::Q8_0).block_bytes, 34u);
  EXPECT_EQ(dtype_info(DType::Q4_K).block_bytes, 144u);
  EXPECT_EQ(dtype_info(DType::Q5_K).block_bytes, 176u);
  EXPECT_EQ(dtype_info(DType::Q6_K).block_bytes, 210u);
  EXPECT_EQ(dtype_info(DType::Q8_K).block_bytes, 292u);
  EXPECT_EQ(row_bytes(DType::Q4_1, 64), 40u);
  EXPECT_THROW(row_bytes(DType::Q4_1, 33), Error);
  EXPECT_EQ(*dtype_from_ggml(30), DType::BF16);
  EXPECT_FALSE(dtype_from_ggml(16).has_value());
}

TEST(Half, RoundTripsAndRounding) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-70000.f, 70000.f);
  for (int i = 0; i < 100000; ++i) {
    float x = d(rng) * (i % 3 == 0 ? 1e-6f : 1.f);
    // bf16: relative error <= 2^-8
    float b = bf16_to_f32(f32_to_bf16(x));
    EXPECT_LE(std::fabs(b - x), std::fabs(x) * (1.f / 256) + 1e-30f);
    float h = f16_to_f32(f32_to_f16(x));
    if (std::fabs(x) < 65504.f && std::fabs(x) > 6.1e-5f) EXPECT_LE(std::fabs(h - x), std::fabs(x) * (1.f / 2048));
  }
  // Every fp16 bit pattern round-trips exactly (except NaNs, which stay NaN).
  for (uint32_t u = 0; u < 65536; ++u) {
    float f = f16_to_f32(uint16_t(u));
    if (std::isnan(f)) { EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))); continue; }
    EXPECT_EQ(f32_to_f16(f), uint16_t(u)) << u;
  }
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
}

TEST(Tensor, ShapesAndSlices) {
  Tensor t = Tensor::empty({3, 4, 64}, DType::Q8_0);
  EXPECT_EQ(t.rows(), 12);
  EXPECT_EQ(t.row_bytes(), 68u);
  EXPECT_EQ(t.nbytes(), 12u * 68u);
  Tensor s = t.slice_rows(2, 5);
  EXPECT_EQ(s.row<uint8_t>(0), t.row<uint8_t>(2));
  EXPECT_THROW(t.slice_rows(5, 13), Error);
  EXPECT_THROW(t.reshape({5, 64}), Error);
}

TEST(ThreadPool, RunsEveryTaskOnceAndPropagatesErrors) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 200; ++rep) {
    std::vector<std::atomic<int>> hits(1000);
    pool.parallel_for(1000, 7, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
  EXPECT_THROW(pool.run(10, [](int64_t t, int) { if (t == 3) fail("boom"); }), Error);
  int n = 0;
  pool.run(1, [&](int64_t, int) { ++n; });
  EXPECT_EQ(n, 1);
}

TEST(GGUF, ReadsSharedVocabFiles) {
  auto f = GGUFFile::open(std::string(IGNIS_SHARED_DATA) + "/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture").value(), "gpt2");
  EXPECT_EQ(f->get_string("tokenizer.ggml.model").value(), "gpt2");
  ASSERT_NE(f->get_string_array("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens")->size(), 50257u);
  EXPECT_THROW(f->get_int("tokenizer.ggml.model"), Error);
  EXPECT_EQ(f->tensors().size(), 0u);
}

TEST(GGUF, RejectsBadHeaders) {
  std::vector<uint8_t> b = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
  EXPECT_THROW(GGUFFile::parse(b.data(), b.size(), "t"), Error);  // truncated counts
  uint64_t huge = ~0ull;
  b.insert(b.end(), (uint8_t*)&huge, (uint8_t*)&huge + 8);
  b.insert(b.end(), 8, 0);
  EXPECT_THROW(GGUFFile::parse(b.data(), b.size(), "t"), Error);  // absurd tensor count
  std::vector<uint8_t> v1 = {'G', 'G', 'U', 'F', 1, 0, 0, 0};
  EXPECT_THROW(GGUFFile::parse(v1.data(), v1.size(), "t"), Error);
  std::vector<uint8_t> notg = {'G', 'G', 'M', 'L'};
  EXPECT_THROW(GGUFFile::parse(notg.data(), notg.size(), "t"), Error);
}
