// AVX2 + FMA kernels for quant.h. This file is compiled with -mavx2 -mfma -mf16c and is
// only entered after the run-time check in using_avx2().
//
// Integer dot products: vpmaddubsw multiplies unsigned weight bytes by signed activation
// bytes and adds neighbours into int16 (no overflow: 2*31*127 < 32767 for 5-bit weights),
// vpmaddwd against ones (or against the K-quants' integer sub-block scales) widens to
// int32. The 32-value formats then scale each block in float (one FMA per block and
// activation row); the K-quants keep integer sums over a whole 256-value super-block.
//
// Tiles: a kernel computes an nr x nc block of outputs (weight rows x activation rows,
// up to 4 x 4). Each weight block is loaded and unpacked once per tile and used against
// the nc activation rows; the 16 accumulators of a full tile do not all fit in the 16
// ymm registers, so some live in L1, which costs load/store ports, not the multiply
// ports. Per block and (row, activation row) pair this is maddubs + madd + cvt + fma.
//
// Panels (prompt processing, 4/5-bit formats): 8 weight rows repacked so that a 32-byte
// vector holds 4 consecutive values of each of the 8 rows. vpmaddubsw against 4 broadcast
// activation bytes then yields partial sums for 8 rows at once; the 8 products of a block
// add up in int16 (4-bit: 8 * 2*15*127 < 32767), so per 32 values x 8 rows x 1 activation
// row it is 8 maddubs + 7 adds + 1 madd + 1 cvt + 2 FMAs: about 2.5x fewer instructions
// per multiply-add than the tiles, and no horizontal sums.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "ops/quant.h"
#include "ops/tile_width.h"

namespace ignis::quant::detail {
using namespace blocks;

namespace {

template <typename T>
inline T load_as(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// [sum(a), sum(b), sum(c), sum(d)]
inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // per 128-bit half: a b c d partial sums
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles in bytes 0..15, high nibbles in 16..31
// (the order of the GGML 32-value blocks).
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m256i hi = _mm256_srli_epi16(v, 4);
  return _mm256_and_si256(_mm256_blend_epi32(v, hi, 0xF0), _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes, 0xFF where the bit is set (byte j <- bit j).
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                                          0x0303030303030303);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), shuf);
  v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
}

// Sum of u8 x s8 products, as 8 float partial sums.
inline __m256 dot_us(__m256i u, __m256i s) {
  const __m256i p16 = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

// ------------------------------------------------------------ 32-value formats x Q8_0

// Each format: block bytes, how to unpack its values to 32 bytes for maddubs, and its
// scales for 4 rows: d (f32) and the offset term m with w = d*q + m (q as unpacked).
// `Signed` formats (Q8_0/Q8_1 weights) use |w| and sign(x, w) instead of an offset.
struct FQ4_0 {
  static constexpr size_t kBytes = sizeof(Q4_0);
  static constexpr int kBits = 4;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i unpack(const uint8_t* b) { return unpack_nibbles(b + 2); }
  static void scales(const uint8_t* const* rows, __m128* d, __m128* m) {
    const __m128i h = _mm_setr_epi16(short(load_as<uint16_t>(rows[0])), short(load_as<uint16_t>(rows[1])),
                                     short(load_as<uint16_t>(rows[2])), short(load_as<uint16_t>(rows[3])), 0, 0,
                                     0, 0);
    *d = _mm_cvtph_ps(h);
    *m = _mm_mul_ps(*d, _mm_set1_ps(-8.f));  // q - 8
  }
};
struct FQ4_1 {
  static constexpr size_t kBytes = sizeof(Q4_1);
  static constexpr int kBits = 4;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i unpack(const uint8_t* b) { return unpack_nibbles(b + 4); }
  static void scales(const uint8_t* const* rows, __m128* d, __m128* m) {
    const __m128i h = _mm_setr_epi32(load_as<int>(rows[0]), load_as<int>(rows[1]), load_as<int>(rows[2]),
                                     load_as<int>(rows[3]));
    // [d0 m0 d1 m1 d2 m2 d3 m3] -> [d0 d1 d2 d3 | m0 m1 m2 m3]
    const __m256 dm = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(h), _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    *d = _mm256_castps256_ps128(dm);
    *m = _mm256_extractf128_ps(dm, 1);
  }
};
struct FQ5_0 {
  static constexpr size_t kBytes = sizeof(Q5_0);
  static constexpr int kBits = 5;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i unpack(const uint8_t* b) {
    const __m256i hb = _mm256_and_si256(bits_to_bytes(load_as<uint32_t>(b + 2)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles(b + 6), hb);
  }
  static void scales(const uint8_t* const* rows, __m128* d, __m128* m) {
    FQ4_0::scales(rows, d, m);
    *m = _mm_mul_ps(*d, _mm_set1_ps(-16.f));  // q - 16
  }
};
struct FQ5_1 {
  static constexpr size_t kBytes = sizeof(Q5_1);
  static constexpr int kBits = 5;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i unpack(const uint8_t* b) {
    const __m256i hb = _mm256_and_si256(bits_to_bytes(load_as<uint32_t>(b + 4)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles(b + 8), hb);
  }
  static void scales(const uint8_t* const* rows, __m128* d, __m128* m) { FQ4_1::scales(rows, d, m); }
};
template <size_t kOffset, size_t kSize>
struct FQ8 {  // Q8_0 (d, qs) and Q8_1 (d, s, qs) weights
  static constexpr size_t kBytes = kSize;
  static constexpr int kBits = 8;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i unpack(const uint8_t* b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kOffset)); }
  static void scales(const uint8_t* const* rows, __m128* d, __m128* m) {
    FQ4_0::scales(rows, d, m);
    *m = _mm_setzero_ps();
  }
};
using FQ8_0 = FQ8<2, sizeof(Q8_0)>;
using FQ8_1 = FQ8<4, sizeof(Q8_1)>;

template <typename F, int NR, int NC>
void tile32(const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, XAux aux, float* y, size_t ldy, int64_t nb) {
  __m256 acc[NR][NC];
  __m128 accm[NC];  // offset/min terms, lanes = weight rows
  for (int c = 0; c < NC; ++c) {
    accm[c] = _mm_setzero_ps();
    for (int r = 0; r < NR; ++r) acc[r][c] = _mm256_setzero_ps();
  }
  const uint8_t* rows[4];
  for (int r = 0; r < 4; ++r) rows[r] = w + size_t(r < NR ? r : 0) * ws;
  alignas(16) float prod[NC][4];
  for (int64_t b = 0; b < nb; ++b) {
    // The next tile's rows (4 rows on), one cache line per block and row: the hardware
    // prefetcher loses track of 4 interleaved short rows (decode streams ~2x faster with this).
    if (NC == 1 && (b * F::kBytes) % 64 < F::kBytes)
      for (int r = 0; r < NR; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(rows[r] + 4 * ws + 64), _MM_HINT_T0);
    __m128 dw, mw;
    F::scales(rows, &dw, &mw);
    for (int c = 0; c < NC; ++c) {
      _mm_store_ps(prod[c], _mm_mul_ps(dw, _mm_set1_ps(aux.d[b * aux.ld + c])));
      if constexpr (F::kHasMin) accm[c] = _mm_fmadd_ps(mw, _mm_set1_ps(aux.s[b * aux.ld + c]), accm[c]);
    }
    for (int r = 0; r < NR; ++r) {
      const __m256i q = F::unpack(rows[r]);
      const __m256i qa = F::kSigned ? _mm256_sign_epi8(q, q) : q;
      for (int c = 0; c < NC; ++c) {
        __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + size_t(c) * xs + size_t(b) * 34 + 2));
        if constexpr (F::kSigned) xv = _mm256_sign_epi8(xv, q);
        acc[r][c] = _mm256_fmadd_ps(dot_us(qa, xv), _mm256_broadcast_ss(&prod[c][r]), acc[r][c]);
      }
    }
    for (int r = 0; r < 4; ++r) rows[r] += F::kBytes;
  }
  for (int c = 0; c < NC; ++c) {
    const __m256 z = _mm256_setzero_ps();
    __m128 s = hsum4(acc[0][c], NR > 1 ? acc[NR > 1 ? 1 : 0][c] : z, NR > 2 ? acc[NR > 2 ? 2 : 0][c] : z,
                     NR > 3 ? acc[NR > 3 ? 3 : 0][c] : z);
    if constexpr (F::kHasMin) s = _mm_add_ps(s, accm[c]);
    alignas(16) float out[4];
    _mm_store_ps(out, s);
    for (int r = 0; r < NR; ++r) y[size_t(c) * ldy + size_t(r)] = out[r];
  }
}

// ------------------------------------------------------------ K-quants x Q8_K

// A weight super-block brought to a common form: 256 unsigned values u (8 x 32 bytes),
// per 32-byte chunk the int16 scales of its two 16-value halves (sc[k]), and for the
// offset/min part 16 int16 coefficients mm[] of the 16 activation block sums, so that
//   dot = dx * (d * sum_k madd(maddubs(u_k, x_k), sc_k) - dm * sum_j mm_j * bsum_j).
struct KBlock {
  __m256i u[8];
  __m256i sc[8];
  __m256i mm;
  float d, dm;
};

// Scales of 16 sub-blocks (int8) -> per chunk k: [s_2k x8, s_2k+1 x8] as int16.
inline void expand_scales16(__m128i s8, __m256i* sc) {
  for (int k = 0; k < 8; ++k) {
    const __m128i sh = _mm_setr_epi8(char(2 * k), char(2 * k), char(2 * k), char(2 * k), char(2 * k), char(2 * k),
                                     char(2 * k), char(2 * k), char(2 * k + 1), char(2 * k + 1), char(2 * k + 1),
                                     char(2 * k + 1), char(2 * k + 1), char(2 * k + 1), char(2 * k + 1),
                                     char(2 * k + 1));
    sc[k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, sh));
  }
}

// 2-bit fields of 32 bytes, shift s, as bytes.
inline __m256i crumbs(__m256i q, int s) {
  return _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(s)), _mm256_set1_epi8(3));
}

void unpack_q2_k(const uint8_t* p, KBlock& kb) {
  const Q2_K& b = *reinterpret_cast<const Q2_K*>(p);
  for (int h = 0; h < 2; ++h) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
    for (int j = 0; j < 4; ++j) kb.u[4 * h + j] = crumbs(q, 2 * j);
  }
  const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  expand_scales16(_mm_and_si128(s, _mm_set1_epi8(0xF)), kb.sc);
  kb.mm = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0xF)));
  kb.d = f16_to_f32(b.d);
  kb.dm = f16_to_f32(b.dmin);
}

void unpack_q3_k(const uint8_t* p, KBlock& kb) {
  const Q3_K& b = *reinterpret_cast<const Q3_K*>(p);
  const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.hmask));
  for (int h = 0; h < 2; ++h) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * h));
    for (int j = 0; j < 4; ++j) {
      // value = q2 - 4 * !hbit; stored here as u = q2 + 4 * hbit in 0..7, offset 4.
      const __m256i bit = _mm256_set1_epi8(char(1 << (4 * h + j)));
      const __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), _mm256_set1_epi8(4));
      kb.u[4 * h + j] = _mm256_or_si256(crumbs(q, 2 * j), hb);
    }
  }
  alignas(16) int8_t sc[16];
  q3k_scales(b.scales, sc);
  const __m128i s8 = _mm_load_si128(reinterpret_cast<const __m128i*>(sc));
  expand_scales16(s8, kb.sc);
  kb.mm = _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2);  // 4 * scale
  kb.d = kb.dm = f16_to_f32(b.d);
}

void k4_scales(const uint8_t* packed, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, packed, &sc[j], &mn[j]);
}

void unpack_q4_k(const uint8_t* p, KBlock& kb) {
  const Q4_K& b = *reinterpret_cast<const Q4_K*>(p);
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    kb.u[2 * c] = _mm256_and_si256(q, _mm256_set1_epi8(0xF));
    kb.u[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0xF));
  }
  uint8_t sc[8], mn[8];
  k4_scales(b.scales, sc, mn);
  for (int k = 0; k < 8; ++k) kb.sc[k] = _mm256_set1_epi16(sc[k]);
  // Each 32-value sub-block j covers activation sums 2j and 2j+1.
  const __m128i m8 = _mm_setr_epi8(char(mn[0]), char(mn[0]), char(mn[1]), char(mn[1]), char(mn[2]), char(mn[2]),
                                   char(mn[3]), char(mn[3]), char(mn[4]), char(mn[4]), char(mn[5]), char(mn[5]),
                                   char(mn[6]), char(mn[6]), char(mn[7]), char(mn[7]));
  kb.mm = _mm256_cvtepu8_epi16(m8);
  kb.d = f16_to_f32(b.d);
  kb.dm = f16_to_f32(b.dmin);
}

void unpack_q5_k(const uint8_t* p, KBlock& kb) {
  const Q5_K& b = *reinterpret_cast<const Q5_K*>(p);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh));
  for (int c = 0; c < 4; ++c) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * c));
    const __m256i b0 = _mm256_set1_epi8(char(1 << (2 * c))), b1 = _mm256_set1_epi8(char(1 << (2 * c + 1)));
    const __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), _mm256_set1_epi8(16));
    const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), _mm256_set1_epi8(16));
    kb.u[2 * c] = _mm256_or_si256(_mm256_and_si256(q, _mm256_set1_epi8(0xF)), h0);
    kb.u[2 * c + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0xF)), h1);
  }
  uint8_t sc[8], mn[8];
  k4_scales(b.scales, sc, mn);
  for (int k = 0; k < 8; ++k) kb.sc[k] = _mm256_set1_epi16(sc[k]);
  const __m128i m8 = _mm_setr_epi8(char(mn[0]), char(mn[0]), char(mn[1]), char(mn[1]), char(mn[2]), char(mn[2]),
                                   char(mn[3]), char(mn[3]), char(mn[4]), char(mn[4]), char(mn[5]), char(mn[5]),
                                   char(mn[6]), char(mn[6]), char(mn[7]), char(mn[7]));
  kb.mm = _mm256_cvtepu8_epi16(m8);
  kb.d = f16_to_f32(b.d);
  kb.dm = f16_to_f32(b.dmin);
}

void unpack_q6_k(const uint8_t* p, KBlock& kb) {
  const Q6_K& b = *reinterpret_cast<const Q6_K*>(p);
  const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(0x30);
  for (int h = 0; h < 2; ++h) {  // values 128h .. 128h+127
    const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
    const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
    // stored 0..63 (= value + 32): offset 32 handled through mm.
    kb.u[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2));
    kb.u[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2));
    kb.u[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2));
    kb.u[4 * h + 3] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2));
  }
  const __m128i s8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  expand_scales16(s8, kb.sc);
  kb.mm = _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 5);  // 32 * scale
  kb.d = kb.dm = f16_to_f32(b.d);
}

template <void (*Unpack)(const uint8_t*, KBlock&), size_t kBytes, int NC>
void tile_k(const uint8_t* w, size_t ws, const uint8_t* x, size_t xs, float* y, size_t ldy, int nr, int64_t nb) {
  KBlock kb;
  for (int r = 0; r < nr; ++r) {
    __m256 acc[NC];
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      Unpack(w + size_t(r) * ws + size_t(b) * kBytes, kb);
      for (int c = 0; c < NC; ++c) {
        const uint8_t* xb = x + size_t(c) * xs + size_t(b) * sizeof(Q8_K);
        __m256i isum = _mm256_setzero_si256();
        for (int k = 0; k < 8; ++k) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 4 + 32 * k));
          isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(kb.u[k], xv), kb.sc[k]));
        }
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 4 + 256));
        const __m256i imin = _mm256_madd_epi16(kb.mm, bs);
        const float dx = load_as<float>(xb);
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dx * kb.d), acc[c]);
        acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_set1_ps(dx * kb.dm), acc[c]);
      }
    }
    for (int c = 0; c < NC; ++c) y[size_t(c) * ldy + size_t(r)] = hsum(acc[c]);
  }
}

// ------------------------------------------------------------ f32 / f16 / bf16 weights x f32

template <DType T>
inline __m256 load8(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else if constexpr (T == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}
template <DType T>
inline float load1(const void* p, int64_t i) {
  if constexpr (T == DType::F32) return static_cast<const float*>(p)[i];
  else if constexpr (T == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  else return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

// 4 weight rows x NC (<= 2) activation rows: weights converted once per 8 values.
template <DType T, int NR, int NC>
void tile_f(const uint8_t* w, size_t ws, const float* x, size_t xs_floats, float* y, size_t ldy, int64_t k) {
  __m256 acc[NR][NC];
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 xv[NC];
    for (int c = 0; c < NC; ++c) xv[c] = _mm256_loadu_ps(x + size_t(c) * xs_floats + i);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = load8<T>(w + size_t(r) * ws, i);
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int c = 0; c < NC; ++c)
    for (int r = 0; r < NR; ++r) {
      float s = hsum(acc[r][c]);
      for (int64_t j = i; j < k; ++j) s += load1<T>(w + size_t(r) * ws, j) * x[size_t(c) * xs_floats + size_t(j)];
      y[size_t(c) * ldy + size_t(r)] = s;
    }
}

// ------------------------------------------------------------ dispatch by tile shape

template <typename F>
void tile32_any(const void* w, size_t ws, const void* x, size_t xs, XAux aux, float* y, size_t ldy, int nr, int nc,
                int64_t k) {
  const auto* wp = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(x);
  const int64_t nb = k / QK;
#define IGNIS_T32(R, C)                                     \
  case (R) * 8 + (C):                                       \
    tile32<F, R, C>(wp, ws, xp, xs, aux, y, ldy, nb);       \
    return;
  switch (nr * 8 + nc) {
    IGNIS_T32(1, 1) IGNIS_T32(1, 2) IGNIS_T32(1, 3) IGNIS_T32(1, 4)
    IGNIS_T32(2, 1) IGNIS_T32(2, 2) IGNIS_T32(2, 3) IGNIS_T32(2, 4)
    IGNIS_T32(3, 1) IGNIS_T32(3, 2) IGNIS_T32(3, 3) IGNIS_T32(3, 4)
    IGNIS_T32(4, 1) IGNIS_T32(4, 2) IGNIS_T32(4, 3) IGNIS_T32(4, 4)
    default: fail("tile32: bad tile ", nr, "x", nc);
  }
#undef IGNIS_T32
}

template <void (*Unpack)(const uint8_t*, KBlock&), size_t kBytes>
void tile_k_any(const void* w, size_t ws, const void* x, size_t xs, XAux, float* y, size_t ldy, int nr, int nc,
                int64_t k) {
  with_tile_width(nc, [&]<int NC>() {
    tile_k<Unpack, kBytes, NC>(static_cast<const uint8_t*>(w), ws, static_cast<const uint8_t*>(x), xs, y, ldy, nr,
                               k / QK_K);
  });
}

template <DType T>
void tile_f_any(const void* w, size_t ws, const void* x, size_t xs, XAux, float* y, size_t ldy, int nr, int nc,
                int64_t k) {
  const auto* wp = static_cast<const uint8_t*>(w);
  const float* xp = static_cast<const float*>(x);
  const size_t xf = xs / 4;
  for (int c = 0; c < nc; c += 2) {
    const bool two = c + 1 < nc;
    const float* xc = xp + size_t(c) * xf;
    float* yc = y + size_t(c) * ldy;
    switch (nr * 2 + (two ? 1 : 0)) {
      case 2: tile_f<T, 1, 1>(wp, ws, xc, xf, yc, ldy, k); break;
      case 3: tile_f<T, 1, 2>(wp, ws, xc, xf, yc, ldy, k); break;
      case 4: tile_f<T, 2, 1>(wp, ws, xc, xf, yc, ldy, k); break;
      case 5: tile_f<T, 2, 2>(wp, ws, xc, xf, yc, ldy, k); break;
      case 6: tile_f<T, 3, 1>(wp, ws, xc, xf, yc, ldy, k); break;
      case 7: tile_f<T, 3, 2>(wp, ws, xc, xf, yc, ldy, k); break;
      case 8: tile_f<T, 4, 1>(wp, ws, xc, xf, yc, ldy, k); break;
      case 9: tile_f<T, 4, 2>(wp, ws, xc, xf, yc, ldy, k); break;
      default: fail("tile_f: bad tile ", nr, "x", nc);
    }
  }
}


// ------------------------------------------------------------ packed panels (prompt processing)

// Panel block layout (320 bytes per 32 values of 8 rows): G[g] for g < 8 = the values
// 4g..4g+3 of rows 0..7 (32 bytes), then d[8] and m[8] as f32 (w = d*q + m, q unsigned).
constexpr size_t kPanelBlock = 8 * 32 + 2 * 8 * sizeof(float);

size_t panel_bytes(int64_t k) { return size_t(k / QK) * kPanelBlock; }

// 8x8 transpose of 32-bit elements: out[g] holds element g of in[0..7].
inline void transpose8x8_epi32(const __m256i* in, __m256i* out) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(in[2 * i], in[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(in[2 * i], in[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int g = 0; g < 4; ++g) {
    out[g] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x20);
    out[g + 4] = _mm256_permute2x128_si256(u[g], u[4 + g], 0x31);
  }
}

template <typename F>
void panel_pack(const void* w, size_t ws, int rows, int64_t k, void* panel) {
  const uint8_t* rp[8];
  for (int r = 0; r < 8; ++r) rp[r] = static_cast<const uint8_t*>(w) + size_t(r < rows ? r : rows - 1) * ws;
  auto* out = static_cast<uint8_t*>(panel);
  for (int64_t b = 0; b < k / QK; ++b, out += kPanelBlock) {
    __m256i R[8], G[8];
    for (int r = 0; r < 8; ++r) R[r] = F::unpack(rp[r] + size_t(b) * F::kBytes);
    transpose8x8_epi32(R, G);
    for (int g = 0; g < 8; ++g) _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * g), G[g]);
    const uint8_t* lo[4] = {rp[0] + size_t(b) * F::kBytes, rp[1] + size_t(b) * F::kBytes,
                            rp[2] + size_t(b) * F::kBytes, rp[3] + size_t(b) * F::kBytes};
    const uint8_t* hi[4] = {rp[4] + size_t(b) * F::kBytes, rp[5] + size_t(b) * F::kBytes,
                            rp[6] + size_t(b) * F::kBytes, rp[7] + size_t(b) * F::kBytes};
    __m128 d0, m0, d1, m1;
    F::scales(lo, &d0, &m0);
    F::scales(hi, &d1, &m1);
    float* sc = reinterpret_cast<float*>(out + 256);
    _mm_storeu_ps(sc, d0);
    _mm_storeu_ps(sc + 4, d1);
    _mm_storeu_ps(sc + 8, m0);
    _mm_storeu_ps(sc + 12, m1);
  }
}

// Panels from an x8 group (Q4_0x8 / Q4_1x8, quant.h): V[h] already holds 4 values of each
// of the 8 rows, low nibbles for G[h] and high nibbles for G[h+4]; no transpose needed.
template <bool kMin>
void panel_pack_x8(const void* group, size_t, int, int64_t k, void* panel) {
  constexpr size_t kHead = kMin ? 32 : 16, kBlock = kHead + 128;
  const auto* in = static_cast<const uint8_t*>(group);
  auto* out = static_cast<uint8_t*>(panel);
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < k / QK; ++b, in += kBlock, out += kPanelBlock) {
    for (int h = 0; h < 4; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + kHead + 32 * h));
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * h), _mm256_and_si256(v, m4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + 32 * (h + 4)), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
    const __m256 m = kMin ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 16)))
                          : _mm256_mul_ps(d, _mm256_set1_ps(-8.f));  // Q4_0: q - 8
    _mm256_store_ps(reinterpret_cast<float*>(out + 256), d);
    _mm256_store_ps(reinterpret_cast<float*>(out + 288), m);
  }
}

inline __m256i bcast4(const uint8_t* p) { return _mm256_set1_epi32(load_as<int>(p)); }

template <typename F, int NC>
void panel_compute(const uint8_t* panel, const uint8_t* x, size_t xs, XAux aux, float* y, size_t ldy, int rows,
                   int64_t nb) {
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b, panel += kPanelBlock) {
    const __m256i* G = reinterpret_cast<const __m256i*>(panel);
    const __m256 dw = _mm256_load_ps(reinterpret_cast<const float*>(panel + 256));
    const __m256 mw = _mm256_load_ps(reinterpret_cast<const float*>(panel + 288));
    for (int c = 0; c < NC; ++c) {
      const uint8_t* xb = x + size_t(c) * xs + size_t(b) * sizeof(Q8_0) + 2;
      // Pairwise sums as the products come, so that few of them are live at once (an
      // array of all 8 made the compiler spill the accumulators to the stack).
      auto mul = [&](int g) { return _mm256_maddubs_epi16(_mm256_load_si256(G + g), bcast4(xb + 4 * g)); };
      __m256i s32;
      if constexpr (F::kBits == 4) {
        // |lane| <= 2*15*127 per product pair: 8 of them still fit in int16.
        const __m256i s01 = _mm256_add_epi16(mul(0), mul(1)), s23 = _mm256_add_epi16(mul(2), mul(3));
        const __m256i s45 = _mm256_add_epi16(mul(4), mul(5)), s67 = _mm256_add_epi16(mul(6), mul(7));
        s32 = _mm256_madd_epi16(_mm256_add_epi16(_mm256_add_epi16(s01, s23), _mm256_add_epi16(s45, s67)), ones);
      } else {  // 5-bit: 2*31*127 per pair, 4 fit in int16
        const __m256i a = _mm256_add_epi16(_mm256_add_epi16(mul(0), mul(1)), _mm256_add_epi16(mul(2), mul(3)));
        const __m256i b2 = _mm256_add_epi16(_mm256_add_epi16(mul(4), mul(5)), _mm256_add_epi16(mul(6), mul(7)));
        s32 = _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(b2, ones));
      }
      const __m256 scale = _mm256_mul_ps(dw, _mm256_broadcast_ss(aux.d + b * aux.ld + c));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), scale, acc[c]);
      acc[c] = _mm256_fmadd_ps(mw, _mm256_broadcast_ss(aux.s + b * aux.ld + c), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) {
    if (rows == 8) {
      _mm256_storeu_ps(y + size_t(c) * ldy, acc[c]);
    } else {
      alignas(32) float out[8];
      _mm256_store_ps(out, acc[c]);
      for (int r = 0; r < rows; ++r) y[size_t(c) * ldy + size_t(r)] = out[r];
    }
  }
}

template <typename F>
void panel_compute_any(const void* panel, const void* x, size_t xs, XAux aux, float* y, size_t ldy, int rows, int nc,
                       int64_t k) {
  with_tile_width(nc, [&]<int NC>() {
    panel_compute<F, NC>(static_cast<const uint8_t*>(panel), static_cast<const uint8_t*>(x), xs, aux, y, ldy, rows,
                         k / QK);
  });
}

template <typename F>
constexpr PanelKernel kPanel = {&panel_bytes, &panel_pack<F>, &panel_compute_any<F>};
// x8 groups: the same panels (4-bit values), packed without a transpose.
template <bool kMin>
constexpr PanelKernel kPanelX8 = {&panel_bytes, &panel_pack_x8<kMin>, &panel_compute_any<FQ4_0>};

// ------------------------------------------------------------ activation quantizers

// roundf (half away from zero), exactly, for |v| < 2^23.
inline __m256 round_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
  const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));  // exact
  const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(sign, _mm256_set1_ps(1.0f))));
}

// 4 x 8 int32 -> 32 int8 in order.
inline __m256i pack_i32x4(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize_q8_0(const float* x, Q8_0* y, int64_t nb) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(x + 8 * j);
      mx = _mm256_max_ps(mx, _mm256_and_ps(v[j], absmask));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[j], idv)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), pack_i32x4(q[0], q[1], q[2], q[3]));
  }
}

void quantize_q8_k(const float* x, Q8_K* y, int64_t nb) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < 32; ++j) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + 8 * j), absmask));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    if (amax == 0) {
      std::memset(&y[i], 0, sizeof(Q8_K));
      continue;
    }
    // The reference keeps the first value of largest magnitude (its sign sets the scale's).
    float mxv = 0;
    const __m256 am = _mm256_set1_ps(amax);
    for (int j = 0; j < 32; ++j) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + 8 * j), absmask), am, _CMP_EQ_OQ));
      if (hit) {
        mxv = x[8 * j + __builtin_ctz(unsigned(hit))];
        break;
      }
    }
    const float iscale = -127.f / mxv;
    const __m256 isv = _mm256_set1_ps(iscale);
    for (int j = 0; j < 8; ++j) {
      __m256i q[4];
      for (int l = 0; l < 4; ++l)
        q[l] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * j + 8 * l), isv)),
                                _mm256_set1_epi32(127));
      const __m256i packed = pack_i32x4(q[0], q[1], q[2], q[3]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + 32 * j), packed);
      // Sums of each 16: widen to int16 and reduce pairs with madd.
      const __m256i s16 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1));
      // s16: 8 int32, lanes 0-3 from bytes 0-15, lanes 4-7 from bytes 16-31.
      const __m128i lo = _mm256_castsi256_si128(s16), hi = _mm256_extracti128_si256(s16, 1);
      const __m128i t = _mm_hadd_epi32(lo, hi);  // [l0+l1, l2+l3, h0+h1, h2+h3]
      const __m128i u = _mm_hadd_epi32(t, t);    // [lo sum, hi sum, ...]
      y[i].bsums[2 * j] = int16_t(_mm_cvtsi128_si32(u));
      y[i].bsums[2 * j + 1] = int16_t(_mm_extract_epi32(u, 1));
    }
    y[i].d = 1 / iscale;
  }
}

}  // namespace

void avx2_quantize_row(DType t, const float* src, void* dst, int64_t n) {
  if (t == DType::Q8_0 && n % QK == 0) return quantize_q8_0(src, static_cast<Q8_0*>(dst), n / QK);
  if (t == DType::Q8_K && n % QK_K == 0) return quantize_q8_k(src, static_cast<Q8_K*>(dst), n / QK_K);
  quantize_row(t, src, dst, n);
}

TileFn avx2_tile(DType t) {
  switch (t) {
    case DType::Q4_0: return &tile32_any<FQ4_0>;
    case DType::Q4_1: return &tile32_any<FQ4_1>;
    case DType::Q5_0: return &tile32_any<FQ5_0>;
    case DType::Q5_1: return &tile32_any<FQ5_1>;
    case DType::Q8_0: return &tile32_any<FQ8_0>;
    case DType::Q8_1: return &tile32_any<FQ8_1>;
    case DType::Q2_K: return &tile_k_any<unpack_q2_k, sizeof(Q2_K)>;
    case DType::Q3_K: return &tile_k_any<unpack_q3_k, sizeof(Q3_K)>;
    case DType::Q4_K: return &tile_k_any<unpack_q4_k, sizeof(Q4_K)>;
    case DType::Q5_K: return &tile_k_any<unpack_q5_k, sizeof(Q5_K)>;
    case DType::Q6_K: return &tile_k_any<unpack_q6_k, sizeof(Q6_K)>;
    case DType::F32: return &tile_f_any<DType::F32>;
    case DType::F16: return &tile_f_any<DType::F16>;
    case DType::BF16: return &tile_f_any<DType::BF16>;
    default: return nullptr;
  }
}

const PanelKernel* avx2_panel(DType t) {
  switch (t) {
    case DType::Q4_0: return &kPanel<FQ4_0>;
    case DType::Q4_1: return &kPanel<FQ4_1>;
    case DType::Q5_0: return &kPanel<FQ5_0>;
    case DType::Q5_1: return &kPanel<FQ5_1>;
    case DType::Q4_0x8: return &kPanelX8<false>;
    case DType::Q4_1x8: return &kPanelX8<true>;
    default: return nullptr;
  }
}

float avx2_vec_dot(DType t, const void* w, const void* x, int64_t n) {
  TileFn f = avx2_tile(t);
  if (!f) return vec_dot_ref(t, w, x, n);
  float y = 0;
  XAux aux;
  if (vec_dot_type(t) == DType::Q8_0) {
    const int64_t nb = n / QK;
    thread_local std::vector<float> buf;
    buf.assign(size_t(nb) * 2 * 5, 0.0f);  // layout ld = 5 (1 row + 4 padding)
    fill_q8_0_aux(x, 0, 1, nb, buf.data(), buf.data() + nb * 5, 5);
    aux = XAux{buf.data(), buf.data() + nb * 5, 5};
  }
  f(w, 0, x, 0, aux, &y, 1, 1, 1, n);
  return y;
}

}  // namespace ignis::quant::detail
