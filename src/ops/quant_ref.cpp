// Scalar reference conversions and dot products for every dtype (see quant.h).
//
// Dequantization follows GGML's reference code operation for operation (same float
// products, same order, no FMA: this file is compiled without -mfma), so values are
// bit-identical to llama.cpp's. Q8_0 / Q8_K quantization (the activation formats) is
// GGML's reference too; the other quantizers are plain round-to-nearest with simple
// min/max scales: valid blocks, used by tests and converters, not tuned for quality.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "ops/quant.h"

namespace ignis::quant {
using namespace blocks;

namespace {

inline float h2f(uint16_t h) { return f16_to_f32(h); }
inline uint16_t f2h(float f) { return f32_to_f16(f); }

// GGML's nearest_int: round half to even via the float mantissa (|x| < 2^22).
inline int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

// ---------------------------------------------------------------- dequantization

void deq_q4_0(const Q4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = h2f(x[i].d);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[j] = float(x0) * d;
      y[j + 16] = float(x1) * d;
    }
  }
}

void deq_q4_1(const Q4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = h2f(x[i].d), m = h2f(x[i].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = float(x[i].qs[j] & 0x0F) * d + m;
      y[j + 16] = float(x[i].qs[j] >> 4) * d + m;
    }
  }
}

void deq_q5_0(const Q5_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = h2f(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10;
      const int h1 = (qh >> (j + 12)) & 0x10;
      y[j] = float(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
      y[j + 16] = float(((x[i].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void deq_q5_1(const Q5_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = h2f(x[i].d), m = h2f(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10;
      const int h1 = (qh >> (j + 12)) & 0x10;
      y[j] = float((x[i].qs[j] & 0x0F) | h0) * d + m;
      y[j + 16] = float((x[i].qs[j] >> 4) | h1) * d + m;
    }
  }
}

void deq_q8_0(const Q8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = h2f(x[i].d);
    for (int j = 0; j < QK; ++j) y[j] = float(x[i].qs[j]) * d;
  }
}

void deq_q8_1(const Q8_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = h2f(x[i].d);
    for (int j = 0; j < QK; ++j) y[j] = float(x[i].qs[j]) * d;
  }
}

void deq_q2_k(const Q2_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d), mn = h2f(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * float(sc & 0xF), ml = mn * float(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void deq_q3_k(const Q3_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d_all = h2f(x[i].d);
    int8_t sc[16];
    q3k_scales(x[i].scales, sc);
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * float(sc[is++]);
          for (int l = 16 * half; l < 16 * half + 16; ++l)
            *y++ = dl * float(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
      }
    }
  }
}

void deq_q4_k(const Q4_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d), mn = h2f(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2) {
      uint8_t sc, m;
      get_scale_min_k4(is, x[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = mn * float(m);
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = mn * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void deq_q5_k(const Q5_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d), mn = h2f(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, ql += 32, is += 2) {
      uint8_t sc, m;
      get_scale_min_k4(is, x[i].scales, &sc, &m);
      const float d1 = d * float(sc), m1 = mn * float(m);
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * float(sc), m2 = mn * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = uint8_t(u1 << 2);
      u2 = uint8_t(u2 << 2);
    }
  }
}

void deq_q6_k(const Q6_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * float(sc[is + 0]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

void deq_q8_k(const Q8_K* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K)
    for (int j = 0; j < QK_K; ++j) y[j] = x[i].d * float(x[i].qs[j]);
}

// ---------------------------------------------------------------- quantization

float absmax_signed(const float* x, int n) {  // the value of largest magnitude (first one)
  float amax = 0, mx = 0;
  for (int j = 0; j < n; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      mx = x[j];
    }
  return mx;
}

void q_q4_0(const float* x, Q4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float d = absmax_signed(x, QK) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, int(int8_t(x[j] * id + 8.5f)));
      const int b = std::min(15, int(int8_t(x[j + 16] * id + 8.5f)));
      y[i].qs[j] = uint8_t(a | (b << 4));
    }
  }
}

void q_q4_1(const float* x, Q4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QK; ++j) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
    const float d = (mx - mn) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    y[i].m = f2h(mn);
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(15, int(int8_t((x[j] - mn) * id + 0.5f)));
      const int b = std::min(15, int(int8_t((x[j + 16] - mn) * id + 0.5f)));
      y[i].qs[j] = uint8_t(a | (b << 4));
    }
  }
}

void q_q5_0(const float* x, Q5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    const float d = absmax_signed(x, QK) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(31, int(int8_t(x[j] * id + 16.5f)));
      const int b = std::min(31, int(int8_t(x[j + 16] * id + 16.5f)));
      y[i].qs[j] = uint8_t((a & 0xF) | ((b & 0xF) << 4));
      qh |= uint32_t((a & 0x10) >> 4) << j;
      qh |= uint32_t((b & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void q_q5_1(const float* x, Q5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < QK; ++j) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
    const float d = (mx - mn) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    y[i].m = f2h(mn);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int a = std::min(31, int((x[j] - mn) * id + 0.5f));
      const int b = std::min(31, int((x[j + 16] - mn) * id + 0.5f));
      y[i].qs[j] = uint8_t((a & 0xF) | ((b & 0xF) << 4));
      qh |= uint32_t((a & 0x10) >> 4) << j;
      qh |= uint32_t((b & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(y[i].qh, &qh, 4);
  }
}

void q_q8_0(const float* x, Q8_0* y, int64_t nb) {  // GGML's reference, exactly
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    for (int j = 0; j < QK; ++j) y[i].qs[j] = int8_t(std::roundf(x[j] * id));
  }
}

void q_q8_1(const float* x, Q8_1* y, int64_t nb) {  // GGML's reference, exactly
  for (int64_t i = 0; i < nb; ++i, x += QK) {
    float amax = 0.0f;
    for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = f2h(d);
    int sum = 0;
    for (int j = 0; j < QK; ++j) {
      y[i].qs[j] = int8_t(std::roundf(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = f2h(float(sum) * d);
  }
}

void q_q8_k(const float* x, Q8_K* y, int64_t nb) {  // GGML's reference, exactly
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    float mx = 0, amax = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        mx = x[j];
      }
    }
    if (amax == 0) {
      y[i].d = 0;
      std::memset(y[i].qs, 0, sizeof(y[i].qs));
      std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
      continue;
    }
    const float iscale = -127.f / mx;
    for (int j = 0; j < QK_K; ++j) y[i].qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[j * 16 + l];
      y[i].bsums[j] = int16_t(sum);
    }
    y[i].d = 1 / iscale;
  }
}

// K-quants with a min ("x = d*sc*q - dmin*m"): per sub-block of `sub` values, the range
// [min(0, lo), hi] is split into nmax steps; scales and mins are then quantized to
// `sbits` bits against the block's largest, and q re-derived from the stored scales.
struct AsymK {
  float d, dmin;
  uint8_t sc[16], m[16];
  uint8_t q[QK_K];
};
AsymK quant_asym(const float* x, int sub, int nmax, int smax) {
  AsymK r{};
  const int ns = QK_K / sub;
  float scale[16], mins[16], max_scale = 0, max_min = 0;
  for (int j = 0; j < ns; ++j) {
    float lo = x[j * sub], hi = lo;
    for (int l = 1; l < sub; ++l) lo = std::min(lo, x[j * sub + l]), hi = std::max(hi, x[j * sub + l]);
    lo = std::min(lo, 0.0f);
    scale[j] = (hi - lo) / float(nmax);
    mins[j] = -lo;
    max_scale = std::max(max_scale, scale[j]);
    max_min = std::max(max_min, mins[j]);
  }
  r.d = max_scale / float(smax);
  r.dmin = max_min / float(smax);
  // Store as fp16 first so q is derived from the scales a reader will see.
  const float d = h2f(f2h(r.d)), dmin = h2f(f2h(r.dmin));
  for (int j = 0; j < ns; ++j) {
    // Round the scale up so the top of the range stays reachable with q <= nmax.
    r.sc[j] = uint8_t(d > 0 ? std::clamp(int(std::ceil(scale[j] / d)), 0, smax) : 0);
    r.m[j] = uint8_t(dmin > 0 ? std::clamp(nearest_int(mins[j] / dmin), 0, smax) : 0);
    const float ds = d * float(r.sc[j]), dm = dmin * float(r.m[j]);
    for (int l = 0; l < sub; ++l) {
      const int q = ds > 0 ? nearest_int((x[j * sub + l] + dm) / ds) : 0;
      r.q[j * sub + l] = uint8_t(std::clamp(q, 0, nmax));
    }
  }
  return r;
}

// K-quants without a min ("x = d*sc*q"), q in [-qneg, qneg-1]: sub-blocks of 16, the
// value of largest magnitude maps to -qneg; scales are signed, `smax` = largest |scale|.
struct SymK {
  float d;
  int8_t sc[16];
  int8_t q[QK_K];
};
SymK quant_sym(const float* x, int qneg, int smax) {
  SymK r{};
  float scale[16], amax = 0;
  for (int j = 0; j < 16; ++j) {
    scale[j] = absmax_signed(x + 16 * j, 16) / float(-qneg);
    amax = std::max(amax, std::fabs(scale[j]));
  }
  r.d = amax / float(smax);
  const float d = h2f(f2h(r.d));
  for (int j = 0; j < 16; ++j) {
    r.sc[j] = int8_t(d > 0 ? std::clamp(nearest_int(scale[j] / d), -smax, smax) : 0);
    const float ds = d * float(r.sc[j]);
    for (int l = 0; l < 16; ++l) {
      const int q = ds != 0 ? nearest_int(x[16 * j + l] / ds) : 0;
      r.q[16 * j + l] = int8_t(std::clamp(q, -qneg, qneg - 1));
    }
  }
  return r;
}

void pack_scales_k4(const uint8_t* sc, const uint8_t* m, uint8_t* out) {  // inverse of get_scale_min_k4
  for (int j = 0; j < 4; ++j) {
    out[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    out[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

void q_q2_k(const float* x, Q2_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const AsymK r = quant_asym(x, 16, 3, 15);
    y[i].d = f2h(r.d);
    y[i].dmin = f2h(r.dmin);
    for (int j = 0; j < 16; ++j) y[i].scales[j] = uint8_t(r.sc[j] | (r.m[j] << 4));
    for (int n = 0; n < QK_K; n += 128)
      for (int l = 0; l < 32; ++l)
        y[i].qs[n / 4 + l] = uint8_t(r.q[n + l] | (r.q[n + l + 32] << 2) | (r.q[n + l + 64] << 4) |
                                     (r.q[n + l + 96] << 6));
  }
}

void q_q3_k(const float* x, Q3_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const SymK r = quant_sym(x, 4, 31);
    y[i].d = f2h(r.d);
    std::memset(y[i].scales, 0, 12);
    for (int j = 0; j < 16; ++j) {
      const int s = r.sc[j] + 32;  // 0..63
      y[i].scales[j & 7] |= uint8_t((s & 0xF) << (j < 8 ? 0 : 4));
      y[i].scales[8 + (j & 3)] |= uint8_t((s >> 4) << (2 * (j / 4)));
    }
    std::memset(y[i].hmask, 0, 32);
    std::memset(y[i].qs, 0, 64);
    for (int n = 0; n < QK_K; n += 128)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l) {
          const int v = r.q[n + 32 * j + l] + 4;  // 0..7
          y[i].qs[n / 4 + l] |= uint8_t((v & 3) << (2 * j));
          if (v & 4) y[i].hmask[l] |= uint8_t(1 << (n / 32 + j));
        }
  }
}

void q_q4_k(const float* x, Q4_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const AsymK r = quant_asym(x, 32, 15, 63);
    y[i].d = f2h(r.d);
    y[i].dmin = f2h(r.dmin);
    pack_scales_k4(r.sc, r.m, y[i].scales);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) y[i].qs[32 * c + l] = uint8_t(r.q[64 * c + l] | (r.q[64 * c + 32 + l] << 4));
  }
}

void q_q5_k(const float* x, Q5_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const AsymK r = quant_asym(x, 32, 31, 63);
    y[i].d = f2h(r.d);
    y[i].dmin = f2h(r.dmin);
    pack_scales_k4(r.sc, r.m, y[i].scales);
    std::memset(y[i].qh, 0, 32);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const int a = r.q[64 * c + l], b = r.q[64 * c + 32 + l];
        y[i].qs[32 * c + l] = uint8_t((a & 0xF) | ((b & 0xF) << 4));
        y[i].qh[l] |= uint8_t(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
      }
  }
}

void q_q6_k(const float* x, Q6_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const SymK r = quant_sym(x, 32, 127);
    y[i].d = f2h(r.d);
    for (int j = 0; j < 16; ++j) y[i].scales[j] = r.sc[j];
    for (int n = 0; n < QK_K; n += 128)
      for (int l = 0; l < 32; ++l) {
        int v[4];
        for (int k = 0; k < 4; ++k) v[k] = r.q[n + l + 32 * k] + 32;  // 0..63
        y[i].ql[n / 2 + l] = uint8_t((v[0] & 0xF) | ((v[2] & 0xF) << 4));
        y[i].ql[n / 2 + l + 32] = uint8_t((v[1] & 0xF) | ((v[3] & 0xF) << 4));
        y[i].qh[n / 4 + l] = uint8_t((v[0] >> 4) | ((v[1] >> 4) << 2) | ((v[2] >> 4) << 4) | ((v[3] >> 4) << 6));
      }
  }
}

// ---------------------------------------------------------------- dot products (scalar)

// Legacy 32-value formats times Q8_0: the weight block's integer values (q) and the
// affine map x = d*q + m (m = 0 for the symmetric formats).
struct Unpacked32 {
  int8_t q[QK];
  float d, m;
};
template <typename B>
Unpacked32 unpack32(const B& b);
template <>
Unpacked32 unpack32(const Q4_0& b) {
  Unpacked32 u;
  for (int j = 0; j < 16; ++j) u.q[j] = int8_t((b.qs[j] & 0xF) - 8), u.q[j + 16] = int8_t((b.qs[j] >> 4) - 8);
  u.d = h2f(b.d), u.m = 0;
  return u;
}
template <>
Unpacked32 unpack32(const Q4_1& b) {
  Unpacked32 u;
  for (int j = 0; j < 16; ++j) u.q[j] = int8_t(b.qs[j] & 0xF), u.q[j + 16] = int8_t(b.qs[j] >> 4);
  u.d = h2f(b.d), u.m = h2f(b.m);
  return u;
}
template <>
Unpacked32 unpack32(const Q5_0& b) {
  Unpacked32 u;
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    u.q[j] = int8_t(((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
    u.q[j + 16] = int8_t(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
  u.d = h2f(b.d), u.m = 0;
  return u;
}
template <>
Unpacked32 unpack32(const Q5_1& b) {
  Unpacked32 u;
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    u.q[j] = int8_t((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4));
    u.q[j + 16] = int8_t((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
  u.d = h2f(b.d), u.m = h2f(b.m);
  return u;
}
template <>
Unpacked32 unpack32(const Q8_0& b) {
  Unpacked32 u;
  std::memcpy(u.q, b.qs, QK);
  u.d = h2f(b.d), u.m = 0;
  return u;
}
template <>
Unpacked32 unpack32(const Q8_1& b) {
  Unpacked32 u;
  std::memcpy(u.q, b.qs, QK);
  u.d = h2f(b.d), u.m = 0;
  return u;
}

template <typename B>
float dot32(const void* w, const void* xv, int64_t n) {
  const B* wb = static_cast<const B*>(w);
  const Q8_0* xb = static_cast<const Q8_0*>(xv);
  float sum = 0;
  for (int64_t i = 0; i < n / QK; ++i) {
    const Unpacked32 u = unpack32(wb[i]);
    int sumi = 0, sumx = 0;
    for (int j = 0; j < QK; ++j) sumi += u.q[j] * xb[i].qs[j], sumx += xb[i].qs[j];
    const float dx = h2f(xb[i].d);
    sum += (u.d * dx) * float(sumi) + (u.m * dx) * float(sumx);
  }
  return sum;
}

// K-quants times Q8_K: each weight block as integer values q[256], per-16-value scales
// sc[] and mins mn[] (x = d*sc*q - dmin*mn), so the dot is
//   dx * (d * sum_j sc_j * (q . qx)_j  -  dmin * sum_j mn_j * bsum_j).
struct UnpackedK {
  int8_t q[QK_K];
  int sc[16], mn[16];
  float d, dmin;
};
void unpack_k(DType t, const uint8_t* p, UnpackedK& u) {
  std::fill(std::begin(u.mn), std::end(u.mn), 0);
  u.dmin = 0;
  switch (t) {
    case DType::Q2_K: {
      const auto& b = *reinterpret_cast<const Q2_K*>(p);
      for (int n = 0; n < QK_K; n += 128)
        for (int j = 0; j < 4; ++j)
          for (int l = 0; l < 32; ++l) u.q[n + 32 * j + l] = int8_t((b.qs[n / 4 + l] >> (2 * j)) & 3);
      for (int j = 0; j < 16; ++j) u.sc[j] = b.scales[j] & 0xF, u.mn[j] = b.scales[j] >> 4;
      u.d = h2f(b.d), u.dmin = h2f(b.dmin);
      break;
    }
    case DType::Q3_K: {
      const auto& b = *reinterpret_cast<const Q3_K*>(p);
      for (int n = 0; n < QK_K; n += 128)
        for (int j = 0; j < 4; ++j)
          for (int l = 0; l < 32; ++l)
            u.q[n + 32 * j + l] = int8_t(((b.qs[n / 4 + l] >> (2 * j)) & 3) -
                                         ((b.hmask[l] >> (n / 32 + j)) & 1 ? 0 : 4));
      int8_t sc[16];
      q3k_scales(b.scales, sc);
      for (int j = 0; j < 16; ++j) u.sc[j] = sc[j];
      u.d = h2f(b.d);
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = t == DType::Q5_K;
      const uint8_t* scales = five ? reinterpret_cast<const Q5_K*>(p)->scales : reinterpret_cast<const Q4_K*>(p)->scales;
      const uint8_t* qs = five ? reinterpret_cast<const Q5_K*>(p)->qs : reinterpret_cast<const Q4_K*>(p)->qs;
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          int a = qs[32 * c + l] & 0xF, b = qs[32 * c + l] >> 4;
          if (five) {
            const uint8_t h = reinterpret_cast<const Q5_K*>(p)->qh[l];
            a |= ((h >> (2 * c)) & 1) << 4;
            b |= ((h >> (2 * c + 1)) & 1) << 4;
          }
          u.q[64 * c + l] = int8_t(a), u.q[64 * c + 32 + l] = int8_t(b);
        }
      for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        u.sc[2 * j] = u.sc[2 * j + 1] = sc;
        u.mn[2 * j] = u.mn[2 * j + 1] = m;
      }
      uint16_t dd[2];
      std::memcpy(dd, p, 4);
      u.d = h2f(dd[0]), u.dmin = h2f(dd[1]);
      break;
    }
    case DType::Q6_K: {
      const auto& b = *reinterpret_cast<const Q6_K*>(p);
      for (int n = 0; n < QK_K; n += 128)
        for (int l = 0; l < 32; ++l) {
          const uint8_t* ql = b.ql + n / 2;
          const uint8_t h = b.qh[n / 4 + l];
          u.q[n + l] = int8_t(((ql[l] & 0xF) | ((h & 3) << 4)) - 32);
          u.q[n + l + 32] = int8_t(((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32);
          u.q[n + l + 64] = int8_t(((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32);
          u.q[n + l + 96] = int8_t(((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32);
        }
      for (int j = 0; j < 16; ++j) u.sc[j] = b.scales[j];
      u.d = h2f(b.d);
      break;
    }
    default:
      fail("unpack_k: not a K-quant: ", dtype_name(t));
  }
}

float dot_k(DType t, const void* w, const void* xv, int64_t n) {
  const auto* wp = static_cast<const uint8_t*>(w);
  const Q8_K* xb = static_cast<const Q8_K*>(xv);
  const size_t bb = dtype_info(t).block_bytes;
  float sum = 0;
  UnpackedK u;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    unpack_k(t, wp + size_t(i) * bb, u);
    int sumi = 0, summ = 0;
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += u.q[16 * j + l] * xb[i].qs[16 * j + l];
      sumi += u.sc[j] * s;
      summ += u.mn[j] * xb[i].bsums[j];
    }
    sum += xb[i].d * (u.d * float(sumi) - u.dmin * float(summ));
  }
  return sum;
}

float dot_float(DType t, const void* w, const float* x, int64_t n) {
  float sum = 0;
  if (t == DType::F32) {
    const float* a = static_cast<const float*>(w);
    for (int64_t i = 0; i < n; ++i) sum += a[i] * x[i];
  } else {
    const uint16_t* a = static_cast<const uint16_t*>(w);
    const bool bf = t == DType::BF16;
    for (int64_t i = 0; i < n; ++i) sum += (bf ? bf16_to_f32(a[i]) : f16_to_f32(a[i])) * x[i];
  }
  return sum;
}

void check_row(DType t, int64_t n) {
  IGNIS_CHECK(t != DType::I32 && t != DType::I8 && size_t(t) < size_t(DType::kCount),
              "quant: unsupported dtype ", dtype_name(t));
  const int64_t bs = dtype_info(t).block_size;
  IGNIS_CHECK(n >= 0 && n % bs == 0, "quant: a row of ", n, " values is not a whole number of ", dtype_name(t),
              " blocks (", bs, " values each)");
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n);
  const int64_t nb = n / dtype_info(t).block_size;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      break;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      break;
    }
    case DType::Q4_0: deq_q4_0(static_cast<const Q4_0*>(src), dst, nb); break;
    case DType::Q4_1: deq_q4_1(static_cast<const Q4_1*>(src), dst, nb); break;
    case DType::Q5_0: deq_q5_0(static_cast<const Q5_0*>(src), dst, nb); break;
    case DType::Q5_1: deq_q5_1(static_cast<const Q5_1*>(src), dst, nb); break;
    case DType::Q8_0: deq_q8_0(static_cast<const Q8_0*>(src), dst, nb); break;
    case DType::Q8_1: deq_q8_1(static_cast<const Q8_1*>(src), dst, nb); break;
    case DType::Q2_K: deq_q2_k(static_cast<const Q2_K*>(src), dst, nb); break;
    case DType::Q3_K: deq_q3_k(static_cast<const Q3_K*>(src), dst, nb); break;
    case DType::Q4_K: deq_q4_k(static_cast<const Q4_K*>(src), dst, nb); break;
    case DType::Q5_K: deq_q5_k(static_cast<const Q5_K*>(src), dst, nb); break;
    case DType::Q6_K: deq_q6_k(static_cast<const Q6_K*>(src), dst, nb); break;
    case DType::Q8_K: deq_q8_k(static_cast<const Q8_K*>(src), dst, nb); break;
    default: fail("dequantize_row: unsupported dtype ", dtype_name(t));
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n);
  const int64_t nb = n / dtype_info(t).block_size;
  switch (t) {
    case DType::F32: std::memcpy(dst, src, size_t(n) * 4); break;
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      break;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      break;
    }
    case DType::Q4_0: q_q4_0(src, static_cast<Q4_0*>(dst), nb); break;
    case DType::Q4_1: q_q4_1(src, static_cast<Q4_1*>(dst), nb); break;
    case DType::Q5_0: q_q5_0(src, static_cast<Q5_0*>(dst), nb); break;
    case DType::Q5_1: q_q5_1(src, static_cast<Q5_1*>(dst), nb); break;
    case DType::Q8_0: q_q8_0(src, static_cast<Q8_0*>(dst), nb); break;
    case DType::Q8_1: q_q8_1(src, static_cast<Q8_1*>(dst), nb); break;
    case DType::Q2_K: q_q2_k(src, static_cast<Q2_K*>(dst), nb); break;
    case DType::Q3_K: q_q3_k(src, static_cast<Q3_K*>(dst), nb); break;
    case DType::Q4_K: q_q4_k(src, static_cast<Q4_K*>(dst), nb); break;
    case DType::Q5_K: q_q5_k(src, static_cast<Q5_K*>(dst), nb); break;
    case DType::Q6_K: q_q6_k(src, static_cast<Q6_K*>(dst), nb); break;
    case DType::Q8_K: q_q8_k(src, static_cast<Q8_K*>(dst), nb); break;
    default: fail("quantize_row: unsupported dtype ", dtype_name(t));
  }
}

DType vec_dot_type(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return DType::F32;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q8_1:
    case DType::Q4_0x8:
    case DType::Q4_1x8:
    case DType::Q8_0x8: return DType::Q8_0;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return DType::Q8_K;
    default: fail("quant: no matrix product for weights of type ", dtype_name(t));
  }
}

float vec_dot_ref(DType t, const void* w, const void* x, int64_t n) {
  check_row(t, n);
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return dot_float(t, w, static_cast<const float*>(x), n);
    case DType::Q4_0: return dot32<Q4_0>(w, x, n);
    case DType::Q4_1: return dot32<Q4_1>(w, x, n);
    case DType::Q5_0: return dot32<Q5_0>(w, x, n);
    case DType::Q5_1: return dot32<Q5_1>(w, x, n);
    case DType::Q8_0: return dot32<Q8_0>(w, x, n);
    case DType::Q8_1: return dot32<Q8_1>(w, x, n);
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return dot_k(t, w, x, n);
    default: fail("vec_dot: no dot product for weights of type ", dtype_name(t));
  }
}

}  // namespace ignis::quant
