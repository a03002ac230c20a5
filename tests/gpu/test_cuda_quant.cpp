// The quantized kernels (src/cuda/gemv_quant.cu) against CPU references on fresh random data:
//   GEMV: y = x W^T with W int8 (f32 / bf16 / f16 scales), int4 (groups 32/64/128, symmetric and
//   with zero points), GGUF Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_K / Q6_K; B = 1..8; every epilogue (store bf16, store f32,
//   add f32, SwiGLU of a fused gate/up layer); reference: the CPU dequantization (QuantLinear /
//   quant::dequantize_row) times the same bf16-rounded x, in double.
//   Dequantize-to-bf16 vs the CPU dequantization rounded to bf16 (bit-exact for Q4_1 / Q5_K / Q6_K,
//   within one bf16 ulp for the others: their GPU code may fuse the multiply-add). Prefill through dequantized tiles + cuBLASLt. Act-order layers
//   (contiguous groups + gather_columns).
// int8 and int4 run through every GEMV kernel (CUDA-core, tensor-core, bulk-copy on sm_90).
// Outputs are poisoned with NaN first. Tolerance ||out - ref|| / ||ref||: 1e-2 for bf16 outputs,
// 1e-4 for fp32 outputs (fp32 accumulation in another order). Skipped without a GPU.
// DISABLED_QuantGemvBandwidth: GB/s of each format on Llama-2-7B shapes (B = 1, or IGNIS_BW_BATCH;
// IGNIS_BW_FORMATS=int8,int4 picks formats).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/kernels.h"
#include "cuda/quant_kernels.h"
#include "cuda/ref.h"
#include "gpu_test_util.h"
#include "ops/quant.h"
#include "quant/formats.h"
#include "quant/quantize.h"

using namespace ignis;
using namespace ignis::cuda;
using namespace ignis::gputest;

namespace {

// A weight in one of the formats, on the host (for the reference) and on the device.
struct TestWeight {
  std::vector<float> deq;  // [N, K] dequantized on the CPU
  DeviceQuantLinear dq;    // int8 / int4
  DeviceBuffer raw;        // GGUF blocks
  QWeight view;
};

const char* type_name(QType t) {
  switch (t) {
    case QType::kInt8: return "int8";
    case QType::kInt4: return "int4";
    case QType::kQ8_0: return "Q8_0";
    case QType::kQ4_0: return "Q4_0";
    case QType::kQ4_K: return "Q4_K";
    case QType::kQ4_1: return "Q4_1";
    case QType::kQ5_K: return "Q5_K";
    case QType::kQ6_K: return "Q6_K";
  }
  return "?";
}

bool is_kquant(QType t) { return t == QType::kQ4_K || t == QType::kQ5_K || t == QType::kQ6_K; }
// Formats whose GPU dequantization rounds exactly like the CPU's.
bool exact_dequant(QType t) { return t == QType::kQ4_1 || t == QType::kQ5_K || t == QType::kQ6_K; }

DType gguf_dtype(QType t) {
  switch (t) {
    case QType::kQ8_0: return DType::Q8_0;
    case QType::kQ4_0: return DType::Q4_0;
    case QType::kQ4_1: return DType::Q4_1;
    case QType::kQ4_K: return DType::Q4_K;
    case QType::kQ5_K: return DType::Q5_K;
    case QType::kQ6_K: return DType::Q6_K;
    default: break;
  }
  ADD_FAILURE() << "not a GGUF type";
  return DType::F32;
}

void make_weight(QType t, int N, int K, int group, bool sym, DType sd, std::mt19937& rng, TestWeight& w) {
  std::vector<float> W = random_vec(size_t(N) * K, rng, -0.5f, 0.5f);
  if (t == QType::kInt8 || t == QType::kInt4) {
    quant::QuantSpec spec{t == QType::kInt8 ? quant::QFormat::kInt8 : quant::QFormat::kInt4, group, sym, sd};
    const quant::QuantLinear q = quant::quantize_rtn(W.data(), N, K, spec);
    w.deq = quant::dequantize(q);
    upload_quant_linear(q, w.dq);
    w.view = w.dq.view;
    return;
  }
  const DType dt = gguf_dtype(t);
  const size_t rb = row_bytes(dt, K);
  std::vector<uint8_t> blocks(rb * N);
  w.deq.resize(size_t(N) * K);
  // Even rows: the CPU quantizer's blocks of random floats. Odd rows: random bytes (every bit
  // pattern of values, high bits and packed scales) with sane fp16 scales / mins.
  const size_t bb = dtype_info(dt).block_bytes;
  std::vector<size_t> halves = {0};  // offsets of the fp16 fields in a block
  if (dt == DType::Q4_1 || dt == DType::Q4_K || dt == DType::Q5_K) halves = {0, 2};
  if (dt == DType::Q6_K) halves = {208};
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> small(1e-3f, 4e-3f);
  for (int n = 0; n < N; ++n) {
    uint8_t* row = blocks.data() + rb * n;
    if (n % 2 == 0) {
      quant::quantize_row(dt, W.data() + size_t(n) * K, row, K);
    } else {
      for (size_t i = 0; i < rb; ++i) row[i] = uint8_t(byte(rng));
      for (size_t b = 0; b < rb; b += bb)
        for (size_t o : halves) {
          const uint16_t h = f32_to_f16(small(rng));
          std::memcpy(row + b + o, &h, 2);
        }
    }
    quant::dequantize_row(dt, row, w.deq.data() + size_t(n) * K, K);
  }
  w.raw.alloc(blocks.size());
  CUDA_CHECK(cudaMemcpy(w.raw.get(), blocks.data(), blocks.size(), cudaMemcpyHostToDevice));
  w.view = QWeight{};
  w.view.type = t;
  w.view.w = w.raw.get();
  w.view.N = N;
  w.view.K = K;
}

// y[b, n] = sum_k deq[n, k] x[b, k] in double
std::vector<float> ref_linear(const std::vector<float>& deq, const std::vector<float>& x, int B, int N, int K) {
  std::vector<float> y(size_t(B) * N);
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += double(deq[size_t(n) * K + k]) * x[size_t(b) * K + k];
      y[size_t(b) * N + n] = float(s);
    }
  return y;
}

struct Fmt {
  QType t;
  int group;
  bool sym;
  DType sd;
};

std::string fmt_name(const Fmt& f) {
  std::string s = type_name(f.t);
  if (f.t == QType::kInt4) s += " g" + std::to_string(f.group) + (f.sym ? " sym" : " asym");
  if (f.t == QType::kInt4 || f.t == QType::kInt8) s += std::string(" scales ") + std::string(dtype_name(f.sd));
  return s;
}

const Fmt kFormats[] = {
    {QType::kInt8, 0, true, DType::F32},   {QType::kInt8, 0, true, DType::BF16},  {QType::kInt8, 0, true, DType::F16},
    {QType::kInt4, 32, true, DType::F16},  {QType::kInt4, 64, false, DType::BF16}, {QType::kInt4, 128, true, DType::BF16},
    {QType::kInt4, 128, false, DType::F16}, {QType::kQ8_0, 0, true, DType::F16},   {QType::kQ4_0, 0, true, DType::F16},
    {QType::kQ4_K, 0, true, DType::F16},   {QType::kQ4_1, 0, true, DType::F16},   {QType::kQ5_K, 0, true, DType::F16},
    {QType::kQ6_K, 0, true, DType::F16},
};

}  // namespace

TEST(CudaQuant, GemvAllFormatsAndEpilogues) {
  REQUIRE_GPU();
  std::mt19937 rng(42);
  for (const Fmt& f : kFormats) {
    // N: odd (a lone last row), and a multiple of 16 for SwiGLU; K: several chunks per lane and a tail
    const int K = is_kquant(f.t) ? 1280 : 1408;
    for (int N : {67, 96}) {
      TestWeight w;
      make_weight(f.t, N, K, f.group, f.sym, f.sd, rng, w);
      for (int B : {1, 2, 3, 5, 8}) {
        std::vector<float> x = random_vec(size_t(B) * K, rng);
        round_to(DType::BF16, x);
        auto dx = upload(DType::BF16, x);
        const std::vector<float> y = ref_linear(w.deq, x, B, N, K);
        for (GemvEpilogue epi :
             {GemvEpilogue::kStore, GemvEpilogue::kStoreF32, GemvEpilogue::kAddF32, GemvEpilogue::kSwiGLU}) {
          if (epi == GemvEpilogue::kSwiGLU && N % 16) continue;
          SCOPED_TRACE(fmt_name(f) + " N=" + std::to_string(N) + " K=" + std::to_string(K) + " B=" +
                       std::to_string(B) + " epi=" + std::to_string(int(epi)));
          const bool swiglu = epi == GemvEpilogue::kSwiGLU;
          const int n_out = swiglu ? N / 2 : N;
          const bool f32 = epi == GemvEpilogue::kStoreF32 || epi == GemvEpilogue::kAddF32;
          const DType ot = f32 ? DType::F32 : DType::BF16;
          std::vector<float> init = random_vec(size_t(B) * n_out, rng), want(size_t(B) * n_out);
          for (int b = 0; b < B; ++b)
            for (int j = 0; j < n_out; ++j) {
              const size_t o = size_t(b) * n_out + j;
              if (swiglu) {
                const double g = y[size_t(b) * N + swiglu_row_of_gate(j)], u = y[size_t(b) * N + swiglu_row_of_gate(j) + 8];
                want[o] = float(g / (1 + std::exp(-g)) * u);
              } else {
                want[o] = y[size_t(b) * N + j] + (epi == GemvEpilogue::kAddF32 ? init[o] : 0.f);
              }
            }
          // int8 and int4: the CUDA-core and the tensor-core kernel
          // and, on sm_90+, the bulk-copy kernel (int8, int4 of any group)
          const bool tc_ok = int4_tc_supported(w.view) || int8_tc_supported(w.view);
          const bool bulk_ok = device_has_bulk_copy() && quant_bulk_supported(w.view);
          // (bulk-copy: whole tiles per block, and with a workspace, where every tile is cut across blocks)
          DeviceBuffer ws(size_t(1) << 20), counters(size_t(N) * 4);
          CUDA_CHECK(cudaMemset(counters.get(), 0, counters.size()));
          // (tensor-core int4 also with K split across 3 blocks per tile)
          for (int variant = 0; variant < 5; ++variant) {
            const QGemvImpl impl = variant == 0   ? QGemvImpl::kCudaCore
                                   : variant <= 2 ? QGemvImpl::kTensorCore
                                                  : QGemvImpl::kBulk;
            const bool split = variant == 2 || variant == 4;
            if (impl == QGemvImpl::kTensorCore && !tc_ok) continue;
            if (variant == 2 && w.view.type != QType::kInt4) continue;
            if (impl == QGemvImpl::kBulk && !bulk_ok) continue;
            SCOPED_TRACE(std::string(impl == QGemvImpl::kTensorCore ? "tensor-core kernel"
                                     : impl == QGemvImpl::kBulk     ? "bulk-copy kernel"
                                                                    : "CUDA-core kernel") +
                         (split ? ", split tiles" : ""));
            DeviceBuffer dout(size_t(B) * n_out * esize(ot));
            if (epi == GemvEpilogue::kAddF32)
              CUDA_CHECK(cudaMemcpy(dout.get(), init.data(), init.size() * 4, cudaMemcpyHostToDevice));
            else
              poison(dout);
            QGemvArgs a;
            a.W = w.view;
            a.impl = impl;
            a.x = dx.get();
            a.B = B;
            a.epi = epi;
            a.out = dout.get();
            if (split) {
              a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4;
              a.counters = counters.as<unsigned>(), a.n_counters = N;
              a.splits = 3;
            }
            gemv_quant(a, nullptr);
            const std::vector<float> got = download(ot, dout.get(), want.size());
            // the tensor-core int4 kernel with groups of 32 / 64 rounds the scaled weights to bf16
            const bool bf16_weights = impl == QGemvImpl::kTensorCore && f.t == QType::kInt4 && f.group < 128;
            EXPECT_LE(rel_err(got, want), f32 && !bf16_weights ? 1e-4 : 1e-2);
            if (split) {  // the counters are left zero for the next launch
              const std::vector<float> cnt = download(DType::F32, counters.get(), size_t(N));
              EXPECT_EQ(std::count(cnt.begin(), cnt.end(), 0.f), N);
            }
          }
        }
      }
    }
  }
}

TEST(CudaQuant, DequantizeBf16) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  for (const Fmt& f : kFormats) {
    SCOPED_TRACE(fmt_name(f));
    const int N = 45, K = 512;
    TestWeight w;
    make_weight(f.t, N, K, f.group, f.sym, f.sd, rng, w);
    const int row0 = 5, rows = 33;
    DeviceBuffer d(size_t(rows) * K * 2);
    poison(d);
    dequantize_bf16(w.view, row0, rows, d.get(), nullptr);
    const std::vector<float> got = download(DType::BF16, d.get(), size_t(rows) * K);
    int bad = 0;
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < K; ++k) {
        const float ref = bf16_to_f32(f32_to_bf16(w.deq[size_t(row0 + r) * K + k]));
        const float g = got[size_t(r) * K + k];
        if (exact_dequant(f.t) ? !(g == ref) : !(std::fabs(g - ref) <= std::ldexp(std::fabs(ref), -7) + 1e-30f)) ++bad;
      }
    EXPECT_EQ(bad, 0);
  }
}

// The folded RMSNorm on the quantized kernels (batch-1 decode): a residual product x += Wo . in that
// also writes h = bf16(x * w) and partial sums of the new x^2 (next_*; gemv_quant returns how many
// per batch row), then a product that divides by the rms from them (rms_ss). Against the CPU: x, h
// bit for bit from the GPU's x, the partials' total, and rmsnorm (rounded to bf16) then the
// dequantized product. Kernels: CUDA-core int8 / int4, tensor-core int4 (row-major with split-K and
// tiled); other kernels refuse the fold.
TEST(CudaQuant, GemvFoldedRmsNorm) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  struct Case { Fmt f; QGemvImpl impl; bool tiled; int B; };
  const Case cases[] = {{{QType::kInt8, 0, true, DType::BF16}, QGemvImpl::kCudaCore, false, 1},
                        {{QType::kInt8, 0, true, DType::F16}, QGemvImpl::kCudaCore, false, 3},
                        {{QType::kInt4, 128, true, DType::BF16}, QGemvImpl::kCudaCore, false, 1},
                        {{QType::kInt4, 128, true, DType::BF16}, QGemvImpl::kTensorCore, false, 1},
                        {{QType::kInt4, 32, false, DType::F16}, QGemvImpl::kTensorCore, true, 2},
                        {{QType::kInt4, 128, true, DType::BF16}, QGemvImpl::kTensorCore, true, 1}};
  const int K = 1024, Kin = 1408, N = 2 * 768;  // x: K; Wo: K x Kin; W: N x K (SwiGLU-able)
  for (const Case& c : cases)
    for (GemvEpilogue epi : {GemvEpilogue::kStore, GemvEpilogue::kStoreF32, GemvEpilogue::kSwiGLU}) {
      SCOPED_TRACE(fmt_name(c.f) + (c.impl == QGemvImpl::kTensorCore ? " tensor-core" : " CUDA-core") +
                   (c.tiled ? " tiled" : "") + " B=" + std::to_string(c.B) + " epi=" + std::to_string(int(epi)));
      const int B = c.B;
      TestWeight wo, w;
      make_weight(c.f.t, K, Kin, c.f.group, c.f.sym, c.f.sd, rng, wo);
      const int kin = Kin;
      make_weight(c.f.t, N, K, c.f.group, c.f.sym, c.f.sd, rng, w);
      DeviceBuffer scratch(size_t(N) * std::max(K, kin));
      if (c.tiled) {
        tile_int4(wo.view, scratch.get(), scratch.size(), nullptr);
        tile_int4(w.view, scratch.get(), scratch.size(), nullptr);
      }
      std::vector<float> in = random_vec(size_t(B) * kin, rng), x = random_vec(size_t(B) * K, rng, -5, 5);
      std::vector<float> nw = random_vec(size_t(K), rng, 0.5f, 1.5f);
      round_to(DType::BF16, in);
      auto din = upload(DType::BF16, in), dx = upload(DType::F32, x), dnw = upload(DType::F32, nw);
      DeviceBuffer dh(size_t(B) * K * 2), ss(size_t(K) * B * 4), ws(size_t(1) << 22), cnt(size_t(N) * 4);
      poison(dh), poison(ss);
      CUDA_CHECK(cudaMemset(cnt.get(), 0, cnt.size()));
      QGemvArgs r;
      r.W = wo.view, r.impl = c.impl, r.x = din.get(), r.B = B, r.epi = GemvEpilogue::kAddF32, r.out = dx.get();
      r.ws = ws.as<float>(), r.ws_floats = ws.size() / 4, r.counters = cnt.as<unsigned>(), r.n_counters = N;
      if (c.impl == QGemvImpl::kTensorCore && !c.tiled) r.splits = 3;
      r.next_norm_w = dnw.as<float>(), r.next_h = dh.get(), r.next_ss = ss.as<float>();
      const int parts = gemv_quant(r, nullptr);
      EXPECT_EQ(parts, c.impl == QGemvImpl::kTensorCore ? K / 16 : K / 8);
      std::vector<float> want_x = x;
      const std::vector<float> y0 = ref_linear(wo.deq, in, B, K, kin);
      for (size_t i = 0; i < x.size(); ++i) want_x[i] += y0[i];
      const std::vector<float> got_x = download(DType::F32, dx.get(), x.size());
      const bool bf16_w = c.impl == QGemvImpl::kTensorCore && c.f.group < 128;  // weights rounded to bf16
      EXPECT_LE(rel_err(got_x, want_x), bf16_w ? 1e-2 : 1e-4);
      std::vector<float> want_h(x.size());
      std::vector<double> tot(size_t(B), 0.0);
      for (int b = 0; b < B; ++b)
        for (int k = 0; k < K; ++k) {
          const float v = got_x[size_t(b) * K + k];
          want_h[size_t(b) * K + k] = v * nw[size_t(k)];
          tot[size_t(b)] += double(v) * v;
        }
      round_to(DType::BF16, want_h);
      EXPECT_EQ(download(DType::BF16, dh.get(), want_h.size()), want_h) << "h = x * w, rounded once";
      const std::vector<float> got_ss = download(DType::F32, ss.get(), size_t(parts) * B);
      for (int b = 0; b < B; ++b) {
        double t = 0;
        for (int p = 0; p < parts; ++p) t += got_ss[size_t(p) * B + b];
        EXPECT_NEAR(t, tot[size_t(b)], 1e-5 * tot[size_t(b)]) << "batch row " << b;
      }
      // the consumer
      const bool swiglu = epi == GemvEpilogue::kSwiGLU;
      const int n_out = swiglu ? N / 2 : N;
      const DType ot = epi == GemvEpilogue::kStoreF32 ? DType::F32 : DType::BF16;
      DeviceBuffer dout(size_t(B) * n_out * esize(ot));
      poison(dout);
      QGemvArgs a = r;
      a.W = w.view, a.x = dh.get(), a.epi = epi, a.out = dout.get(), a.splits = 0;
      a.next_norm_w = nullptr, a.next_h = nullptr, a.next_ss = nullptr;
      a.rms_ss = ss.as<float>(), a.rms_parts = parts, a.norm_eps = 1e-5f;
      EXPECT_EQ(gemv_quant(a, nullptr), 0);
      std::vector<float> xr = got_x, hn(got_x.size());
      ref::rmsnorm(xr.data(), nullptr, nw.data(), hn.data(), B, K, 1e-5f);
      round_to(DType::BF16, hn);
      const std::vector<float> y = ref_linear(w.deq, hn, B, N, K);
      std::vector<float> want(size_t(B) * n_out);
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < n_out; ++j) {
          if (swiglu) {
            const double g = y[size_t(b) * N + swiglu_row_of_gate(j)], u = y[size_t(b) * N + swiglu_row_of_gate(j) + 8];
            want[size_t(b) * n_out + j] = float(g / (1 + std::exp(-g)) * u);
          } else {
            want[size_t(b) * n_out + j] = y[size_t(b) * N + j];
          }
        }
      EXPECT_LE(rel_err(download(ot, dout.get(), want.size()), want), 1e-2);
    }
  // kernels without the fold refuse it
  TestWeight q8;
  make_weight(QType::kQ8_0, 64, 256, 0, true, DType::F16, rng, q8);
  DeviceBuffer o(64 * 4), h(64 * 2), ss(64 * 4), xin(256 * 2);
  float dummy_w = 1.f;
  QGemvArgs bad;
  bad.W = q8.view, bad.x = xin.get(), bad.out = o.get(), bad.epi = GemvEpilogue::kAddF32;
  bad.next_norm_w = &dummy_w, bad.next_h = h.get(), bad.next_ss = ss.as<float>();
  EXPECT_THROW(gemv_quant(bad, nullptr), Error) << "Q8_0 blocks";
  EXPECT_FALSE(quant_fold_ok(q8.view, 1));
  TestWeight i8, i4;
  make_weight(QType::kInt8, 64, 256, 0, true, DType::F16, rng, i8);
  make_weight(QType::kInt4, 64, 256, 128, true, DType::BF16, rng, i4);
  EXPECT_TRUE(quant_fold_ok(i4.view, 1));
  EXPECT_FALSE(quant_fold_ok(i4.view, 2)) << "batch 2";
  EXPECT_FALSE(quant_fold_ok(i8.view, 1)) << "int8: measured slower, the decoder does not fold it";
  bad.W = i8.view, bad.impl = QGemvImpl::kTensorCore, bad.B = 2;
  EXPECT_THROW(gemv_quant(bad, nullptr), Error) << "int8 tensor-core kernel";
}

// int4 nibbles in the tiled order (tile_int4, int4_tile_index, interleaved words): dequantize_bf16
// gives bit-identical values to the row-major weight and the tensor-core GEMV the same results up to
// fp32 summation order, at B = 1, 3, 8, plain / SwiGLU epilogues, with and without split K; and they
// match the CPU reference. Bad shapes and the kernels that cannot read the layout are refused.
// The tiled layout's word interleave (int4_interleave_word): nibble j holds k 2j (j < 4) or 2 (j - 4) + 1,
// and int4_deinterleave_word undoes it, on every nibble pattern of a sample of random words.
TEST(CudaQuant, Int4WordInterleave) {
  uint32_t ramp = 0;
  for (int i = 0; i < 8; ++i) ramp |= uint32_t(i) << (4 * i);  // nibble i holds k = i
  const uint32_t v = int4_interleave_word(ramp);
  for (int j = 0; j < 8; ++j) EXPECT_EQ((v >> (4 * j)) & 15u, uint32_t(j < 4 ? 2 * j : 2 * (j - 4) + 1)) << "nibble " << j;
  std::mt19937 rng(5);
  for (int i = 0; i < 10000; ++i) {
    const uint32_t w = uint32_t(rng());
    ASSERT_EQ(int4_deinterleave_word(int4_interleave_word(w)), w);
  }
}

TEST(CudaQuant, Int4TiledLayout) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  const int N = 96, K = 1536;
  for (const Fmt& f : kFormats) {
    if (f.t != QType::kInt4) continue;
    SCOPED_TRACE(fmt_name(f));
    TestWeight w;
    make_weight(f.t, N, K, f.group, f.sym, f.sd, rng, w);
    const size_t bytes = size_t(N) * K / 2;
    // a scratch of two and a half tiles: reordered in chunks of 32 rows (3 chunks)
    DeviceBuffer copy(bytes), scratch(size_t(5) * 8 * K / 2);
    CUDA_CHECK(cudaMemcpy(copy.get(), w.view.w, bytes, cudaMemcpyDeviceToDevice));
    QWeight t = w.view;
    t.w = copy.get();
    tile_int4(t, scratch.get(), scratch.size(), nullptr);
    ASSERT_TRUE(t.tiled);
    EXPECT_THROW(tile_int4(t, scratch.get(), scratch.size(), nullptr), Error) << "already tiled";
    {  // the layout moved the bytes: the raw buffers differ, the dequantized values do not
      std::vector<uint8_t> a(bytes), b(bytes);
      CUDA_CHECK(cudaMemcpy(a.data(), w.view.w, bytes, cudaMemcpyDeviceToHost));
      CUDA_CHECK(cudaMemcpy(b.data(), copy.get(), bytes, cudaMemcpyDeviceToHost));
      EXPECT_NE(a, b);
      DeviceBuffer da(size_t(N) * K * 2), db(size_t(N) * K * 2);
      dequantize_bf16(w.view, 0, N, da.get(), nullptr);
      dequantize_bf16(t, 0, N, db.get(), nullptr);
      EXPECT_EQ(download(DType::BF16, da.get(), size_t(N) * K), download(DType::BF16, db.get(), size_t(N) * K));
    }
    DeviceBuffer ws(size_t(1) << 20), counters(size_t(N) * 4);
    CUDA_CHECK(cudaMemset(counters.get(), 0, counters.size()));
    for (int B : {1, 3, 8}) {
      std::vector<float> x = random_vec(size_t(B) * K, rng);
      round_to(DType::BF16, x);
      auto dx = upload(DType::BF16, x);
      const std::vector<float> y = ref_linear(w.deq, x, B, N, K);
      for (GemvEpilogue epi : {GemvEpilogue::kStoreF32, GemvEpilogue::kSwiGLU})
        for (bool split : {false, true}) {
          SCOPED_TRACE("B=" + std::to_string(B) + " epi=" + std::to_string(int(epi)) + (split ? " split" : ""));
          const int n_out = epi == GemvEpilogue::kSwiGLU ? N / 2 : N;
          const DType ot = epi == GemvEpilogue::kSwiGLU ? DType::BF16 : DType::F32;
          std::vector<float> got[2];
          for (int tiled = 0; tiled < 2; ++tiled) {
            DeviceBuffer dout(size_t(B) * n_out * esize(ot));
            poison(dout);
            QGemvArgs a;
            a.W = tiled ? t : w.view;
            a.impl = QGemvImpl::kTensorCore;
            a.h1 = 0;  // the bf16 form in both layouts (the fp16 one rounds x: Int4Batch1Fp16Form tests it)
            a.x = dx.get(), a.B = B, a.epi = epi, a.out = dout.get();
            if (split) {
              a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4;
              a.counters = counters.as<unsigned>(), a.n_counters = N;
              a.splits = 3;
            }
            gemv_quant(a, nullptr);
            got[tiled] = download(ot, dout.get(), size_t(B) * n_out);
          }
          // the same products; within each mma the tiled words pair consecutive k, the row-major ones k
          // and k + 4, so the fp32 sums differ in order only (bf16 outputs: by a rounding at most)
          EXPECT_LE(rel_err(got[1], got[0]), ot == DType::F32 ? 1e-5 : 4e-3) << "tiled and row-major results differ";
          if (epi == GemvEpilogue::kStoreF32) EXPECT_LE(rel_err(got[1], y), f.group < 128 ? 1e-2 : 1e-4);
        }
    }
    {
      std::vector<float> x = random_vec(size_t(K), rng);
      auto dx = upload(DType::BF16, x);
      DeviceBuffer dout(size_t(N) * 4);
      QGemvArgs a;
      a.W = t, a.x = dx.get(), a.B = 1, a.epi = GemvEpilogue::kStoreF32, a.out = dout.get();
      a.impl = QGemvImpl::kCudaCore;
      EXPECT_THROW(gemv_quant(a, nullptr), Error) << "the CUDA-core kernel reads rows";
    }
  }
  QWeight bad;
  bad.type = QType::kInt4, bad.group = 128, bad.N = 40, bad.K = 256;
  DeviceBuffer buf(size_t(64) * 256), scratch(size_t(64) * 256);
  bad.w = buf.get();
  EXPECT_THROW(tile_int4(bad, scratch.get(), scratch.size(), nullptr), Error) << "N % 16 != 0";
  bad.N = 32, bad.K = 192, bad.group = 64;
  EXPECT_THROW(tile_int4(bad, scratch.get(), scratch.size(), nullptr), Error) << "K % 128 != 0";
  bad.K = 256;
  EXPECT_THROW(tile_int4(bad, scratch.get(), 16, nullptr), Error) << "scratch smaller than a tile";
}

// y = x W^T (batch 1, f32 out) on the int4 tensor-core GEMV with the fp16 form h1 off (0) or on (1), split-K
// into `splits` given the workspace and the (zeroed) counters.
std::vector<float> tc_batch1(const QWeight& t, const DeviceBuffer& dx, int splits, int h1, DeviceBuffer& ws,
                             DeviceBuffer& counters) {
  DeviceBuffer dout(size_t(t.N) * 4);
  poison(dout);
  QGemvArgs a;
  a.W = t, a.impl = QGemvImpl::kTensorCore, a.h1 = h1;
  a.x = dx.get(), a.B = 1, a.epi = GemvEpilogue::kStoreF32, a.out = dout.get();
  a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4;
  a.counters = counters.as<unsigned>(), a.n_counters = t.N;
  a.splits = splits;
  gemv_quant(a, nullptr);
  return download(DType::F32, dout.get(), size_t(t.N));
}

// The batch-1 fp16 form of the int4 tensor-core GEMV (gemv_int4_tc.cu, H1: nibbles OR-ed into fp16 1024,
// the offsets removed through per-step sums of x staged with a power-of-two scale) against the double
// reference and against the bf16 form, for inputs far outside fp16's range and far below it, one outlier
// among small values, groups of 128 / 256, zero points, split-K, both register variants (a: few tiles,
// c: >= 4 tiles per SM), and a split with fewer steps than warps. Groups of 32 / 64 take the G1 form (the
// mma's columns as groups, per-group sums): exact integer products, so within 1e-4 of the double reference
// while the bf16 form rounds the scaled weights to bf16 (1e-2 between the two).
TEST(CudaQuant, Int4Batch1Fp16Form) {
  REQUIRE_GPU();
  std::mt19937 rng(29);
  struct Case {
    int N, K, group;
    bool sym;
    DType sd;
  };
  const Case cases[] = {{64, 1408, 128, true, DType::BF16}, {64, 4096, 128, false, DType::F16},
                        {48, 2048, 128, true, DType::F16},  {8448, 256, 128, false, DType::BF16},
                        {64, 1408, 32, true, DType::F16},   {48, 2048, 32, false, DType::BF16},
                        {64, 1536, 64, false, DType::F16},  {32, 1024, 64, true, DType::BF16},
                        {8448, 256, 32, true, DType::F16}};
  for (const Case& cs : cases) {
    SCOPED_TRACE("N=" + std::to_string(cs.N) + " K=" + std::to_string(cs.K) + " g" + std::to_string(cs.group) +
                 (cs.sym ? " sym" : " asym"));
    TestWeight w;
    make_weight(QType::kInt4, cs.N, cs.K, cs.group, cs.sym, cs.sd, rng, w);
    DeviceBuffer scratch(size_t(cs.N) * cs.K / 2);
    QWeight t = w.view;
    tile_int4(t, scratch.get(), scratch.size(), nullptr);
    DeviceBuffer ws(size_t(4) << 20), counters(size_t(cs.N) * 4);
    CUDA_CHECK(cudaMemset(counters.get(), 0, counters.size()));
    for (float mag : {1.f, 1e-3f, 2e5f, 1e-35f, -1.f}) {  // -1: values ~1e-2 with one outlier of 3e4
      std::vector<float> x = random_vec(size_t(cs.K), rng);
      for (float& v : x) v *= mag < 0 ? 1e-2f : mag;
      if (mag < 0) x[size_t(cs.K) / 3] = 3e4f;
      round_to(DType::BF16, x);
      auto dx = upload(DType::BF16, x);
      const std::vector<float> y = ref_linear(w.deq, x, 1, cs.N, cs.K);
      for (int splits : {1, 3}) {
        SCOPED_TRACE("mag=" + std::to_string(mag) + " splits=" + std::to_string(splits));
        std::vector<float> got[2];
        for (int h1 = 0; h1 < 2; ++h1) got[h1] = tc_batch1(t, dx, splits, h1, ws, counters);
        EXPECT_LE(rel_err(got[1], y), 1e-4) << "fp16 form against the double reference";
        EXPECT_LE(rel_err(got[1], got[0]), cs.group < 128 ? 1e-2 : 1e-4) << "fp16 form against the bf16 form";
        // and it did run: its fp16 rounding of x and its offsets never give all N sums bit for bit
        EXPECT_NE(got[1], got[0]) << "the fp16 form was not taken (h1_smem refused these arguments)";
      }
    }
  }
}

// G1 with mins (W = s q - m: GGUF Q4_K repacked), groups of 32 and 64, f16 and bf16 scales: random nibbles,
// scales and mins laid out by hand in the qmeta_index layout (so the double reference is exact), tiled, at
// batch 1 with and without split-K: the fp16 form within 1e-4 of the reference, the bf16 form (weights
// rounded to bf16) within 1e-2 of it.
TEST(CudaQuant, Int4Batch1Fp16FormMins) {
  REQUIRE_GPU();
  std::mt19937 rng(31);
  struct Case {
    int N, K, group;
    DType sd;
  };
  for (const Case& cs : {Case{64, 1536, 32, DType::F16}, Case{48, 2048, 64, DType::BF16}, Case{4224, 512, 32, DType::F16}}) {
    SCOPED_TRACE("N=" + std::to_string(cs.N) + " K=" + std::to_string(cs.K) + " g" + std::to_string(cs.group));
    const int N = cs.N, K = cs.K, G = K / cs.group;
    std::vector<uint8_t> nib(size_t(N) * K / 2);
    for (uint8_t& b : nib) b = uint8_t(rng() & 0xff);
    std::uniform_real_distribution<float> sdist(1e-3f, 4e-3f), mdist(-2e-2f, 2e-2f);
    std::vector<uint16_t> sc(qmeta_count(N, G), 0), mn(qmeta_count(N, G), 0);
    std::vector<float> deq(size_t(N) * K);
    auto enc = [&](float v) { return cs.sd == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v); };
    auto dec = [&](uint16_t h) { return cs.sd == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h); };
    for (int r = 0; r < N; ++r)
      for (int gi = 0; gi < G; ++gi) {
        const size_t m = qmeta_index(r, gi, G);
        sc[m] = enc(sdist(rng)), mn[m] = enc(mdist(rng));
        const double s = dec(sc[m]), mi = dec(mn[m]);
        for (int k = gi * cs.group; k < (gi + 1) * cs.group; ++k) {
          const uint8_t b = nib[size_t(r) * K / 2 + k / 2];
          deq[size_t(r) * K + k] = float(s * double(k % 2 ? b >> 4 : b & 15) - mi);
        }
      }
    DeviceBuffer dw(nib.size()), ds(sc.size() * 2), dm(mn.size() * 2), scratch(nib.size());
    CUDA_CHECK(cudaMemcpy(dw.get(), nib.data(), nib.size(), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(ds.get(), sc.data(), sc.size() * 2, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dm.get(), mn.data(), mn.size() * 2, cudaMemcpyHostToDevice));
    QWeight t;
    t.type = QType::kInt4, t.group = cs.group, t.scale_dtype = cs.sd, t.N = N, t.K = K;
    t.w = dw.get(), t.scales = ds.get(), t.mins = dm.get();
    tile_int4(t, scratch.get(), scratch.size(), nullptr);
    DeviceBuffer ws(size_t(4) << 20), counters(size_t(N) * 4);
    CUDA_CHECK(cudaMemset(counters.get(), 0, counters.size()));
    for (float mag : {1.f, 2e5f, 1e-30f}) {
      std::vector<float> x = random_vec(size_t(K), rng);
      for (float& v : x) v *= mag;
      round_to(DType::BF16, x);
      auto dx = upload(DType::BF16, x);
      const std::vector<float> y = ref_linear(deq, x, 1, N, K);
      for (int splits : {1, 3}) {
        SCOPED_TRACE("mag=" + std::to_string(mag) + " splits=" + std::to_string(splits));
        std::vector<float> got[2];
        for (int h1 = 0; h1 < 2; ++h1) got[h1] = tc_batch1(t, dx, splits, h1, ws, counters);
        EXPECT_LE(rel_err(got[1], y), 1e-4) << "G1 form against the double reference";
        EXPECT_LE(rel_err(got[0], y), 1e-2) << "bf16 form against the double reference";
        EXPECT_NE(got[1], got[0]) << "the G1 form was not taken";
      }
    }
  }
}

TEST(CudaQuant, PrefillThroughDequantizedTiles) {
  REQUIRE_GPU();
  std::mt19937 rng(9);
  LtGemm gemm;
  const int M = 37, N = 200, K = 512;
  for (const Fmt& f : {kFormats[1], kFormats[4], kFormats[9], kFormats[10], kFormats[11], kFormats[12]}) {
    SCOPED_TRACE(fmt_name(f));
    TestWeight w;
    make_weight(f.t, N, K, f.group, f.sym, f.sd, rng, w);
    std::vector<float> x = random_vec(size_t(M) * K, rng);
    round_to(DType::BF16, x);
    auto dx = upload(DType::BF16, x);
    std::vector<float> init = random_vec(size_t(M) * N, rng);
    const std::vector<float> y = ref_linear(w.deq, x, M, N, K);
    std::vector<float> want(y.size());
    for (size_t i = 0; i < y.size(); ++i) want[i] = y[i] + init[i];
    DeviceBuffer dy(size_t(M) * N * 4), scratch(size_t(64) * K * 2);
    CUDA_CHECK(cudaMemcpy(dy.get(), init.data(), init.size() * 4, cudaMemcpyHostToDevice));
    linear_prefill_quant(gemm, w.view, dx.get(), M, DType::F32, dy.get(), 1.f, scratch.get(), 64, nullptr);
    EXPECT_LE(rel_err(download(DType::F32, dy.get(), want.size()), want), 1e-2);  // bf16 weights in the GEMM
  }
}

TEST(CudaQuant, ActOrderAndFusedGateUp) {
  REQUIRE_GPU();
  std::mt19937 rng(11);
  const int N = 48, K = 256, B = 3;
  std::vector<float> Wf = random_vec(size_t(N) * K, rng, -0.5f, 0.5f);
  quant::QuantLinear q = quant::quantize_rtn(Wf.data(), N, K, quant::QuantSpec{quant::QFormat::kInt4, 64, false, DType::F16});
  std::vector<int32_t> perm(K);
  for (int k = 0; k < K; ++k) perm[size_t(k)] = k;
  std::shuffle(perm.begin(), perm.end(), rng);
  q.g_idx.resize(size_t(K));
  for (int j = 0; j < K; ++j) q.g_idx[size_t(perm[size_t(j)])] = j / 64;
  q.validate("act");
  const std::vector<float> deq = quant::dequantize(q);
  DeviceQuantLinear dq;
  upload_quant_linear(q, dq);
  ASSERT_NE(dq.perm.get(), nullptr);
  std::vector<float> x = random_vec(size_t(B) * K, rng);
  round_to(DType::BF16, x);
  auto dx = upload(DType::BF16, x);
  DeviceBuffer xg(size_t(B) * K * 2), dout(size_t(B) * N * 4);
  poison(xg);
  poison(dout);
  gather_columns(dx.get(), dq.perm.as<int32_t>(), B, K, xg.get(), nullptr);
  QGemvArgs a;
  a.W = dq.view, a.x = xg.get(), a.B = B, a.epi = GemvEpilogue::kStoreF32, a.out = dout.get();
  gemv_quant(a, nullptr);
  EXPECT_LE(rel_err(download(DType::F32, dout.get(), size_t(B) * N), ref_linear(deq, x, B, N, K)), 1e-4);

  // [gate; up] fused in the SwiGLU row order, checked against silu(gate x) * (up x)
  std::vector<float> Gf = random_vec(size_t(N) * K, rng, -0.5f, 0.5f), Uf = random_vec(size_t(N) * K, rng, -0.5f, 0.5f);
  const quant::QuantSpec spec{quant::QFormat::kInt4, 128, true, DType::BF16};
  const quant::QuantLinear g = quant::quantize_rtn(Gf.data(), N, K, spec), u = quant::quantize_rtn(Uf.data(), N, K, spec);
  DeviceQuantLinear fused;
  upload_quant_linear(fuse_gate_up(g, u), fused);
  const std::vector<float> yg = ref_linear(quant::dequantize(g), x, B, N, K), yu = ref_linear(quant::dequantize(u), x, B, N, K);
  std::vector<float> want(size_t(B) * N);
  for (size_t i = 0; i < want.size(); ++i) want[i] = float(yg[i] / (1 + std::exp(-double(yg[i]))) * yu[i]);
  DeviceBuffer dsw(size_t(B) * N * 2);
  poison(dsw);
  a.W = fused.view, a.x = dx.get(), a.epi = GemvEpilogue::kSwiGLU, a.out = dsw.get();
  gemv_quant(a, nullptr);
  EXPECT_LE(rel_err(download(DType::BF16, dsw.get(), want.size()), want), 1e-2);
}

// Bandwidth on Llama-2-7B's decode shapes, B = 1: time per launch (CUDA events, 50 launches after
// warm-up) and GB/s of weight (+ scale) bytes. Compare with the bf16 GEMV's CudaKernels.DISABLED_GemvBandwidth.
// Mean microseconds of f() launched from a cold L2: before each timed launch a 192 MB memset evicts
// what the last one left (an H200's L2 is 60 MB; a 7B layer's int4 q/k/v is 26 MB and would otherwise
// stay in it from one repetition to the next, which is not how a decode step sees it).
// IGNIS_BW_WARM_L2=1: back-to-back launches instead (the numbers before 2026-12-02 23:50 UTC).
double cold_us(const std::function<void()>& f, int reps = 30) {
  static DeviceBuffer* flush = new DeviceBuffer(size_t(192) << 20);  // kept to the end (no teardown order issue)
  static const bool warm = std::getenv("IGNIS_BW_WARM_L2") && *std::getenv("IGNIS_BW_WARM_L2") == '1';
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) f();
  double total = 0;
  if (warm) {
    CUDA_CHECK(cudaEventRecord(e0));
    for (int i = 0; i < reps; ++i) f();
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    total = ms;
  } else {
    for (int i = 0; i < reps; ++i) {
      CUDA_CHECK(cudaMemsetAsync(flush->get(), i & 0xff, flush->size()));
      CUDA_CHECK(cudaEventRecord(e0));
      f();
      CUDA_CHECK(cudaEventRecord(e1));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      total += ms;
    }
  }
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
  return total * 1e3 / reps;
}

// How fast the decode GEMVs' load patterns stream from DRAM with no arithmetic (load_probe.cu), on the
// Llama-2-7B int4 matrix sizes (K / 2 bytes a row) and the bf16 q/k/v: the ceiling of each pattern.
TEST(CudaQuant, DISABLED_LoadPatterns) {
  REQUIRE_GPU();
  struct Shape { const char* name; int rows, rbytes; };
  const Shape shapes[] = {{"int4 qkv", 12288, 2048}, {"int4 o", 4096, 2048}, {"int4 gate_up", 22016, 2048},
                          {"int4 down", 4096, 5504}, {"bf16 qkv", 12288, 8192}};
  const struct { LoadPattern p; const char* name; } pats[] = {
      {LoadPattern::kTile16U2, "tile16 U2"}, {LoadPattern::kTile16U4, "tile16 U4"},
      {LoadPattern::kTileContigU2, "contig U2"}, {LoadPattern::kTileContigU4, "contig U4"},
      {LoadPattern::kWarpRow, "warp/row"}, {LoadPattern::kBulk16K, "bulk 16K"}, {LoadPattern::kBulk32K, "bulk 32K"}};
  DeviceBuffer w(size_t(12288) * 8192), sink(4);
  CUDA_CHECK(cudaMemset(w.get(), 1, w.size()));
  std::printf("%-14s %8s", "shape", "MB");
  for (const auto& p : pats) std::printf(" %10s", p.name);
  std::printf("   (GB/s from a cold L2)\n");
  for (const Shape& s : shapes) {
    const double mb = double(s.rows) * s.rbytes / 1e6;
    std::printf("%-14s %8.1f", s.name, mb);
    for (const auto& p : pats) {
      const double us = cold_us([&] { load_probe(p.p, w.get(), s.rows, s.rbytes, sink.as<unsigned>(), nullptr); });
      std::printf(" %10.0f", mb * 1e6 / (us * 1e-6) / 1e9);
    }
    std::printf("\n");
  }
}

// ring_probe (load_probe.cu) must read every byte of every product exactly once, whatever the chunk,
// the stage count, the barriers, and products smaller than one chunk per block (blocks with nothing).
// Reference: the XOR of all 32-bit words of the ranges, computed here on the host.
TEST(CudaQuant, RingProbeReadsEveryByte) {
  REQUIRE_GPU();
  std::mt19937 rng(7);
  const size_t total = size_t(24) << 20;
  std::vector<uint32_t> host(total / 4);
  for (auto& v : host) v = rng();
  DeviceBuffer buf(total), sink(4), count(8);
  CUDA_CHECK(cudaMemcpy(buf.get(), host.data(), total, cudaMemcpyHostToDevice));
  RingProducts P;
  const long long sizes[] = {16, 4096 + 48, 1 << 20, 5 << 20, 3 * 1000 * 16, 7 << 20, 160};
  long long off = 64;
  unsigned want = 0;
  for (long long b : sizes) {
    P.off[P.n] = off, P.bytes[P.n] = b, ++P.n;
    for (long long i = off / 4; i < (off + b) / 4; ++i) want ^= host[size_t(i)];
    off += b + 1024;
  }
  ASSERT_LE(size_t(off), total);
  if (!device_has_bulk_copy()) {  // before sm_90: a clear refusal, not a launch
    EXPECT_THROW(ring_probe(buf.get(), P, 4096, 2, false, sink.as<unsigned>(), count.as<unsigned long long>(), nullptr),
                 Error);
    return;
  }
  for (int chunk : {4096, 16384, 1008})
    for (int stages : {2, 6})
      for (bool bar : {false, true}) {
        ring_probe(buf.get(), P, chunk, stages, bar, sink.as<unsigned>(), count.as<unsigned long long>(), nullptr);
        unsigned got = 0;
        CUDA_CHECK(cudaMemcpy(&got, sink.get(), 4, cudaMemcpyDeviceToHost));
        EXPECT_EQ(got, want) << "chunk " << chunk << " stages " << stages << " barriers " << bar;
      }
  EXPECT_THROW(ring_probe(buf.get(), P, 1000, 4, false, sink.as<unsigned>(), count.as<unsigned long long>(), nullptr),
               Error);
}

// How fast a persistent bulk-copy ring streams the 32 layers' weight matrices of Llama-2-7B (bf16, and
// int4 sizes: a quarter), with and without a grid barrier after each matrix, against one register
// load kernel (warp per row) per matrix: can a persistent decode kernel hide the kernel boundaries?
TEST(CudaQuant, DISABLED_RingStreaming) {
  REQUIRE_GPU();
  const long long mats[4][2] = {{12288, 8192}, {4096, 8192}, {22016, 8192}, {4096, 22016}};  // rows, bf16 row bytes
  const long long layer = 12288LL * 8192 + 4096LL * 8192 + 22016LL * 8192 + 4096LL * 22016;
  DeviceBuffer buf(size_t(32 * layer + 4096)), sink(4), count(8);
  CUDA_CHECK(cudaMemset(buf.get(), 3, buf.size()));
  std::printf("%-6s %-26s %9s %9s %9s\n", "sizes", "variant", "ms", "GB/s", "us/layer");
  for (int div : {1, 4}) {  // bf16, int4 (a quarter of the bytes)
    RingProducts P;
    long long off = 0;
    for (int l = 0; l < 32; ++l)
      for (const auto& m : mats) {
        const long long b = m[0] * m[1] / div;
        P.off[P.n] = off, P.bytes[P.n] = b, ++P.n;
        off += b;
      }
    const double gb = double(off) / 1e9;
    auto row = [&](const char* name, const std::function<void()>& f) {
      const double us = cold_us(f, 5);
      std::printf("%-6s %-26s %9.3f %9.0f %9.2f\n", div == 1 ? "bf16" : "int4", name, us / 1e3, gb / (us * 1e-6),
                  us / 32);
    };
    for (LoadPattern lp : {LoadPattern::kBulk16K, LoadPattern::kBulk32K})
      row(lp == LoadPattern::kBulk16K ? "bulk 16 KB blocks per mat" : "bulk 32 KB blocks per mat", [&] {
        for (int p = 0; p < P.n; ++p) {
          const int rows = int(mats[p % 4][0]), rb = int(mats[p % 4][1] / div);
          load_probe(lp, static_cast<uint8_t*>(buf.get()) + P.off[p], rows, rb, sink.as<unsigned>(), nullptr);
        }
      });
    row("warp/row kernel per mat", [&] {
      for (int p = 0; p < P.n; ++p) {
        const int rows = int(mats[p % 4][0]), rb = int(mats[p % 4][1] / div);
        load_probe(LoadPattern::kWarpRow, static_cast<uint8_t*>(buf.get()) + P.off[p], rows, rb, sink.as<unsigned>(),
                   nullptr);
      }
    });
    const int cfgs[][2] = {{4096, 48}, {8192, 24}, {16384, 12}, {32768, 6}};
    for (const auto& c : cfgs)
      for (bool bar : {false, true}) {
        char name[64];
        std::snprintf(name, sizeof name, "ring %2d KB x %2d%s", c[0] / 1024, c[1], bar ? " barriers" : "");
        row(name, [&] {
          ring_probe(buf.get(), P, c[0], c[1], bar, sink.as<unsigned>(), count.as<unsigned long long>(), nullptr);
        });
      }
    row("ring 16 KB x 12, per mat", [&] {
      for (int p = 0; p < P.n; ++p) {
        RingProducts one;
        one.n = 1, one.off[0] = P.off[p], one.bytes[0] = P.bytes[p];
        ring_probe(buf.get(), one, 16384, 12, false, sink.as<unsigned>(), count.as<unsigned long long>(), nullptr);
      }
    });
  }
}

TEST(CudaQuant, DISABLED_QuantGemvBandwidth) {
  REQUIRE_GPU();
  std::mt19937 rng(1);
  struct Shape { const char* name; int N, K; };
  const Shape shapes[] = {{"qkv", 12288, 4096}, {"o", 4096, 4096}, {"gate_up", 22016, 4096}, {"down", 4096, 11008}};
  const Fmt fmts[] = {{QType::kInt8, 0, true, DType::BF16}, {QType::kInt4, 128, true, DType::F16},
                      {QType::kInt4, 128, false, DType::F16}, {QType::kQ8_0, 0, true, DType::F16},
                      {QType::kQ4_0, 0, true, DType::F16}, {QType::kQ4_1, 0, true, DType::F16},
                      {QType::kQ4_K, 0, true, DType::F16}, {QType::kQ5_K, 0, true, DType::F16},
                      {QType::kQ6_K, 0, true, DType::F16}};
  std::printf("%-22s %-8s %9s %9s %8s   (from a cold L2)\n", "format", "shape", "us", "MB", "GB/s");
  // IGNIS_BW_FORMATS=int8,int4,...: only these (names of type_name); IGNIS_BW_BATCH: B (default 1)
  const char* only = std::getenv("IGNIS_BW_FORMATS");
  const char* eb = std::getenv("IGNIS_BW_BATCH");
  const int B = eb ? std::max(1, std::min(8, std::atoi(eb))) : 1;
  std::printf("batch %d\n", B);
  for (const Fmt& f : fmts)
    for (const Shape& s : shapes) {
      if (is_kquant(f.t) && s.K % 256) continue;
      if (only && ("," + std::string(only) + ",").find("," + std::string(type_name(f.t)) + ",") == std::string::npos)
        continue;
      // Weights: random bytes are valid for every format except where scales must be sane; use the
      // real quantizers on a random row replicated (timing only needs the right byte count).
      TestWeight w;
      make_weight(f.t, s.N, s.K, f.group, f.sym, f.sd, rng, w);
      // IGNIS_BW_TILED=1: int4 in the tiled nibble order (as the decoder runs it with IGNIS_INT4_TILED=1)
      if (f.t == QType::kInt4 && std::getenv("IGNIS_BW_TILED") && *std::getenv("IGNIS_BW_TILED") == '1') {
        DeviceBuffer scratch(size_t(s.N) * s.K / 2);
        tile_int4(w.view, scratch.get(), scratch.size(), nullptr);
        CUDA_CHECK(cudaDeviceSynchronize());
      }
      const double mb = [&] {
        double bytes = 0;
        switch (f.t) {
          case QType::kInt8: bytes = double(s.N) * s.K + 2.0 * s.N; break;
          case QType::kInt4: bytes = double(s.N) * s.K / 2 + double(s.N) * s.K / f.group * (f.sym ? 2 : 3); break;
          case QType::kQ8_0: bytes = double(s.N) * s.K / 32 * 34; break;
          case QType::kQ4_0: bytes = double(s.N) * s.K / 32 * 18; break;
          case QType::kQ4_K: bytes = double(s.N) * s.K / 256 * 144; break;
          case QType::kQ4_1: bytes = double(s.N) * s.K / 32 * 20; break;
          case QType::kQ5_K: bytes = double(s.N) * s.K / 256 * 176; break;
          case QType::kQ6_K: bytes = double(s.N) * s.K / 256 * 210; break;
        }
        return bytes / 1e6;
      }();
      std::vector<float> x = random_vec(size_t(B) * s.K, rng);
      auto dx = upload(DType::BF16, x);
      DeviceBuffer dout(size_t(B) * s.N * 2);
      // a workspace like the decoder's (the bulk-copy kernel splits tiles across blocks with it)
      DeviceBuffer ws(size_t(16) * 8 * s.N * 4), counters(size_t(ceil_div(s.N, 16)) * 4);
      CUDA_CHECK(cudaMemset(counters.get(), 0, counters.size()));
      QGemvArgs a;
      a.W = w.view, a.x = dx.get(), a.B = B, a.out = dout.get();
      a.ws = ws.as<float>(), a.ws_floats = ws.size() / 4, a.counters = counters.as<unsigned>();
      a.n_counters = int(counters.size() / 4);
      const double us = cold_us([&] { gemv_quant(a, nullptr); });
      std::printf("%-22s %-8s %9.1f %9.1f %8.0f\n", fmt_name(f).c_str(), s.name, us, mb, mb * 1e6 / (us * 1e-6) / 1e9);
    }
}

// GGUF Q4_0 blocks repacked into int4 group 32 (how the decoder runs Q4_0 layers): the dequantized
// values equal the CPU's Q4_0 dequantization exactly, in the plain and the fused gate/up row order,
// and the repacked weight's GEMV matches the CPU product.
TEST(CudaQuant, RepackQ4_0IntoInt4) {
  REQUIRE_GPU();
  std::mt19937 rng(21);
  const int rows = 24, K = 384;  // 24 source rows; fused layout: rows 8t..8t+7 -> 16t..16t+7
  TestWeight src;
  make_weight(QType::kQ4_0, rows, K, 0, true, DType::F16, rng, src);  // even rows quantized, odd random bytes
  for (bool il : {false, true}) {
    SCOPED_TRACE(il ? "fused gate/up rows" : "plain rows");
    const int N = il ? 2 * rows : rows;
    QWeight q;
    q.type = QType::kInt4, q.group = 32, q.scale_dtype = DType::F16, q.N = N, q.K = K;
    DeviceBuffer w(size_t(N) * K / 2), sc(qmeta_count(N, K / 32) * 2);
    CUDA_CHECK(cudaMemset(w.get(), 0, w.size()));
    CUDA_CHECK(cudaMemset(sc.get(), 0, sc.size()));
    q.w = w.get(), q.scales = sc.get();
    // in two calls, as the staged upload does (source rows 0..15, then 16..23)
    const size_t rb = size_t(K) / 32 * 18;
    repack_q4_0(src.raw.get(), 16, 0, 0, il, q, nullptr);
    repack_q4_0(src.raw.as<uint8_t>() + 16 * rb, rows - 16, 16, 0, il, q, nullptr);
    DeviceBuffer d(size_t(N) * K * 2);
    dequantize_bf16(q, 0, N, d.get(), nullptr);
    const std::vector<float> got = download(DType::BF16, d.get(), size_t(N) * K);
    int bad = 0;
    for (int r = 0; r < rows; ++r) {
      const int dr = il ? int(swiglu_row_of_gate(r)) : r;
      for (int k = 0; k < K; ++k)
        if (!(got[size_t(dr) * K + k] == bf16_to_f32(f32_to_bf16(src.deq[size_t(r) * K + k])))) ++bad;
    }
    EXPECT_EQ(bad, 0);
    if (il) continue;
    const int B = 3;
    std::vector<float> x = random_vec(size_t(B) * K, rng);
    round_to(DType::BF16, x);
    auto dx = upload(DType::BF16, x);
    DeviceBuffer dout(size_t(B) * N * 4);
    QGemvArgs a;
    a.W = q, a.x = dx.get(), a.B = B, a.epi = GemvEpilogue::kStoreF32, a.out = dout.get();
    gemv_quant(a, nullptr);
    EXPECT_LE(rel_err(download(DType::F32, dout.get(), size_t(B) * N), ref_linear(src.deq, x, B, N, K)), 1e-2);
  }
}

// GGUF Q4_K blocks repacked into int4 group 32 with f16 scales and mins (how the decoder runs Q4_K
// layers): dequantized values within the f16 rounding of d * sc and dmin * m (and bf16 output) of
// the CPU's, rows in both orders, and the tensor-core GEMV (the only kernel for mins) against the CPU
// product of the Q4_K weights.
TEST(CudaQuant, RepackQ4_KIntoInt4) {
  REQUIRE_GPU();
  std::mt19937 rng(23);
  const int rows = 16, K = 512;
  TestWeight src;
  make_weight(QType::kQ4_K, rows, K, 0, true, DType::F16, rng, src);  // even rows quantized, odd random bytes
  for (bool il : {false, true}) {
    SCOPED_TRACE(il ? "fused gate/up rows" : "plain rows");
    const int N = il ? 2 * rows : rows;
    QWeight q;
    q.type = QType::kInt4, q.group = 32, q.scale_dtype = DType::F16, q.N = N, q.K = K;
    DeviceBuffer w(size_t(N) * K / 2), sc(qmeta_count(N, K / 32) * 2), mn(qmeta_count(N, K / 32) * 2);
    for (DeviceBuffer* b : {&w, &sc, &mn}) CUDA_CHECK(cudaMemset(b->get(), 0, b->size()));
    q.w = w.get(), q.scales = sc.get(), q.mins = mn.get();
    const size_t rb = size_t(K) / 256 * 144;
    repack_q4_k(src.raw.get(), 8, 0, 0, il, q, nullptr);  // in two calls, as the staged upload does
    repack_q4_k(src.raw.as<uint8_t>() + 8 * rb, rows - 8, 8, 0, il, q, nullptr);
    DeviceBuffer d(size_t(N) * K * 2);
    dequantize_bf16(q, 0, N, d.get(), nullptr);
    const std::vector<float> got = download(DType::BF16, d.get(), size_t(N) * K);
    int bad = 0;
    std::vector<float> deq(size_t(N) * K, 0.f);  // the CPU values in the destination order
    for (int r = 0; r < rows; ++r) {
      const int dr = il ? int(swiglu_row_of_gate(r)) : r;
      float amax = 0.f;
      for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(src.deq[size_t(r) * K + k]));
      for (int k = 0; k < K; ++k) {
        const float ref = src.deq[size_t(r) * K + k], g = got[size_t(dr) * K + k];
        deq[size_t(dr) * K + k] = ref;
        if (!(std::fabs(g - ref) <= std::ldexp(std::fabs(ref), -8) + std::ldexp(amax, -9))) ++bad;
      }
    }
    EXPECT_EQ(bad, 0);
    for (int B : {1, 8}) {
      std::vector<float> x = random_vec(size_t(B) * K, rng);
      round_to(DType::BF16, x);
      auto dx = upload(DType::BF16, x);
      DeviceBuffer dout(size_t(B) * N * 4);
      QGemvArgs a;
      a.W = q, a.x = dx.get(), a.B = B, a.epi = GemvEpilogue::kStoreF32, a.out = dout.get();
      gemv_quant(a, nullptr);
      EXPECT_LE(rel_err(download(DType::F32, dout.get(), size_t(B) * N), ref_linear(deq, x, B, N, K)), 1e-2) << B;
      a.impl = QGemvImpl::kCudaCore;  // mins: the tensor-core kernel only, a clear error otherwise
      EXPECT_THROW(gemv_quant(a, nullptr), Error);
    }
  }
}
