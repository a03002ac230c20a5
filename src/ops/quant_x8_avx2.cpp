// AVX2 decode kernels for the x8 weight layouts (quant.h): one group of 8 interleaved
// weight rows against 1 to 4 activation rows quantized to Q8_0. Compiled with -mavx2 -mfma
// -mf16c; only entered after the run-time check in using_avx2().
//
// What one block (32 values of 8 rows) costs, per activation row:
//   4-bit: 4 loads of V, 4 ands + 4 shifts + 4 ands give G[0..7] (4 values of each row),
//          shared by all activation rows; then 8 vpmaddubsw against 4 broadcast activation
//          bytes each, 7 int16 adds (8 * 2*15*127 = 30480 fits), 1 vpmaddwd, 1 convert
//          and 2 FMAs (the d*dx scale, and the offset/min through s = dx*sum(x)).
//   8-bit: per G: load, abs, sign the activations by the weights, vpmaddubsw, vpmaddwd
//          (2*127*127 per pair leaves no room to add two int16 results), add.
// That is ~5.5 (4-bit) and ~7.5 (8-bit) instructions per weight row and block against
// ~12 and ~11 for the plain-layout tiles, and the 8 row sums come out in the 8 lanes of
// one register: no horizontal sums. Memory traffic is the same (the layouts have the same
// size), and the group's bytes are read in one forward sweep, which the hardware
// prefetcher follows.
#include <immintrin.h>

#include <cstring>

#include "core/error.h"
#include "ops/quant.h"
#include "ops/tile_width.h"

namespace ignis::quant::detail {
using namespace blocks;

namespace {

inline __m256i bcast4(const uint8_t* p) {
  int v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256 load_f16x8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline void store_rows(const __m256 v, float* y, int rows) {
  if (rows == 8) {
    _mm256_storeu_ps(y, v);
    return;
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, v);
  for (int r = 0; r < rows; ++r) y[r] = out[r];
}

// Q4_0x8 (kMin = false: w = d*(q - 8)) and Q4_1x8 (kMin = true: w = d*q + m).
template <bool kMin, int NC>
void x8_q4(const uint8_t* group, const uint8_t* x, size_t xs, XAux aux, float* y, size_t ldy, int rows, int64_t nb) {
  constexpr size_t kHead = kMin ? 32 : 16, kBlock = kHead + 128;
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, group += kBlock) {
    const __m256 dw = load_f16x8(group);
    const __m256 mw = kMin ? load_f16x8(group + 16) : _mm256_mul_ps(dw, _mm256_set1_ps(-8.f));
    __m256i G[8];
    for (int h = 0; h < 4; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + kHead + 32 * h));
      G[h] = _mm256_and_si256(v, m4);
      G[h + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    for (int c = 0; c < NC; ++c) {
      const uint8_t* xb = x + size_t(c) * xs + size_t(b) * sizeof(Q8_0) + 2;
      __m256i p[8];
      for (int g = 0; g < 8; ++g) p[g] = _mm256_maddubs_epi16(G[g], bcast4(xb + 4 * g));
      const __m256i s16 = _mm256_add_epi16(_mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3])),
                                           _mm256_add_epi16(_mm256_add_epi16(p[4], p[5]), _mm256_add_epi16(p[6], p[7])));
      const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
      acc[c] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_set1_ps(aux.d[b * aux.ld + c])), acc[c]);
      acc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(aux.s[b * aux.ld + c]), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) store_rows(acc[c], y + size_t(c) * ldy, rows);
}

// Q8_0x8: signed weights; vpmaddubsw takes |w| and the activations carrying w's sign.
template <int NC>
void x8_q8(const uint8_t* group, const uint8_t* x, size_t xs, XAux aux, float* y, size_t ldy, int rows, int64_t nb) {
  constexpr size_t kBlock = 16 + 256;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b, group += kBlock) {
    const __m256 dw = load_f16x8(group);
    __m256i s32[NC];
    for (int c = 0; c < NC; ++c) s32[c] = _mm256_setzero_si256();
    for (int g = 0; g < 8; ++g) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + 16 + 32 * g));
      const __m256i aw = _mm256_sign_epi8(w, w);
      for (int c = 0; c < NC; ++c) {
        const __m256i xv = bcast4(x + size_t(c) * xs + size_t(b) * sizeof(Q8_0) + 2 + 4 * g);
        const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, w));
        s32[c] = _mm256_add_epi32(s32[c], _mm256_madd_epi16(p, ones));
      }
    }
    for (int c = 0; c < NC; ++c)
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[c]), _mm256_mul_ps(dw, _mm256_set1_ps(aux.d[b * aux.ld + c])),
                               acc[c]);
  }
  for (int c = 0; c < NC; ++c) store_rows(acc[c], y + size_t(c) * ldy, rows);
}

template <bool kMin>
void x8_q4_any(const void* group, const void* x, size_t xs, XAux aux, float* y, size_t ldy, int rows, int nc,
               int64_t k) {
  with_tile_width(nc, [&]<int NC>() {
    x8_q4<kMin, NC>(static_cast<const uint8_t*>(group), static_cast<const uint8_t*>(x), xs, aux, y, ldy, rows, k / QK);
  });
}

void x8_q8_any(const void* group, const void* x, size_t xs, XAux aux, float* y, size_t ldy, int rows, int nc,
               int64_t k) {
  with_tile_width(nc, [&]<int NC>() {
    x8_q8<NC>(static_cast<const uint8_t*>(group), static_cast<const uint8_t*>(x), xs, aux, y, ldy, rows, k / QK);
  });
}

}  // namespace

X8Fn avx2_x8(DType packed) {
  switch (packed) {
    case DType::Q4_0x8: return &x8_q4_any<false>;
    case DType::Q4_1x8: return &x8_q4_any<true>;
    case DType::Q8_0x8: return &x8_q8_any;
    default: return nullptr;
  }
}

}  // namespace ignis::quant::detail
