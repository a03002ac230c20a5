// GPU tests of the CUDA encoder (BERT family): every kernel against its CPU reference
// (src/cuda/encoder_ref.h) on fresh random data with outputs poisoned (NaN) first, on ragged
// batches (lengths 1, 7, 64, 129, 300, and many short sequences so the attention blocks loop over
// several tiles); then the whole model on a small random BERT / RoBERTa against the CPU reference
// built from those pieces and against make_cpu_encoder, in fp32 (1e-4 relative), fp16 (1e-2) and
// bf16 (2.5e-2: 8-bit mantissa activations through every layer); graphs against eager passes, a
// bucket replayed for a different batch mix, batches split over max_tokens, the heads, bad input.
// Tolerance of the kernels: ||out - ref|| / ||ref|| <= 1e-2 (fp16 / bf16), 1e-5 (fp32).
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "cuda/bert_cuda.h"
#include "cuda/common.h"
#include "cuda/encoder_gemm.h"
#include "cuda/encoder_kernels.h"
#include "cuda/encoder_ref.h"
#include "gpu_test_util.h"
#include "models/bert.h"

using namespace ignis;
using namespace ignis::cuda;
using ignis::gputest::random_vec;
using ignis::gputest::rel_err;

namespace {

const char* dname(DType t) { return t == DType::F32 ? "f32" : t == DType::F16 ? "f16" : "bf16"; }
size_t esz(DType t) { return t == DType::F32 ? 4 : 2; }
double ktol(DType t) { return t == DType::F32 ? 1e-5 : 1e-2; }

void round_dt(DType t, std::vector<float>& v) {
  for (auto& x : v) {
    if (t == DType::F16) x = f16_to_f32(f32_to_f16(x));
    if (t == DType::BF16) x = bf16_to_f32(f32_to_bf16(x));
  }
}

// Device copy of floats stored as t (F32, F16, BF16), `extra` more elements of NaN poison after them.
DeviceBuffer up(DType t, const std::vector<float>& v, size_t extra = 0) {
  DeviceBuffer b(std::max<size_t>(1, v.size() + extra) * esz(t));
  CUDA_CHECK(cudaMemset(b.get(), 0xFF, b.size()));
  if (t == DType::F32) {
    CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  } else {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = t == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
    CUDA_CHECK(cudaMemcpy(b.get(), h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  }
  return b;
}

std::vector<float> down(DType t, const void* p, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> v(n);
  if (t == DType::F32) {
    CUDA_CHECK(cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost));
  } else {
    std::vector<uint16_t> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i) v[i] = t == DType::F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
  }
  return v;
}

DeviceBuffer up_f32(const std::vector<float>& v) { return up(DType::F32, v); }

DeviceBuffer up_int(const std::vector<int>& v) {
  DeviceBuffer b(std::max<size_t>(1, v.size()) * 4);
  CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return b;
}

// Poisons with NaN (0xFF bytes).
DeviceBuffer poisoned(size_t bytes) {
  DeviceBuffer b(std::max<size_t>(bytes, 4));
  CUDA_CHECK(cudaMemset(b.get(), 0xFF, b.size()));
  return b;
}

// Every value is NaN (still poisoned: the kernel did not write there).
bool all_nan(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

std::vector<int> offsets_of(const std::vector<int>& lens) {
  std::vector<int> o{0};
  for (int l : lens) o.push_back(o.back() + l);
  return o;
}

// The device batch description (counts, offsets, tile list longest first), as CudaEncoder stages it.
struct DevBatch {
  DeviceBuffer counts, offsets, tiles;
  RaggedDev view() const { return RaggedDev{counts.as<int>(), offsets.as<int>(), tiles.as<int>()}; }
};
DevBatch make_dev_batch(const std::vector<int>& lens) {
  const std::vector<int> off = offsets_of(lens);
  std::vector<int> order(lens.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return lens[size_t(a)] > lens[size_t(b)]; });
  std::vector<int> tiles;
  for (int b : order)
    for (int q0 = 0; q0 < lens[size_t(b)]; q0 += kEncoderAttnTile) tiles.push_back(b), tiles.push_back(q0);
  DevBatch d;
  d.counts = up_int({off.back(), int(lens.size()), int(tiles.size() / 2)});
  d.offsets = up_int(off);
  d.tiles = up_int(tiles);
  return d;
}

}  // namespace

// ---- kernels ------------------------------------------------------------------------------------

TEST(CudaEncoderKernels, AttentionRagged) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  struct Case {
    std::vector<int> lens;
    int nh;
  };
  std::vector<int> many(150);
  for (auto& l : many) l = 1 + int(rng() % 40);  // 150+ tiles: more than the grid, blocks loop
  const std::vector<Case> cases = {{{1, 7, 64, 129, 300}, 3}, {{512}, 2}, {many, 16}, {{65, 1, 63}, 1}};
  for (const Case& c : cases) {
    const std::vector<int> off = offsets_of(c.lens);
    const int n = off.back(), B = int(c.lens.size());
    const int rows = n + 37;  // a bucket larger than n: rows past n must be left alone
    const DevBatch db = make_dev_batch(c.lens);
    for (int hd : {32, 64, 128}) {
      const int H = c.nh * hd;
      std::vector<float> qkv = random_vec(size_t(n) * 3 * H, rng, -1.f, 1.f);
      for (size_t i = 0; i < qkv.size(); ++i)
        if (i % size_t(3 * H) < size_t(H)) qkv[i] *= 3.f;  // sharper softmax than uniform noise
      for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
        std::vector<float> q = qkv;
        round_dt(dt, q);
        std::vector<float> want(size_t(n) * H);
        encref::attention(q.data(), off.data(), B, c.nh, hd, 1.f / std::sqrt(float(hd)), want.data());
        DeviceBuffer dq = up(dt, q);
        // the flash kernel with each block shape (warps 0 = chosen by the bucket size), then the generic one
        struct Run {
          EncAttnImpl impl;
          int warps;
        };
        const std::vector<Run> runs = {{EncAttnImpl::kFlash, 0}, {EncAttnImpl::kFlash, 2}, {EncAttnImpl::kFlash, 4},
                                       {EncAttnImpl::kGeneric, 0}};
        for (const auto& [impl, warps] : runs) {
          if (impl == EncAttnImpl::kFlash && !encoder_flash_supported(dt, hd)) continue;
          SCOPED_TRACE(std::string(dname(dt)) + (impl == EncAttnImpl::kFlash ? " flash" : " generic") +
                       " warps=" + std::to_string(warps) +
                       " hd=" + std::to_string(hd) + " nh=" + std::to_string(c.nh) + " B=" + std::to_string(B) +
                       " n=" + std::to_string(n));
          DeviceBuffer out = poisoned(size_t(rows) * H * esz(dt));
          EncAttnArgs a;
          a.dtype = dt, a.qkv = dq.get(), a.out = out.get(), a.batch = db.view(), a.rows = rows;
          a.nh = c.nh, a.hd = hd, a.scale = 1.f / std::sqrt(float(hd)), a.impl = impl;
          a.warps = warps;
          encoder_attention(a, nullptr);
          const std::vector<float> got = down(dt, out.get(), size_t(rows) * H);
          EXPECT_LE(rel_err(std::vector<float>(got.begin(), got.begin() + size_t(n) * H), want), ktol(dt));
          EXPECT_TRUE(all_nan(std::vector<float>(got.begin() + size_t(n) * H, got.end())));
          // a second launch over the same buffers gives the same result (no state left behind)
          encoder_attention(a, nullptr);
          const std::vector<float> again = down(dt, out.get(), size_t(n) * H);
          EXPECT_EQ(std::memcmp(again.data(), got.data(), again.size() * 4), 0);
        }
      }
    }
  }
}

TEST(CudaEncoderKernels, EmbedLayerNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(12);
  // 64 rows: a block per row; 12 per SM + 13: a warp per row (encoder_norm.cu, warp_mode), H <= 1024
  const int big = 12 * sm_count() + 13;
  for (auto [H, rows, n] : {std::tuple{64, 64, 37}, {384, 64, 37}, {768, 64, 37}, {1028, 64, 37}, {384, big, big - 5},
                            {768, big, big - 5}}) {
    const int V = 53, P = 40, TV = 2;
    std::vector<float> word = random_vec(size_t(V) * H, rng), pos = random_vec(size_t(P) * H, rng),
                       typ = random_vec(size_t(TV) * H, rng);
    std::vector<float> g = random_vec(size_t(H), rng, 0.5f, 1.5f), be = random_vec(size_t(H), rng, -0.5f, 0.5f);
    std::vector<int> ids(rows), types(rows), ps(rows);
    for (int r = 0; r < rows; ++r) ids[size_t(r)] = int(rng() % V), types[size_t(r)] = int(rng() % TV), ps[size_t(r)] = int(rng() % P);
    for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
      SCOPED_TRACE(std::string(dname(dt)) + " H=" + std::to_string(H) + " rows=" + std::to_string(rows));
      std::vector<float> w = word, p = pos, t = typ;
      round_dt(dt, w), round_dt(dt, p), round_dt(dt, t);
      DeviceBuffer dw = up(dt, w), dp = up(dt, p), dt_ = up(dt, t), dg = up_f32(g), db = up_f32(be);
      DeviceBuffer di = up_int(ids), dty = up_int(types), dps = up_int(ps), dn = up_int({n});
      DeviceBuffer out = poisoned(size_t(rows) * H * esz(dt));
      EmbedLnArgs a;
      a.dtype = dt, a.word = dw.get(), a.pos_tab = dp.get(), a.type_tab = dt_.get();
      a.gamma = dg.as<float>(), a.beta = db.as<float>(), a.ids = di.as<int>(), a.types = dty.as<int>();
      a.pos = dps.as<int>(), a.n_dev = dn.as<int>(), a.rows = rows, a.hidden = H, a.vocab = V;
      a.max_positions = P, a.type_vocab = TV, a.eps = 1e-12f, a.out = out.get();
      encoder_embed_layernorm(a, nullptr);
      std::vector<float> want(size_t(n) * H);
      encref::embed_layernorm(w.data(), p.data(), t.data(), g.data(), be.data(), ids.data(), types.data(), ps.data(),
                              n, H, 1e-12f, want.data());
      const std::vector<float> got = down(dt, out.get(), size_t(rows) * H);
      EXPECT_LE(rel_err(std::vector<float>(got.begin(), got.begin() + size_t(n) * H), want), ktol(dt));
      EXPECT_TRUE(all_nan(std::vector<float>(got.begin() + size_t(n) * H, got.end())));
    }
  }
}

TEST(CudaEncoderKernels, AddLayerNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(13);
  // 70 rows: a block per row (EAGER up to H 2048, lazy above, 16384 the largest). From 512 rows the
  // streaming form (encoder_norm.cu) where H is a multiple of the values in 16 bytes (8 for f16 / bf16, 4
  // for f32), else at 12 per SM + 13 the plain warp per row (warp_mode, H <= 1024; here H = 36 at 16 bits);
  // 20,000 rows: more rows than resident warps, so each streaming warp loops over several (both buffers).
  const int big = 12 * sm_count() + 13;
  for (auto [H, rows, n] : {std::tuple{32, 70, 61}, {384, 70, 61}, {768, 70, 61}, {4096, 70, 61}, {16384, 3, 2},
                            {32, big, big - 9}, {36, big, big - 9}, {1024, big, big - 9},
                            {768, big, big - 9}, {768, 20000, 19001}}) {
    std::vector<float> a0 = random_vec(size_t(rows) * H, rng, -2.f, 2.f), x0 = random_vec(size_t(rows) * H, rng, 1.f, 3.f);
    std::vector<float> g = random_vec(size_t(H), rng, 0.5f, 1.5f), be = random_vec(size_t(H), rng, -0.5f, 0.5f);
    for (DType dt : {DType::F16, DType::BF16, DType::F32})
      for (bool with_a : {true, false}) {
        SCOPED_TRACE(std::string(dname(dt)) + " H=" + std::to_string(H) + " rows=" + std::to_string(rows) +
                     (with_a ? " a+x" : " x"));
        std::vector<float> a = a0, x = x0;
        round_dt(dt, a), round_dt(dt, x);
        DeviceBuffer da = up(dt, a), dx = up(dt, x), dg = up_f32(g), db = up_f32(be), dn = up_int({n});
        encoder_add_layernorm(dt, with_a ? da.get() : nullptr, dx.get(), dg.as<float>(), db.as<float>(), rows, H,
                              1e-5f, dn.as<int>(), nullptr);
        std::vector<float> want = x;
        encref::add_layernorm(with_a ? a.data() : nullptr, want.data(), g.data(), be.data(), n, H, 1e-5f);
        const std::vector<float> got = down(dt, dx.get(), size_t(rows) * H);
        EXPECT_LE(rel_err(got, want), ktol(dt));  // rows >= n: untouched in both
      }
  }
}

TEST(CudaEncoderKernels, BiasAct) {
  REQUIRE_GPU();
  std::mt19937 rng(14);
  const int rows = 50, cols = 300, n = 45;
  const std::vector<float> y0 = random_vec(size_t(rows) * cols, rng, -4.f, 4.f), b0 = random_vec(size_t(cols), rng);
  for (DType dt : {DType::F16, DType::BF16, DType::F32})
    for (EncAct act : {EncAct::kNone, EncAct::kGeluErf, EncAct::kGeluTanh, EncAct::kTanh}) {
      SCOPED_TRACE(std::string(dname(dt)) + " act " + std::to_string(int(act)));
      std::vector<float> y = y0, b = b0;
      round_dt(dt, y), round_dt(dt, b);
      DeviceBuffer dy = up(dt, y), dbias = up(dt, b), dn = up_int({n});
      encoder_bias_act(dt, dy.get(), dbias.get(), rows, cols, act, dn.as<int>(), nullptr);
      std::vector<float> want = y;
      const encref::Act ra = act == EncAct::kGeluErf    ? encref::Act::kGeluErf
                             : act == EncAct::kGeluTanh ? encref::Act::kGeluTanh
                             : act == EncAct::kTanh     ? encref::Act::kTanh
                                                        : encref::Act::kNone;
      for (int r = 0; r < n; ++r)
        for (int c = 0; c < cols; ++c) want[size_t(r) * cols + c] = encref::act(ra, y[size_t(r) * cols + c] + b[size_t(c)]);
      EXPECT_LE(rel_err(down(dt, dy.get(), want.size()), want), ktol(dt));
    }
}

TEST(CudaEncoderKernels, GemmEpilogues) {
  REQUIRE_GPU();
  std::mt19937 rng(15);
  EncoderGemm gemm;
  struct Case {
    int M, N, K;
  };
  for (const Case c : {Case{100, 96, 64}, Case{64, 3 * 384, 384}, Case{333, 1536, 384}, Case{7, 40, 1536}})
    for (DType dt : {DType::F16, DType::BF16, DType::F32})
      for (GemmEpilogue epi : {GemmEpilogue::kNone, GemmEpilogue::kBias, GemmEpilogue::kBiasGelu}) {
        SCOPED_TRACE(std::string(dname(dt)) + " " + std::to_string(c.M) + "x" + std::to_string(c.N) + "x" +
                     std::to_string(c.K) + " epilogue " + std::to_string(int(epi)));
        std::vector<float> x = random_vec(size_t(c.M) * c.K, rng), W = random_vec(size_t(c.N) * c.K, rng, -0.2f, 0.2f),
                           b = random_vec(size_t(c.N), rng);
        round_dt(dt, x), round_dt(dt, W), round_dt(dt, b);
        DeviceBuffer dx = up(dt, x), dW = up(dt, W), db = up(dt, b), dy = poisoned(size_t(c.M) * c.N * esz(dt));
        gemm.matmul(dt, dW.get(), dx.get(), dy.get(), c.M, c.N, c.K, epi == GemmEpilogue::kNone ? nullptr : db.get(),
                    epi, nullptr);
        std::vector<float> want(size_t(c.M) * c.N);
        encref::linear(x.data(), W.data(), epi == GemmEpilogue::kNone ? nullptr : b.data(), c.M, c.N, c.K,
                       epi == GemmEpilogue::kBiasGelu ? encref::Act::kGeluTanh : encref::Act::kNone, want.data());
        EXPECT_LE(rel_err(down(dt, dy.get(), want.size()), want), dt == DType::F32 ? 1e-5 : 1e-2);
        if (epi != GemmEpilogue::kNone && !gemm.fused(dt, c.M, c.N, c.K, epi))
          std::printf("note: %s %dx%dx%d epilogue %d runs as a separate kernel (no cuBLASLt algorithm)\n", dname(dt),
                      c.M, c.N, c.K, int(epi));
      }
}

// The split-K form of the products before an add + LayerNorm (bert_cuda.cpp, split_k): the fp32
// slices of EncoderGemm::matmul_split against the CPU products of each k slice, and
// encoder_add_parts_layernorm (slices + bias + residual, then LayerNorm) against encref::linear +
// encref::add_layernorm; rows >= n untouched.
TEST(CudaEncoderKernels, SplitKAddLayerNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(17);
  EncoderGemm gemm;
  struct Case {
    int M, N, K, S, n;
  };
  for (const Case c : {Case{128, 768, 3072, 4, 128}, Case{70, 96, 384, 3, 61}, Case{7, 40, 64, 2, 5},
                       Case{64, 128, 256, 4, 33}})
    for (DType dt : {DType::F16, DType::BF16}) {
      SCOPED_TRACE(std::string(dname(dt)) + " " + std::to_string(c.M) + "x" + std::to_string(c.N) + "x" +
                   std::to_string(c.K) + " in " + std::to_string(c.S));
      std::vector<float> x = random_vec(size_t(c.M) * c.K, rng), W = random_vec(size_t(c.N) * c.K, rng, -0.1f, 0.1f),
                         b = random_vec(size_t(c.N), rng), res = random_vec(size_t(c.M) * c.N, rng, -1.f, 1.f),
                         g = random_vec(size_t(c.N), rng, 0.5f, 1.5f), be = random_vec(size_t(c.N), rng, -0.5f, 0.5f);
      round_dt(dt, x), round_dt(dt, W), round_dt(dt, b), round_dt(dt, res);
      DeviceBuffer dx = up(dt, x), dW = up(dt, W), db = up(dt, b), dres = up(dt, res), dg = up_f32(g), dbe = up_f32(be),
                   dn = up_int({c.n}), dparts = poisoned(size_t(c.S) * c.M * c.N * 4);
      EXPECT_EQ(gemm.matmul_split(dt, dW.get(), dx.get(), dparts.as<float>(), c.M, c.N, c.K, c.S, nullptr), 1);
      // each slice against the CPU product over its k range
      const int ks = c.K / c.S;
      const std::vector<float> parts = down(DType::F32, dparts.get(), size_t(c.S) * c.M * c.N);
      for (int s = 0; s < c.S; ++s) {
        std::vector<float> xs(size_t(c.M) * ks), Ws(size_t(c.N) * ks), want(size_t(c.M) * c.N);
        for (int r = 0; r < c.M; ++r)
          std::copy_n(x.begin() + ptrdiff_t(size_t(r) * c.K + size_t(s) * ks), ks, xs.begin() + ptrdiff_t(size_t(r) * ks));
        for (int j = 0; j < c.N; ++j)
          std::copy_n(W.begin() + ptrdiff_t(size_t(j) * c.K + size_t(s) * ks), ks, Ws.begin() + ptrdiff_t(size_t(j) * ks));
        encref::linear(xs.data(), Ws.data(), nullptr, c.M, c.N, ks, encref::Act::kNone, want.data());
        const auto first = parts.begin() + ptrdiff_t(size_t(s) * c.M * c.N);
        EXPECT_LE(rel_err(std::vector<float>(first, first + ptrdiff_t(want.size())), want), 1e-5) << "slice " << s;
      }
      encoder_add_parts_layernorm(dt, dparts.as<float>(), c.S, db.get(), dres.get(), dg.as<float>(), dbe.as<float>(),
                                  c.M, c.N, 1e-5f, dn.as<int>(), nullptr);
      std::vector<float> a(size_t(c.M) * c.N), want = res;
      encref::linear(x.data(), W.data(), b.data(), c.M, c.N, c.K, encref::Act::kNone, a.data());
      encref::add_layernorm(a.data(), want.data(), g.data(), be.data(), c.n, c.N, 1e-5f);
      EXPECT_LE(rel_err(down(dt, dres.get(), want.size()), want), ktol(dt));  // rows >= n: untouched in both
    }
}

TEST(CudaEncoderKernels, PoolAndHeadLinear) {
  REQUIRE_GPU();
  std::mt19937 rng(16);
  const std::vector<int> lens = {1, 7, 64, 129, 300};
  const std::vector<int> off = offsets_of(lens);
  const int B = int(lens.size()), n = off.back(), H = 96, N = 5;
  DeviceBuffer doff = up_int(off);
  for (DType dt : {DType::F16, DType::BF16, DType::F32}) {
    std::vector<float> h = random_vec(size_t(n) * H, rng, -2.f, 2.f);
    round_dt(dt, h);
    DeviceBuffer dh = up(dt, h);
    for (bool mean : {true, false})
      for (bool norm : {true, false}) {
        SCOPED_TRACE(std::string(dname(dt)) + (mean ? " mean" : " cls") + (norm ? " normalized" : ""));
        DeviceBuffer out = poisoned(size_t(B) * H * 4);
        encoder_pool(dt, dh.get(), doff.as<int>(), B, H, mean, norm, out.as<float>(), nullptr);
        std::vector<float> want(size_t(B) * H);
        encref::pool(h.data(), off.data(), B, H, mean, norm, want.data());
        EXPECT_LE(rel_err(down(DType::F32, out.get(), want.size()), want), ktol(dt));
      }
    // CLS rows -> tanh(W x + b) (pooler), then a float input -> W x + b (classifier)
    std::vector<float> W = random_vec(size_t(N) * H, rng, -0.3f, 0.3f), b = random_vec(size_t(N), rng);
    round_dt(dt, W), round_dt(dt, b);
    DeviceBuffer dW = up(dt, W), db = up(dt, b), out = poisoned(size_t(B) * N * 4);
    encoder_head_linear(dt, dt, dh.get(), doff.as<int>(), B, dW.get(), db.get(), N, H, EncAct::kTanh, out.as<float>(),
                        nullptr);
    std::vector<float> cls(size_t(B) * H), want(size_t(B) * N);
    for (int s = 0; s < B; ++s) std::copy_n(h.begin() + ptrdiff_t(off[size_t(s)]) * H, H, cls.begin() + ptrdiff_t(s) * H);
    encref::linear(cls.data(), W.data(), b.data(), B, N, H, encref::Act::kTanh, want.data());
    EXPECT_LE(rel_err(down(DType::F32, out.get(), want.size()), want), ktol(dt));
    std::vector<float> xf = random_vec(size_t(B) * H, rng);
    DeviceBuffer dxf = up_f32(xf), out2 = poisoned(size_t(B) * N * 4);
    encoder_head_linear(dt, DType::F32, dxf.get(), nullptr, B, dW.get(), db.get(), N, H, EncAct::kNone,
                        out2.as<float>(), nullptr);
    encref::linear(xf.data(), W.data(), b.data(), B, N, H, encref::Act::kNone, want.data());
    EXPECT_LE(rel_err(down(DType::F32, out2.get(), want.size()), want), dt == DType::F32 ? 1e-5 : 1e-2);
  }
}

// ---- the model ------------------------------------------------------------------------------------

namespace {

struct Fixture {
  EncoderSource src;
  encref::EncoderRefModel ref;
};

Tensor tensor_of(const std::vector<float>& v, std::initializer_list<int64_t> shape) {
  Tensor t = Tensor::empty(shape, DType::F32);
  std::copy(v.begin(), v.end(), t.ptr<float>());
  return t;
}

// A small random encoder: hidden 128, 2 heads of 64 (or 4 of 32), 2 layers, FFN 256, 320 positions.
Fixture make_fixture(EncoderFamily fam, EncoderHead head, int heads = 2, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  Fixture f;
  EncoderConfig& c = f.src.config;
  c.family = fam, c.head = head;
  c.vocab_size = 97, c.hidden = 128, c.layers = 2, c.heads = heads, c.intermediate = 256;
  c.max_positions = 320, c.type_vocab_size = fam == EncoderFamily::Roberta ? 1 : 2;
  c.pad_token_id = fam == EncoderFamily::Roberta ? 1 : 0;
  c.layer_norm_eps = fam == EncoderFamily::Roberta ? 1e-5f : 1e-12f;
  c.pooling = Pooling::Mean, c.normalize = true;
  f.src.path = "<random encoder fixture>";
  const int64_t H = c.hidden, I = c.intermediate;
  auto add = [&](const std::string& name, std::vector<float> v, std::initializer_list<int64_t> shape) {
    f.src.weights[name] = tensor_of(v, shape);
    return v;
  };
  auto mat = [&](const std::string& name, int64_t r, int64_t k) {
    return add(name, random_vec(size_t(r * k), rng, -0.12f, 0.12f), {r, k});
  };
  auto vec = [&](const std::string& name, int64_t k, float lo, float hi) { return add(name, random_vec(size_t(k), rng, lo, hi), {k}); };
  auto& R = f.ref;
  R.hidden = c.hidden, R.heads = heads, R.intermediate = c.intermediate, R.eps = c.layer_norm_eps;
  R.gelu = encref::Act::kGeluErf;
  R.word = add("embeddings.word_embeddings.weight", random_vec(size_t(c.vocab_size * H), rng), {c.vocab_size, H});
  R.pos_tab = add("embeddings.position_embeddings.weight", random_vec(size_t(c.max_positions * H), rng, -0.5f, 0.5f),
                  {c.max_positions, H});
  R.type_tab = add("embeddings.token_type_embeddings.weight", random_vec(size_t(c.type_vocab_size * H), rng, -0.5f, 0.5f),
                   {c.type_vocab_size, H});
  R.emb_g = vec("embeddings.LayerNorm.weight", H, 0.8f, 1.2f);
  R.emb_b = vec("embeddings.LayerNorm.bias", H, -0.1f, 0.1f);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    encref::EncoderRefLayer L;
    for (const char* m : {"query", "key", "value"}) {
      const auto w = mat(p + "attention.self." + m + ".weight", H, H);
      const auto b = vec(p + "attention.self." + m + ".bias", H, -0.1f, 0.1f);
      L.wqkv.insert(L.wqkv.end(), w.begin(), w.end());
      L.bqkv.insert(L.bqkv.end(), b.begin(), b.end());
    }
    L.wo = mat(p + "attention.output.dense.weight", H, H);
    L.bo = vec(p + "attention.output.dense.bias", H, -0.1f, 0.1f);
    L.ln1_g = vec(p + "attention.output.LayerNorm.weight", H, 0.8f, 1.2f);
    L.ln1_b = vec(p + "attention.output.LayerNorm.bias", H, -0.1f, 0.1f);
    L.w1 = mat(p + "intermediate.dense.weight", I, H);
    L.b1 = vec(p + "intermediate.dense.bias", I, -0.1f, 0.1f);
    L.w2 = mat(p + "output.dense.weight", H, I);
    L.b2 = vec(p + "output.dense.bias", H, -0.1f, 0.1f);
    L.ln2_g = vec(p + "output.LayerNorm.weight", H, 0.8f, 1.2f);
    L.ln2_b = vec(p + "output.LayerNorm.bias", H, -0.1f, 0.1f);
    R.layers.push_back(std::move(L));
  }
  const int labels = 3;
  if (head == EncoderHead::SequenceClassification) {
    const std::string dense = fam == EncoderFamily::Roberta ? "classifier.dense" : "pooler.dense";
    const std::string out = fam == EncoderFamily::Roberta ? "classifier.out_proj" : "classifier";
    mat(dense + ".weight", H, H);
    vec(dense + ".bias", H, -0.1f, 0.1f);
    mat(out + ".weight", labels, H);
    vec(out + ".bias", labels, -0.1f, 0.1f);
  } else if (head == EncoderHead::TokenClassification) {
    mat("classifier.weight", labels, H);
    vec("classifier.bias", labels, -0.1f, 0.1f);
  }
  return f;
}

EncoderBatch random_batch(const std::vector<int>& lens, int vocab, int type_vocab, std::mt19937& rng) {
  EncoderBatch b;
  for (int len : lens) {
    std::vector<int32_t> ids(static_cast<size_t>(len));
    for (auto& id : ids) id = int32_t(2 + rng() % uint32_t(vocab - 2));  // no pad token (id 0 / 1) inside
    b.add(ids);
  }
  for (auto& t : b.type_ids) t = int32_t(rng() % uint32_t(type_vocab));
  return b;
}

std::vector<float> to_vec(const Tensor& t) { return std::vector<float>(t.ptr<float>(), t.ptr<float>() + t.numel()); }

std::vector<float> ref_hidden(const Fixture& f, const EncoderBatch& b) {
  const std::vector<int32_t> pos = encoder_position_ids(f.src.config, b);
  return encref::encoder_forward(f.ref, std::vector<int>(b.ids.begin(), b.ids.end()),
                                 std::vector<int>(b.type_ids.begin(), b.type_ids.end()),
                                 std::vector<int>(pos.begin(), pos.end()),
                                 std::vector<int>(b.offsets.begin(), b.offsets.end()));
}

double model_tol(DType t) { return t == DType::F32 ? 1e-4 : t == DType::F16 ? 1e-2 : 2.5e-2; }

}  // namespace

TEST(CudaEncoder, HiddenStatesMatchReference) {
  REQUIRE_GPU();
  std::mt19937 rng(21);
  for (EncoderFamily fam : {EncoderFamily::Bert, EncoderFamily::Roberta})
    for (int heads : {2, 4}) {
      Fixture f = make_fixture(fam, EncoderHead::Embedding, heads);
      const EncoderBatch batch = random_batch({1, 7, 64, 129, 300}, f.src.config.vocab_size,
                                              f.src.config.type_vocab_size, rng);
      const std::vector<float> want = ref_hidden(f, batch);
      auto cpu = make_cpu_encoder(f.src, 2);
      const std::vector<float> cpu_h = to_vec(cpu->hidden_states(batch));
      EXPECT_LE(rel_err(cpu_h, want), 1e-4) << "CPU model vs the reference";
      for (DType dt : {DType::F32, DType::F16, DType::BF16})
        for (bool exact : {false, true}) {
          if (dt == DType::F32 && !exact) continue;
          SCOPED_TRACE(std::string(fam == EncoderFamily::Roberta ? "roberta " : "bert ") + dname(dt) + " heads " +
                       std::to_string(heads) + (exact ? " exact GELU" : " epilogue GELU"));
          EncoderCudaOptions o;
          o.dtype = dt, o.exact_gelu = exact, o.max_tokens = 1024;
          auto m = make_cuda_encoder_model(f.src, o);
          const std::vector<float> got = to_vec(m->hidden_states(batch));  // eager + capture
          EXPECT_LE(rel_err(got, want), model_tol(dt));
          EXPECT_LE(rel_err(got, cpu_h), model_tol(dt));
          const std::vector<float> replay = to_vec(m->hidden_states(batch));  // graph replay
          EXPECT_LE(rel_err(replay, got), 1e-6) << "graph replay differs from the eager pass";
          std::printf("%s: %s; %d launches per layer, %d per pass; capture %.2f ms, load %.1f ms\n",
                      dname(dt), m->describe().c_str(), m->launches_per_layer(), m->launches_per_pass(),
                      m->last_capture_ms(), 1e3 * m->load_seconds());
          EXPECT_LT(m->last_capture_ms(), 50.0);
          if (dt != DType::F32 && !exact) EXPECT_EQ(m->launches_per_layer(), 7);
        }
    }
}

// The split-K FFN2 (default at buckets up to 512 rows) against the plain products, both against the
// CPU reference, on a bucket of 512 rows (lengths 1..300, 501 tokens) and one of 64.
TEST(CudaEncoder, SplitKMatchesPlainProducts) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  Fixture f = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  for (const std::vector<int>& lens : {std::vector<int>{1, 7, 64, 129, 300}, std::vector<int>{5, 40}}) {
    const EncoderBatch batch = random_batch(lens, f.src.config.vocab_size, 2, rng);
    const std::vector<float> want = ref_hidden(f, batch);
    for (DType dt : {DType::F16, DType::BF16}) {
      SCOPED_TRACE(std::string(dname(dt)) + " " + std::to_string(batch.ids.size()) + " tokens");
      EncoderCudaOptions o;
      o.dtype = dt, o.max_tokens = 1024;
      auto split = make_cuda_encoder_model(f.src, o);
      o.split_k = false;
      auto plain = make_cuda_encoder_model(f.src, o);
      const std::vector<float> hs = to_vec(split->hidden_states(batch)), hp = to_vec(plain->hidden_states(batch));
      EXPECT_LE(rel_err(hs, want), model_tol(dt));
      EXPECT_LE(rel_err(hp, want), model_tol(dt));
      EXPECT_LE(rel_err(to_vec(split->hidden_states(batch)), hs), 1e-6) << "graph replay differs from the eager pass";
    }
  }
}

TEST(CudaEncoder, GenericAttentionMatchesFlash) {
  REQUIRE_GPU();
  std::mt19937 rng(22);
  Fixture f = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  const EncoderBatch batch = random_batch({33, 1, 200, 64}, f.src.config.vocab_size, 2, rng);
  EncoderCudaOptions o;
  o.max_tokens = 512;
  auto flash = make_cuda_encoder_model(f.src, o);
  o.generic_attention = true;
  auto generic = make_cuda_encoder_model(f.src, o);
  EXPECT_LE(rel_err(to_vec(flash->hidden_states(batch)), to_vec(generic->hidden_states(batch))), 1e-2);
}

TEST(CudaEncoder, BucketReplayServesAnyMix) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  Fixture f = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  EncoderCudaOptions o;
  o.max_tokens = 1024;
  auto graphs = make_cuda_encoder_model(f.src, o);
  o.cuda_graphs = false;
  auto eager = make_cuda_encoder_model(f.src, o);
  EXPECT_EQ(graphs->bucket_of(120), graphs->bucket_of(124));
  const EncoderBatch a = random_batch({100, 20}, 97, 2, rng), b = random_batch({64, 30, 30}, 97, 2, rng),
                     c = random_batch({1, 1, 1, 121}, 97, 2, rng);
  graphs->hidden_states(a);  // captures the bucket
  const int g = graphs->graph_count();
  for (const EncoderBatch* x : {&b, &c, &a}) {
    const std::vector<float> got = to_vec(graphs->hidden_states(*x));
    EXPECT_LE(rel_err(got, to_vec(eager->hidden_states(*x))), 1e-6);
    EXPECT_LE(rel_err(got, ref_hidden(f, *x)), model_tol(DType::F16));
  }
  EXPECT_EQ(graphs->graph_count(), g) << "a batch of the same bucket captured a new graph";
}

TEST(CudaEncoder, HeadsMatchCpuModel) {
  REQUIRE_GPU();
  std::mt19937 rng(24);
  for (EncoderFamily fam : {EncoderFamily::Bert, EncoderFamily::Roberta})
    for (EncoderHead head : {EncoderHead::Embedding, EncoderHead::SequenceClassification, EncoderHead::TokenClassification})
      for (Pooling pool : {Pooling::Mean, Pooling::Cls}) {
        if (head != EncoderHead::Embedding && pool == Pooling::Cls) continue;
        Fixture f = make_fixture(fam, head);
        f.src.config.pooling = pool;
        const EncoderBatch batch = random_batch({5, 130, 1, 77}, 97, f.src.config.type_vocab_size, rng);
        const std::vector<float> want = to_vec(make_cpu_encoder(f.src, 2)->forward(batch));
        for (DType dt : {DType::F32, DType::F16}) {
          SCOPED_TRACE(std::string(fam == EncoderFamily::Roberta ? "roberta" : "bert") + " head " +
                       std::to_string(int(head)) + " pooling " + std::to_string(int(pool)) + " " + dname(dt));
          EncoderCudaOptions o;
          o.dtype = dt;
          o.max_tokens = 512;
          auto m = make_cuda_encoder_model(f.src, o);
          const Tensor got = m->forward(batch);
          ASSERT_EQ(got.numel(), int64_t(want.size()));
          EXPECT_LE(rel_err(to_vec(got), want), model_tol(dt));
        }
      }
}

TEST(CudaEncoder, SplitsBatchesOverMaxTokens) {
  REQUIRE_GPU();
  std::mt19937 rng(25);
  Fixture f = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  const EncoderBatch batch = random_batch({200, 100, 50, 256, 3}, 97, 2, rng);
  EncoderCudaOptions o;
  o.dtype = DType::F32;
  o.max_tokens = 256;
  auto m = make_cuda_encoder_model(f.src, o);
  EXPECT_LE(rel_err(to_vec(m->hidden_states(batch)), ref_hidden(f, batch)), 1e-4);
  const std::vector<float> want = to_vec(make_cpu_encoder(f.src, 2)->forward(batch));
  EXPECT_LE(rel_err(to_vec(m->forward(batch)), want), 1e-4);
  EXPECT_THROW(m->run(batch), Error);  // run() is one pass only
}

TEST(CudaEncoder, BadInputIsAnError) {
  REQUIRE_GPU();
  Fixture f = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  EncoderCudaOptions o;
  o.max_tokens = 512;
  auto m = make_cuda_encoder_model(f.src, o);
  EncoderBatch empty_seq;
  empty_seq.add({5, 6});
  empty_seq.add({});
  EXPECT_THROW(m->hidden_states(empty_seq), Error);
  EncoderBatch bad_id;
  bad_id.add({5, 97});
  EXPECT_THROW(m->hidden_states(bad_id), Error);
  EncoderBatch too_long;
  too_long.add(std::vector<int32_t>(321, 5));
  EXPECT_THROW(m->hidden_states(too_long), Error);
  EncoderBatch none;
  EXPECT_THROW(m->hidden_states(none), Error);
  // still usable afterwards
  EncoderBatch ok;
  ok.add({5, 6, 7});
  EXPECT_EQ(m->hidden_states(ok).numel(), 3 * 128);
  Fixture g = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  g.src.weights.erase("encoder.layer.1.output.dense.bias");
  EXPECT_THROW(make_cuda_encoder_model(g.src, o), Error);
  Fixture h = make_fixture(EncoderFamily::Bert, EncoderHead::Embedding);
  h.src.config.activation = "swish";
  EXPECT_THROW(make_cuda_encoder_model(h.src, o), Error);
}
