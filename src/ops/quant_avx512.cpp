// AVX-512 VNNI kernels for decode-sized products (1 to 3 activation rows) of the 32-value
// formats. This file is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni and is
// only entered after the run-time check in using_avx512_vnni().
//
// Why: at batch 1 a product reads every weight byte once, so it should run at memory
// bandwidth. The AVX2 tiles need ~8 instructions per block and row (unpack, vpmaddubsw,
// vpmaddwd, convert, FMA with a broadcast scale) and top out near one core's bandwidth;
// vpdpbusd multiplies 64 unsigned weight bytes by 64 signed activation bytes and adds
// groups of 4 into 16 int32 lanes in one instruction, so 4 blocks of a row cost about
// 20 instructions here and both cores can stream at the memory's full rate.
//
// Activation layout ("prepared row", built once per call by prepare_row):
//   qs:  the Q8_0 values of the row. For every group of 4 blocks, 128 bytes:
//        [b0 x0..15 | b1 x0..15 | b2 x0..15 | b3 x0..15] then the same for x16..31, so
//        that the low and the high halves of 4 weight blocks, each loaded as one 64-byte
//        vector, line up with them. A last partial group is zero-padded.
//   ds:  per block [d, s] as f32 with d the activation scale and s = d * sum(qs).
// Weights, per block: w = d * q + m with q unsigned bytes (Q4_0: nibble, m = -8d;
// Q4_1: nibble and its stored m; Q8_0: w + 128, m = -128d), so
//   dot(block) = d * dx * sum(q * xq) + m * sx,
// the first term from vpdpbusd (4 int32 lanes per block, scaled by a permuted vector of
// d*dx), the second from the [d, m] x [dx, sx] product kept in one 8-lane accumulator.
// Memory traffic per row: the weight row once; the prepared activations stay in L1.
// GCC 12's own AVX-512 headers trip -Wuninitialized (their _mm512_undefined_* helpers
// initialise a variable with itself); the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "ops/quant.h"

namespace ignis::quant::detail {
namespace {

using namespace blocks;

template <typename T>
inline T load_as(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// 4 x 16 bytes at p, p + stride, p + 2*stride, p + 3*stride as one 64-byte vector.
inline __m512i load4x16(const uint8_t* p, size_t stride) {
  __m512i z = _mm512_zextsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
  z = _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * stride)), 2);
  return _mm512_inserti32x4(z, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 3 * stride)), 3);
}

// [d0 m0 d1 m1 d2 m2 d3 m3] from 4 f16 scales d_k at p + k*stride and m_k = c * d_k.
inline __m256 scales_d_only(const uint8_t* p, size_t stride, float c) {
  auto dd = [&](int k) {
    const uint32_t h = load_as<uint16_t>(p + size_t(k) * stride);
    return int(h | (h << 16));
  };
  const __m256 d2 = _mm256_cvtph_ps(_mm_setr_epi32(dd(0), dd(1), dd(2), dd(3)));
  return _mm256_mul_ps(d2, _mm256_setr_ps(1, c, 1, c, 1, c, 1, c));
}

// Weight formats: the unsigned values of 4 blocks (low halves, high halves) and their
// scales [d0 m0 d1 m1 d2 m2 d3 m3].
struct VQ4_0 {
  static constexpr size_t kBytes = sizeof(Q4_0);
  static void load4(const uint8_t* b, __m512i* lo, __m512i* hi) {
    const __m512i z = load4x16(b + 2, kBytes), m = _mm512_set1_epi8(0x0F);
    *lo = _mm512_and_si512(z, m);
    *hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m);
  }
  static __m256 scales4(const uint8_t* b) { return scales_d_only(b, kBytes, -8.0f); }
};

struct VQ4_1 {
  static constexpr size_t kBytes = sizeof(Q4_1);
  static void load4(const uint8_t* b, __m512i* lo, __m512i* hi) {
    const __m512i z = load4x16(b + 4, kBytes), m = _mm512_set1_epi8(0x0F);
    *lo = _mm512_and_si512(z, m);
    *hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m);
  }
  static __m256 scales4(const uint8_t* b) {
    // each block starts with its (d, m) pair of f16: 4 dwords -> [d0 m0 d1 m1 ...]
    return _mm256_cvtph_ps(_mm_setr_epi32(load_as<int>(b), load_as<int>(b + kBytes), load_as<int>(b + 2 * kBytes),
                                          load_as<int>(b + 3 * kBytes)));
  }
};

// Q8_0 weights are signed: flipping the top bit gives q = w + 128 as an unsigned byte, and
// the offset comes back out through m = -128 d (the activation sums are already at hand).
struct VQ8_0 {
  static constexpr size_t kBytes = sizeof(Q8_0);
  static void load4(const uint8_t* b, __m512i* lo, __m512i* hi) {
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    *lo = _mm512_xor_si512(load4x16(b + 2, kBytes), flip);
    *hi = _mm512_xor_si512(load4x16(b + 18, kBytes), flip);
  }
  static __m256 scales4(const uint8_t* b) { return scales_d_only(b, kBytes, -128.0f); }
};

// How far ahead (in weight rows) the next rows are prefetched. The hardware prefetcher
// loses track of 4 interleaved short rows; without this a core streams ~5 GB/s, not ~10.
constexpr int kPrefetchRows = 8;

// One group of 4 blocks of R rows against the prepared activations.
template <typename F, int R>
inline void group(const uint8_t* w, size_t ws, const uint8_t* xg, const float* dsg, __m512* acc, __m256* accm) {
  // lane j of the 16 int32 sums belongs to block j / 4; d*dx of block k sits in lane 2k
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
  const __m512i xlo = _mm512_loadu_si512(xg), xhi = _mm512_loadu_si512(xg + 64);
  const __m256 xds = _mm256_loadu_ps(dsg);  // [dx0 sx0 dx1 sx1 ...]
  for (int r = 0; r < R; ++r) {
    const uint8_t* b = w + size_t(r) * ws;
    __m512i lo, hi;
    F::load4(b, &lo, &hi);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi);
    const __m256 p = _mm256_mul_ps(F::scales4(b), xds);  // [d dx, m sx] per block
    accm[r] = _mm256_add_ps(accm[r], p);
    const __m512 sc = _mm512_permutexvar_ps(spread, _mm512_zextps256_ps512(p));
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sc, acc[r]);
  }
}

// y[r] = dot(weight row r, prepared activation row) for r < R (R rows share the
// activation loads; each row has its own accumulators).
template <typename F, int R>
void rows_kernel(const uint8_t* w, size_t ws, const uint8_t* xp, int64_t nb, float* y) {
  const int64_t ng = nb / 4, tail = nb % 4;
  const float* ds = reinterpret_cast<const float*>(xp + size_t((nb + 3) / 4) * 128);
  __m512 acc[R];
  __m256 accm[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    accm[r] = _mm256_setzero_ps();
  }
  const size_t gbytes = 4 * F::kBytes;
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* wg = w + size_t(g) * gbytes;
    for (int r = 0; r < R; ++r)
      for (size_t off = 0; off < gbytes; off += 64)
        _mm_prefetch(reinterpret_cast<const char*>(wg + size_t(r + kPrefetchRows) * ws + off), _MM_HINT_T0);
    group<F, R>(wg, ws, xp + g * 128, ds + g * 8, acc, accm);
  }
  if (tail) {
    // The last, partial group: its blocks copied into a zeroed group (zero scales, so the
    // missing blocks add nothing; the activations are zero-padded too).
    alignas(64) uint8_t pad[R][4 * F::kBytes];
    std::memset(pad, 0, sizeof(pad));
    for (int r = 0; r < R; ++r)
      std::memcpy(pad[r], w + size_t(r) * ws + size_t(ng) * gbytes, size_t(tail) * F::kBytes);
    group<F, R>(&pad[0][0], sizeof(pad[0]), xp + ng * 128, ds + ng * 8, acc, accm);
  }
  for (int r = 0; r < R; ++r) {
    // the odd lanes of accm hold the m * sx terms
    alignas(32) float m8[8];
    _mm256_store_ps(m8, accm[r]);
    y[r] = _mm512_reduce_add_ps(acc[r]) + ((m8[1] + m8[3]) + (m8[5] + m8[7]));
  }
}

template <typename F>
void rows_any(const void* w, size_t ws, int nr, const void* xp, int64_t k, float* y) {
  const auto* p = static_cast<const uint8_t*>(w);
  const auto* x = static_cast<const uint8_t*>(xp);
  const int64_t nb = k / QK;
  int r = 0;
  for (; r + 4 <= nr; r += 4) rows_kernel<F, 4>(p + size_t(r) * ws, ws, x, nb, y + r);
  for (; r < nr; ++r) rows_kernel<F, 1>(p + size_t(r) * ws, ws, x, nb, y + r);
}

// Whole groups of 4 blocks (the last one zero-padded), then [d, s] per padded block.
size_t prepared_bytes(int64_t k) {
  const int64_t ng = (k / QK + 3) / 4;
  return size_t(ng) * 128 + size_t(ng) * 8 * sizeof(float);
}

// Quantizes one row to Q8_0 (bit-identical to quantize_row) and lays it out as above.
void prepare_row(const float* x, int64_t k, void* out) {
  const int64_t nb = k / QK, ng = (nb + 3) / 4;
  auto* dst = static_cast<uint8_t*>(out);
  auto* ds = reinterpret_cast<float*>(dst + size_t(ng) * 128);
  std::memset(dst, 0, prepared_bytes(k));
  for (int64_t g = 0; g < ng; ++g) {
    const int nblk = int(nb - g * 4 < 4 ? nb - g * 4 : 4);
    Q8_0 q[4];
    avx2_quantize_row(DType::Q8_0, x + g * 128, q, int64_t(nblk) * QK);
    uint8_t* o = dst + size_t(g) * 128;
    for (int j = 0; j < nblk; ++j) {
      int sum = 0;
      for (int i = 0; i < QK; ++i) sum += q[j].qs[i];
      const float d = f16_to_f32(q[j].d);
      ds[8 * g + 2 * j] = d;
      ds[8 * g + 2 * j + 1] = d * float(sum);
      std::memcpy(o + 16 * j, q[j].qs, 16);
      std::memcpy(o + 64 + 16 * j, q[j].qs + 16, 16);
    }
  }
}

// ------------------------------------------------------------ packed panels (prompt processing)
//
// 16 weight rows packed per panel, per block of 32 values: G[j] for j < 8 = values
// 4j..4j+3 of rows 0..15 (64 bytes, unsigned), then d[16] and m[16] as f32. Against one
// activation row, vpdpbusd(G[j], broadcast of its 4 activation bytes 4j..4j+3) adds
// partial sums for 16 rows at once straight into int32 lanes: 8 instructions per block
// for 512 multiply-adds, then one convert and two FMAs for the scales. Activations are
// the plain Q8_0 rows with their aux d / s (see quant.h), as for the AVX2 panels.
constexpr int kPanelRows = 16;
constexpr size_t kPanelBlock = 8 * 64 + 2 * kPanelRows * sizeof(float);

size_t panel_bytes(int64_t k) { return size_t(k / QK) * kPanelBlock; }

// Unsigned values q (w = d*q + m) of one block, and its d, m.
inline void unpack_nibbles16(const uint8_t* qs, uint8_t* q) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), m = _mm_set1_epi8(0x0F);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm_and_si128(v, m));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm_and_si128(_mm_srli_epi16(v, 4), m));
}
struct PQ4_0 {
  static constexpr size_t kBytes = sizeof(Q4_0);
  static void unpack(const uint8_t* b, uint8_t* q, float* d, float* m) {
    unpack_nibbles16(b + 2, q);
    *d = _cvtsh_ss(load_as<uint16_t>(b));
    *m = -8.0f * *d;
  }
};
struct PQ4_1 {
  static constexpr size_t kBytes = sizeof(Q4_1);
  static void unpack(const uint8_t* b, uint8_t* q, float* d, float* m) {
    unpack_nibbles16(b + 4, q);
    *d = _cvtsh_ss(load_as<uint16_t>(b));
    *m = _cvtsh_ss(load_as<uint16_t>(b + 2));
  }
};
struct PQ8_0 {
  static constexpr size_t kBytes = sizeof(Q8_0);
  static void unpack(const uint8_t* b, uint8_t* q, float* d, float* m) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_xor_si256(v, _mm256_set1_epi8(char(0x80))));  // w + 128
    *d = _cvtsh_ss(load_as<uint16_t>(b));
    *m = -128.0f * *d;
  }
};

template <typename F>
void panel_pack(const void* w, size_t ws, int rows, int64_t k, void* panel) {
  auto* out = static_cast<uint8_t*>(panel);
  for (int64_t b = 0; b < k / QK; ++b, out += kPanelBlock) {
    float* d = reinterpret_cast<float*>(out + 512);
    for (int r = 0; r < kPanelRows; ++r) {
      // missing rows repeat the last one (their outputs are not stored)
      const uint8_t* blk = static_cast<const uint8_t*>(w) + size_t(r < rows ? r : rows - 1) * ws + size_t(b) * F::kBytes;
      uint8_t q[32];
      F::unpack(blk, q, d + r, d + kPanelRows + r);
      for (int j = 0; j < 8; ++j) std::memcpy(out + 64 * j + 4 * r, q + 4 * j, 4);
    }
  }
}

template <int NC>
void panel_compute(const uint8_t* panel, const uint8_t* x, size_t xs, XAux aux, float* y, size_t ldy, int rows,
                   int64_t nb) {
  __m512 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, panel += kPanelBlock) {
    __m512i s[NC];
    for (int c = 0; c < NC; ++c) s[c] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      const __m512i g = _mm512_load_si512(panel + 64 * j);
      for (int c = 0; c < NC; ++c) {
        const uint8_t* xb = x + size_t(c) * xs + size_t(b) * sizeof(Q8_0) + 2 + 4 * j;
        s[c] = _mm512_dpbusd_epi32(s[c], g, _mm512_set1_epi32(load_as<int>(xb)));
      }
    }
    const __m512 dw = _mm512_load_ps(panel + 512), mw = _mm512_load_ps(panel + 512 + 64);
    for (int c = 0; c < NC; ++c) {
      const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(aux.d[b * aux.ld + c]));
      acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[c]), scale, acc[c]);
      acc[c] = _mm512_fmadd_ps(mw, _mm512_set1_ps(aux.s[b * aux.ld + c]), acc[c]);
    }
  }
  const __mmask16 keep = __mmask16((1u << rows) - 1u);
  for (int c = 0; c < NC; ++c) _mm512_mask_storeu_ps(y + size_t(c) * ldy, keep, acc[c]);
}

void panel_compute_any(const void* panel, const void* x, size_t xs, XAux aux, float* y, size_t ldy, int rows, int nc,
                       int64_t k) {
  const auto* pp = static_cast<const uint8_t*>(panel);
  const auto* xp = static_cast<const uint8_t*>(x);
  switch (nc) {
    case 1: return panel_compute<1>(pp, xp, xs, aux, y, ldy, rows, k / QK);
    case 2: return panel_compute<2>(pp, xp, xs, aux, y, ldy, rows, k / QK);
    case 3: return panel_compute<3>(pp, xp, xs, aux, y, ldy, rows, k / QK);
    case 4: return panel_compute<4>(pp, xp, xs, aux, y, ldy, rows, k / QK);
    default: return;
  }
}

const PanelKernel kPanelQ4_0{&panel_bytes, &panel_pack<PQ4_0>, &panel_compute_any, kPanelRows};
const PanelKernel kPanelQ4_1{&panel_bytes, &panel_pack<PQ4_1>, &panel_compute_any, kPanelRows};
const PanelKernel kPanelQ8_0{&panel_bytes, &panel_pack<PQ8_0>, &panel_compute_any, kPanelRows};

const RowKernel kQ4_0{&prepared_bytes, &prepare_row, &rows_any<VQ4_0>};
const RowKernel kQ4_1{&prepared_bytes, &prepare_row, &rows_any<VQ4_1>};
const RowKernel kQ8_0{&prepared_bytes, &prepare_row, &rows_any<VQ8_0>};

}  // namespace

const RowKernel* avx512_rows(DType t) {
  switch (t) {
    case DType::Q4_0: return &kQ4_0;
    case DType::Q4_1: return &kQ4_1;
    case DType::Q8_0: return &kQ8_0;
    default: return nullptr;
  }
}

const PanelKernel* avx512_panel(DType t) {
  switch (t) {
    case DType::Q4_0: return &kPanelQ4_0;
    case DType::Q4_1: return &kPanelQ4_1;
    case DType::Q8_0: return &kPanelQ8_0;
    default: return nullptr;
  }
}

}  // namespace ignis::quant::detail
