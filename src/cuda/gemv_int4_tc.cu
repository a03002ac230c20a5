// Tensor-core GEMV for int4 group-wise weights (groups of 32, 64, 128 or a multiple), decode B = 1..8:
// y[B, N] = x[B, K] W^T, W = (q - z) * s per (row, group), x bf16, fp32 accumulation.
//
// Why: the CUDA-core int4 kernel (gemv_quant.cu) spends ~4.7 instructions per weight (unpack,
// magic-number conversion, FMA) and B FMAs per weight at batch B, so it is bound by instruction
// issue, not by memory. Here the integers become bf16 two at a time and the tensor cores do the
// multiply-adds for all B rows at once: ~1.4 instructions per weight, independent of B.
//
// Dequantization without conversions: OR-ing a nibble into the mantissa of bf16 128.0 (0x4300)
// gives exactly 128 + q (bf16 holds 128..255 exactly), so one LOP3 turns two nibbles 16 bits
// apart into the bf16 pair (128 + q_a, 128 + q_b), and one bf16x2 subtraction of (128 + z) gives
// the exact small integers q - z. The group scale is applied to the fp32 mma result: a 128-k step
// never crosses a group, so scale * sum(q x) is exact up to fp32 rounding.
//
// Fragments (mma.m16n8k16, lane g = lane / 4, c = lane % 4): a warp owns a tile of 16 rows and
// walks K in steps of 128; lane (g, c) loads 16 bytes (32 nibbles, k = 128 s + 32 c + 0..31) of rows
// g and g + 8, exactly the A operands of 8 mma. Word w (8 nibbles v0..v7, bits 4e) gives the pairs
// (v0, v4), (v1, v5) for one mma and (v2, v6), (v3, v7) for the next; the dot product does not care
// which physical k sits in which k slot as long as A and B agree, so the B fragment (x of batch row
// g) is built from the same 8 activations with 4 byte permutes: (x0, x4), (x1, x5), (x2, x6), (x3, x7).
// Lanes with g >= B read row B - 1 of x: finite values whose results are discarded.
//
// Launch: grid (ceil(N / 16), splits), 128 threads. Block (tile, split) takes its split's range of
// the row's 128-k steps; its 4 warps share the tile and take steps in turn (warp w: the range's
// steps w, w + 4, ...), with two register buffers of U = 2 or 4 steps each (weights plus their
// scales and zero points; see variant() for which); partial sums meet in shared memory and warp 0
// runs the epilogue (gemv_common.cuh), after split_combine when the row is split (splits_for: the
// shapes with few tiles, given a workspace). Weights and scales are loaded before the PDL wait.
// Bytes: N K / 2 of weights + N K / group (2 or 3 bytes) of scales / zeros + B K 2 of x (L1 / L2),
// + 2 B N splits floats of workspace when split.
//
// Batch 1 on fp16 (H1: B = 1, tiled, groups of 128 k or more). fp16 has 10 mantissa bits, so OR-ing a
// nibble into fp16 1024.0 (0x6400) works at bits 0..3 (1024 + q) and at bits 4..7 (1024 + 16 q): one
// LOP3 per pair for the nibbles (0, 4) and (1, 5) of a word and, after one shift by 8, for (2, 6) and
// (3, 7): two shifts per word fewer and no zero-point subtraction (5 instructions per 8 weights
// instead of 11). The rest is moved onto x, once per block (stage_x_h1): x is staged in shared memory
// as fp16 v = u where k % 8 is 0, 1, 4, 5 and v = u / 16 where it is 2, 3, 6, 7, u = x 2^-e, 2^e the
// power of two that brings the block's max |x| under 2^14 (bf16 values times powers of two are exact
// in fp16 inside its range), and per 128-k step the sums U_lo, U_hi of u over the two position classes.
// The mma then gives D = sum q u + 1024 U_lo + 64 U_hi for each row, and the step adds
// s (D - 1024 U_lo - 64 U_hi - z U), U = U_lo + U_hi; the tile's sums are scaled by 2^e at the end.
// The offsets are exact in the products (fp32 accumulation; |D| stays below 2^28 |max u|) and cancel up
// to fp32 rounding of sums ~1024 times the step's: ~1e-5 relative at K = 4096.
//
// G1, the same for groups of 32 / 64 (GGUF Q4_0 / Q4_K repacked, int4 g32 / g64; zero points or mins):
// an mma's 16 k come from 4 groups (lane c's 32 nibbles are one group of 32, or half a group of 64), so
// the bf16 form scales every A operand before the mma. At batch 1 seven of the mma's 8 columns carry no
// batch row, and they are used for the groups instead: lane (g, c) gives its B fragment (its x of the
// step) only where g is its group's index in the step (g == c for 32, g == c / 2 for 64), zeros
// elsewhere, so D[row][n] is group n's sum over its own k alone: lane (g, c < 2) holds groups 2c, 2c + 1
// of rows g and g + 8. Each group's scale, offset and min then apply to fp32 sums, staged per group
// (C_n, U_n): s (q - z) -> s (D - C - z U); s q - m -> s (D - C) - m U. No A operand is scaled (the
// products see the exact integers, unlike the bf16 form's bf16-rounded weights), so a pair of k costs
// one LOP3 (plus a shift per 4) instead of LOP3 + subtraction + multiply.
#include <algorithm>
#include <cstdlib>

#include "cuda/common.h"
#include "cuda/gemv_common.cuh"
#include "cuda/quant_kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kStep = 128;   // k per step (4 lanes x 32 nibbles)
constexpr int kG1Zeros = 32; // G1: uint4 of zeros ahead of the staged x (512 bytes: keeps sx 128-byte aligned)

// A 16-bit scale (sdt: 1 bf16, 2 f16) as a float, both conversions computed and one selected (no
// branch in the load path; f32 scales are not served by this kernel, see int4_tc_supported).
__device__ __forceinline__ float half16_to_f(uint32_t h, int sdt) {
  const float f16 = __half2float(__ushort_as_half(uint16_t(h))), b16 = __uint_as_float(h << 16);
  return sdt == 2 ? f16 : b16;
}

// The fp16 pair (1024 + q_a, 1024 + q_b) of the nibbles under mask 0x000F000F, or (1024 + 16 q_a,
// 1024 + 16 q_b) under 0x00F000F0: (w & mask) | 0x6400 6400, one LOP3.
__device__ __forceinline__ uint32_t h16_pair(uint32_t w, uint32_t mask) {
  uint32_t t;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(t) : "r"(w), "r"(mask), "r"(0x64006400u));  // (a & b) | c
  return t;
}

// H1 / G1: one 128-k step of rows g (lo) and g + 8 (hi) against the staged x words xs (stage_x_h1's order):
// per word, (k0, k1) at 1024 + q against x' (k0, k1), (k2, k3) at 1024 + 16 q against x' / 16, then k4..k7.
__device__ __forceinline__ void mma_h1_step(float (&st)[4], const uint4& lo, const uint4& hi, const uint4 (&xs)[4]) {
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const uint4 X = xs[w];
    const uint32_t la = word_of4(lo, w), lb = word_of4(hi, w), la8 = la >> 8, lb8 = lb >> 8;
    mma_f16(st, h16_pair(la, 0x000F000Fu), h16_pair(lb, 0x000F000Fu), h16_pair(la, 0x00F000F0u),
            h16_pair(lb, 0x00F000F0u), X.x, X.y);
    mma_f16(st, h16_pair(la8, 0x000F000Fu), h16_pair(lb8, 0x000F000Fu), h16_pair(la8, 0x00F000F0u),
            h16_pair(lb8, 0x00F000F0u), X.z, X.w);
  }
}

// H1: stages x[k0, k0 + 128 nst) (batch 1) into sx as fp16 in the consumer's order (uint4 index
// 16 step + 4 w + c holds lane c's word w of the step: k = 128 step + 32 c + 8 w + 0..7, so the 4 lanes
// c of a load read 64 consecutive bytes, no bank conflict) and, per run of 2^lg chunks of 8 values (lg 4:
// a step; G1: 2 or 3, a group of 32 or 64), cst = (1024 U_lo + 64 U_hi, U) (see the top of the file).
// Returns 2^e, the factor the block's sums must be multiplied by. Called by all kWarps * 32 threads;
// sx / cst are ready on return.
__device__ float stage_x_h1(const bf16* __restrict__ x, int k0, int nst, uint4* sx, float2* cst, int lg) {
  __shared__ float s_max[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint4* xv = reinterpret_cast<const uint4*>(x + k0);
  const int n = nst * 16;  // chunks of 8 values
  // pass 1: max |x| (NaN does not count; it reaches the result through the products)
  __nv_bfloat162 m = __float2bfloat162_rn(0.f);
  auto bf2 = [](uint32_t u) {
    __nv_bfloat162 h;
    memcpy(&h, &u, 4);
    return h;
  };
  for (int i = threadIdx.x; i < n; i += kWarps * 32) {
    const uint4 v = __ldg(xv + i);
    m = __hmax2(m, __hmax2(__hmax2(__habs2(bf2(v.x)), __habs2(bf2(v.y))), __hmax2(__habs2(bf2(v.z)), __habs2(bf2(v.w)))));
  }
  float amax = warp_max(fmaxf(__low2float(m), __high2float(m)));
  if (lane == 0) s_max[warp] = amax;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < kWarps; ++w) amax = fmaxf(amax, s_max[w]);
  int ex = 0;
  if (amax > 0.f && amax <= 3.4e38f) frexpf(amax, &ex);  // amax < 2^ex (inf: ex 0, it stays inf)
  ex = max(-100, min(ex, 120));
  const float f = __int_as_float((127 + 14 - ex) << 23), f16th = f * 0.0625f;  // u = x f, |u| < 2^14
  // pass 2: convert, store, sum what the mma will see (the fp16 values, read back)
  auto conv = [](uint32_t u, float sc, float& sum) {
    const float a = __uint_as_float(u << 16) * sc, b = __uint_as_float(u & 0xffff0000u) * sc;
    uint32_t h;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(h) : "f"(b), "f"(a));
    __half2 hh;
    memcpy(&hh, &h, 4);
    const float2 r = __half22float2(hh);
    sum += r.x + r.y;
    return h;
  };
  for (int base = 0; base < n; base += kWarps * 32) {  // every thread runs every round (warp shuffles)
    const int i = base + int(threadIdx.x);
    const bool ok = i < n;
    const uint4 v = ok ? __ldg(xv + i) : make_uint4(0u, 0u, 0u, 0u);
    float lo = 0.f, hi = 0.f;
    uint4 h;
    h.x = conv(v.x, f, lo), h.y = conv(v.y, f16th, hi), h.z = conv(v.z, f, lo), h.w = conv(v.w, f16th, hi);
    hi *= 16.f;
#pragma unroll
    for (int o = 1; o < 16; o <<= 1) {  // a run's 2^lg chunks are 2^lg consecutive lanes
      if (o < (1 << lg)) {
        lo += __shfl_xor_sync(0xffffffffu, lo, o);
        hi += __shfl_xor_sync(0xffffffffu, hi, o);
      }
    }
    if (ok) {
      const int st = i >> 4, c = (i >> 2) & 3, w = i & 3;
      sx[16 * st + 4 * w + c] = h;
      if ((i & ((1 << lg) - 1)) == 0) cst[i >> lg] = make_float2(1024.f * lo + 64.f * hi, lo + hi);
    }
  }
  __syncthreads();
  return __int_as_float((127 - 14 + ex) << 23);
}

// U: steps of 128 k per register buffer; ZM: 0 symmetric (z = 8), 1 zero points per (row, group),
// 2 mins per (row, group) (W = s q - m, groups of 32 / 64 only: from GGUF Q4_K, see repack_q4_k); MINB:
// blocks per SM the register allocation must allow (occupancy: ncu showed the kernel latency-bound);
// SMALLG: groups of 32 or 64, where one mma's 16 k come from up to 4 groups (lane c's 32 nibbles are
// one group of 32): the A operands are then scaled before the mma, (q - z) * s rounded to bf16 (one
// bf16x2 multiply per pair; the weights the products see are those of a bf16 copy of the layer).
// H1: batch 1 on fp16 (top of the file; TILED; dynamic shared memory: h1_smem). With SMALLG it is the
// G1 form (groups of 32 / 64, ZM 0 / 1 / 2), else ZM 0 / 1 only.
template <int EPI, int U, int ZM, int MINB, bool SMALLG, bool TILED, bool H1 = false>
__global__ void __launch_bounds__(kWarps * 32, MINB) gemv_int4_tc_kernel(QWeight W, int sdt, uint32_t gmul, const bf16* __restrict__ x,
                                                                   int B, void* out, int ldo,
                                                                   float* __restrict__ ws, unsigned* counters,
                                                                   FoldArgs fold) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int N = W.N, K = W.K, G = K / W.group;
  const int tile = blockIdx.x, row0 = tile * 16;
  const int ra = min(row0 + g, N - 1), rb = min(row0 + g + 8, N - 1);  // rows past N: computed, not stored
  const size_t rbytes = size_t(K) / 2;
  // row-major: rows g, g + 8 at 16 c, 64 bytes a step; tiled (int4_tile_index): the step's KB, 512 apart
  // (TILED: compile-time strides, so the loads of a buffer are immediate offsets from one pointer)
  const uint8_t* wa = static_cast<const uint8_t*>(W.w) +
                      (TILED ? size_t(tile) * 16 * rbytes + 16 * lane : size_t(ra) * rbytes + 16 * c);
  const uint8_t* wb = TILED ? wa + 512 : static_cast<const uint8_t*>(W.w) + size_t(rb) * rbytes + 16 * c;
  constexpr size_t sstride = TILED ? 1024 : kStep / 2;
  // split-K: block (tile, split) takes steps [s_begin, s_end) of the row (gridDim.y splits)
  const int nsteps = K / kStep, split = blockIdx.y, splits = gridDim.y;
  const int s_begin = int(int64_t(nsteps) * split / splits), s_end = int(int64_t(nsteps) * (split + 1) / splits);

  constexpr bool G1 = H1 && SMALLG;
  struct Buf {
    uint4 lo[U], hi[U];      // rows g, g + 8
    float sa[U], sb[U];      // their group scales
    uint32_t za[ZM == 1 ? U : 1], zb[ZM == 1 ? U : 1];  // bias_pair of their zero points
    float ma[ZM == 2 ? U : 1], mb[ZM == 2 ? U : 1];       // their mins
    // G1: the raw 16-bit pairs (row g, row g + 8) of this lane's groups 2c, 2c + 1 of the step: scales,
    // zero-point bytes, mins (converted where they are used: compute() waits for nothing in load())
    uint32_t gs[G1 ? U : 1][2], gz[G1 && ZM == 1 ? U : 1][2], gm[G1 && ZM == 2 ? U : 1][2];
  };
  // G1: groups per step (4 or 2); lane (g, c)'s B fragment is x where g is its group in the step (mine);
  // lanes c < gps / 2 hold the D columns 2c, 2c + 1 that are groups
  [[maybe_unused]] const int gps = kStep / W.group;
  [[maybe_unused]] const bool mine = g == (W.group == 32 ? c : c >> 1), gl = 2 * c < gps;
  // This warp's steps are s_begin + warp + kWarps t, t = 0, 1, ...; load() and compute() each walk
  // them in order (two buffers, alternately), so each keeps running pointers advanced by a constant
  // per step instead of computing 64-bit addresses from the step index (ptxas: ~50 integer
  // instructions a step before, of ~210).
  const int s_first = s_begin + warp;
  constexpr size_t wstride = size_t(kWarps) * sstride;
  const uint8_t* pwa = wa + size_t(s_first) * sstride;
  const uint8_t* pwb = wb + size_t(s_first) * sstride;
  int s_load = s_first;
  // scales / zeros / mins of row pair (g, g + 8) of this tile: entry (tile G + gi) 16 + 2 g (qmeta_index)
  const uint32_t* sbase = reinterpret_cast<const uint32_t*>(W.scales) + (size_t(tile) * G * 16 + 2 * g) / 2;
  const uint32_t* mbase =
      ZM == 2 ? reinterpret_cast<const uint32_t*>(W.mins) + (size_t(tile) * G * 16 + 2 * g) / 2 : nullptr;
  const uint8_t* zbase = ZM == 1 ? W.zeros + size_t(tile) * G * 16 + 2 * g : nullptr;
  // G1: running pointers to the scale / zero / min pairs of this lane's first group gi = gps s + 2c of each
  // of its steps (group gi + 1: 8 words on), advanced by a constant per step like pwa
  [[maybe_unused]] const int g1first = s_first * gps + 2 * c, g1stride = 8 * gps * kWarps;
  [[maybe_unused]] const uint32_t* g1s = sbase + 8 * g1first;
  [[maybe_unused]] const uint32_t* g1m = ZM == 2 ? mbase + 8 * g1first : nullptr;
  [[maybe_unused]] const uint16_t* g1z = ZM == 1 ? reinterpret_cast<const uint16_t*>(zbase) + 8 * g1first : nullptr;
  // Steps past the end load zero weights and zero scales: their (finite) products are multiplied
  // by 0, so compute() has no branch and its U mma chains can interleave.
  auto load = [&](Buf& bf) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool ok = s_load < s_end;
      const int kk = s_load * kStep + 32 * c;             // lane c's 32 values lie in one group
      const int gi = int(__umulhi(uint32_t(kk), gmul));    // kk / group (group_mul)
      // past the end: the row's first step (valid memory, finite values, multiplied by scale 0)
      const uint8_t* qa = ok ? pwa : wa;
      bf.lo[u] = ld_w16(qa);
      bf.hi[u] = ld_w16(TILED ? qa + 512 : ok ? pwb : wb);
      if constexpr (G1) {  // groups gi, gi + 1 of this lane (none where !gl: zero scales, zero mins)
        const bool gok = ok && gl;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          bf.gs[u][j] = gok ? __ldg(g1s + 8 * j) : 0u;
          if constexpr (ZM == 1) bf.gz[u][j] = gok ? uint32_t(__ldg(g1z + 8 * j)) : 0x0808u;
          if constexpr (ZM == 2) bf.gm[u][j] = gok ? __ldg(g1m + 8 * j) : 0u;
        }
        g1s += g1stride;
        if constexpr (ZM == 1) g1z += g1stride;
        if constexpr (ZM == 2) g1m += g1stride;
        pwa += wstride, s_load += kWarps;
        continue;
      }
      // rows g and g + 8 are neighbours in the tile's group (qmeta_index): one load for both
      const uint32_t sp = ok ? __ldg(sbase + 8 * gi) : 0u;
      bf.sa[u] = half16_to_f(sp & 0xffffu, sdt), bf.sb[u] = half16_to_f(sp >> 16, sdt);
      if constexpr (ZM == 1) {
        const uint32_t zp = ok ? __ldg(reinterpret_cast<const uint16_t*>(zbase + 16 * gi)) : 0x0808u;
        if constexpr (H1) {
          bf.za[u] = __float_as_uint(float(zp & 0xffu)), bf.zb[u] = __float_as_uint(float(zp >> 8));
        } else {
          bf.za[u] = bias_pair(int(zp & 0xffu));
          bf.zb[u] = bias_pair(int(zp >> 8));
        }
      }
      if constexpr (ZM == 2) {
        const uint32_t mp = ok ? __ldg(mbase + 8 * gi) : 0u;
        bf.ma[u] = half16_to_f(mp & 0xffffu, sdt), bf.mb[u] = half16_to_f(mp >> 16, sdt);
      }
      pwa += wstride, s_load += kWarps;
      if constexpr (!TILED) pwb += wstride;
    }
  };

  // the activations of batch row g (lanes past B: row B - 1), this warp's first step, lane c's 32 values
  const bf16* px0 = x + size_t(min(g, B - 1)) * K + 32 * c;
  const bf16* px = px0 + size_t(s_first) * kStep;
  int s_comp = s_first;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  // H1: the staged x (stage_x_h1), then the per-step (G1: per-group) sums; G1: first kG1Zeros uint4 of
  // zeros, the B fragments of the lanes whose group is another (read at an offset of 4 so that their
  // banks are not those of the lanes reading sx)
  extern __shared__ uint4 h1_dyn[];
  uint4* h1_sx = h1_dyn + (G1 ? kG1Zeros : 0);
  float2* h1_cst = reinterpret_cast<float2*>(h1_sx + 16 * (s_end - s_begin));
  // 16-bit pair (row g, row g + 8) as floats (sdt 2: f16, else bf16)
  [[maybe_unused]] auto pair_f = [sdt](uint32_t p) {
    if (sdt == 2) {
      __half2 h;
      memcpy(&h, &p, 4);
      return __half22float2(h);
    }
    return make_float2(__uint_as_float(p << 16), __uint_as_float(p & 0xffff0000u));
  };
  auto compute = [&](const Buf& bf) {
    float st[U][4];  // one accumulator per step: U independent mma chains
    if constexpr (G1) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int sr = s_comp < s_end ? s_comp - s_begin : 0;  // past the end: step 0 (the scales are 0)
        const uint4* px4 = (mine ? h1_sx + 16 * sr : h1_dyn + 4) + c;
        uint4 xs[4];
#pragma unroll
        for (int w = 0; w < 4; ++w) xs[w] = px4[4 * w];
        // (C, U) of groups gi, gi + 1 (lanes !gl: those of the step's first two, times scale 0)
        const float4 cu = *reinterpret_cast<const float4*>(h1_cst + sr * gps + (gl ? 2 * c : 0));
        st[u][0] = st[u][1] = st[u][2] = st[u][3] = 0.f;
        mma_h1_step(st[u], bf.lo[u], bf.hi[u], xs);
        s_comp += kWarps;
        // st: (row g, group gi), (row g, gi + 1), (row g + 8, gi), (row g + 8, gi + 1)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const float2 sc = pair_f(bf.gs[u][j]);
          const float C = j ? cu.z : cu.x, Us = j ? cu.w : cu.y;
          if constexpr (ZM == 2) {  // s (D - C) - m U
            const float2 m = pair_f(bf.gm[u][j]);
            acc[0] = fmaf(sc.x, st[u][j] - C, fmaf(-m.x, Us, acc[0]));
            acc[2] = fmaf(sc.y, st[u][2 + j] - C, fmaf(-m.y, Us, acc[2]));
          } else {  // s (D - C - z U)
            const float za = ZM == 1 ? float(bf.gz[u][j] & 0xffu) : 8.f, zb = ZM == 1 ? float(bf.gz[u][j] >> 8) : 8.f;
            acc[0] = fmaf(sc.x, st[u][j] - fmaf(za, Us, C), acc[0]);
            acc[2] = fmaf(sc.y, st[u][2 + j] - fmaf(zb, Us, C), acc[2]);
          }
        }
      }
    } else if constexpr (H1) {
      float corr[U][2];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int sr = s_comp < s_end ? s_comp - s_begin : 0;  // past the end: step 0 (the scale is 0)
        const uint4* px4 = h1_sx + 16 * sr + c;
        uint4 xs[4];
#pragma unroll
        for (int w = 0; w < 4; ++w) xs[w] = px4[4 * w];
        const float2 cu = h1_cst[sr];
        if constexpr (ZM == 1) {
          corr[u][0] = fmaf(__uint_as_float(bf.za[u]), cu.y, cu.x), corr[u][1] = fmaf(__uint_as_float(bf.zb[u]), cu.y, cu.x);
        } else {
          corr[u][0] = corr[u][1] = fmaf(8.f, cu.y, cu.x);
        }
        st[u][0] = st[u][1] = st[u][2] = st[u][3] = 0.f;
        mma_h1_step(st[u], bf.lo[u], bf.hi[u], xs);
        s_comp += kWarps;
      }
      // batch column 0 only (v[0]: row g, v[2]: row g + 8); columns 1..7 stay 0
#pragma unroll
      for (int u = 0; u < U; ++u) {
        acc[0] = fmaf(bf.sa[u], st[u][0] - corr[u][0], acc[0]);
        acc[2] = fmaf(bf.sb[u], st[u][2] - corr[u][1], acc[2]);
      }
    } else {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const bool ok = s_comp < s_end;  // past the end: step 0's activations (finite; the scale is 0)
      st[u][0] = st[u][1] = st[u][2] = st[u][3] = 0.f;
      uint32_t za = bias_pair(ZM == 2 ? 0 : 8), zb = za;
      if constexpr (ZM == 1) za = bf.za[u], zb = bf.zb[u];
      // SMALLG: the rows' scales (and - mins) as bf16 pairs, applied to the A operands: s (q - z), or s q - m
      const uint32_t s2a = SMALLG ? pack_bf16x2(bf.sa[u], bf.sa[u]) : 0u, s2b = SMALLG ? pack_bf16x2(bf.sb[u], bf.sb[u]) : 0u;
      uint32_t m2a = 0u, m2b = 0u;
      if constexpr (ZM == 2) m2a = pack_bf16x2(-bf.ma[u], -bf.ma[u]), m2b = pack_bf16x2(-bf.mb[u], -bf.mb[u]);
      auto scaled = [&](uint32_t q, uint32_t s2, uint32_t m2) {
        if constexpr (!SMALLG) return q;
        if constexpr (ZM == 2) return fma_bf16x2(q, s2, m2);
        return mul_bf16x2(q, s2);
      };
      auto qa = [&](uint32_t w, int sh) { return scaled(deq_pair(w, sh, za), s2a, m2a); };
      auto qb = [&](uint32_t w, int sh) { return scaled(deq_pair(w, sh, zb), s2b, m2b); };
      uint4 xs[4];  // the step's activations, all four loads in flight before the first is used
#pragma unroll
      for (int w = 0; w < 4; ++w) xs[w] = __ldg(reinterpret_cast<const uint4*>(ok ? px : px0) + w);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const uint4 X = xs[w];  // x0..x7
        const uint32_t la = word_of4(bf.lo[u], w), lb = word_of4(bf.hi[u], w);
        if constexpr (TILED) {
          // interleaved words (int4_interleave_word): (v0, v4) = (k0, k1) and (v1, v5) = (k2, k3)
          // against x (x0, x1), (x2, x3); then (v2, v6), (v3, v7) against (x4, x5), (x6, x7)
          mma_bf16(st[u], qa(la, 0), qb(lb, 0), qa(la, 4), qb(lb, 4), X.x, X.y);
          mma_bf16(st[u], qa(la, 8), qb(lb, 8), qa(la, 12), qb(lb, 12), X.z, X.w);
        } else {
          // row-major words: (v0, v4) and (v1, v5) against (x0, x4), (x1, x5); then (v2, v6), (v3, v7)
          mma_bf16(st[u], qa(la, 0), qb(lb, 0), qa(la, 4), qb(lb, 4), __byte_perm(X.x, X.z, 0x5410),
                   __byte_perm(X.x, X.z, 0x7632));
          mma_bf16(st[u], qa(la, 8), qb(lb, 8), qa(la, 12), qb(lb, 12), __byte_perm(X.y, X.w, 0x5410),
                   __byte_perm(X.y, X.w, 0x7632));
        }
      }
      px += kWarps * kStep, s_comp += kWarps;
    }
    // st: (row g, batch 2c), (row g, 2c + 1), (row g + 8, 2c), (row g + 8, 2c + 1)
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if constexpr (SMALLG) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[i] += st[u][i];
      } else {
        acc[0] = fmaf(bf.sa[u], st[u][0], acc[0]);
        acc[1] = fmaf(bf.sa[u], st[u][1], acc[1]);
        acc[2] = fmaf(bf.sb[u], st[u][2], acc[2]);
        acc[3] = fmaf(bf.sb[u], st[u][3], acc[3]);
      }
    }
    }  // !H1
  };

  Buf b0, b1;
  load(b0);
  load(b1);
  pdl_wait();
  __shared__ float4 s_pre[2 * kFoldThreads];  // the folded norm's partials (consumer), copied while the loop runs
  if (fold.rms_ss) fold_prefetch(fold, B, s_pre);
  [[maybe_unused]] float h1_back = 1.f;  // H1: 2^e
  if constexpr (G1) {
    for (int i = threadIdx.x; i < kG1Zeros; i += kWarps * 32) h1_dyn[i] = make_uint4(0u, 0u, 0u, 0u);
  }
  if constexpr (H1)  // (its barriers also publish the zeros)
    h1_back = stage_x_h1(x, s_begin * kStep, s_end - s_begin, h1_sx, h1_cst, G1 ? (W.group == 32 ? 2 : 3) : 4);
  for (int t0 = 0; s_begin + warp + kWarps * t0 < s_end; t0 += 2 * U) {
    compute(b0);
    load(b0);
    if (s_begin + warp + kWarps * (t0 + U) >= s_end) break;
    compute(b1);
    load(b1);
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  if constexpr (G1) {  // lane c = 0 (batch column 0) takes lane c = 1's groups too
    acc[0] += __shfl_xor_sync(0xffffffffu, acc[0], 1);
    acc[2] += __shfl_xor_sync(0xffffffffu, acc[2], 1);
  }
  if constexpr (H1) acc[0] *= h1_back, acc[2] *= h1_back;

  finish_tile<EPI, kWarps>(acc, tile, B, N, out, ldo, split, splits, ws, counters, fold, K, s_pre);
}

// Variants: a = 4 steps per buffer, registers free (176-204: 2-3 blocks / SM); b = 4 steps, at
// most 128 registers (4 blocks); c = 2 steps, at most 80 registers (6 blocks). On an H200
// (2026-12-02, CudaQuant.DISABLED_QuantGemvBandwidth, B = 1, g128 sym) c streams the shapes with
// many tiles best (qkv 2372 GB/s, gate/up 2220; a: 1554, 1359) and a those with 256 tiles, where the
// grid, not the registers, bounds the warps per SM (down 1314 GB/s; c: 895). kAuto: c from 4 tiles
// per SM, else a (counting the split-K blocks). IGNIS_QGEMV_VARIANT=a|b|c forces one (A/B measurements);
// c spills 200-500 bytes a thread (ptxas -v) but the spills stay in L1: c with at most 96 / 128
// registers (5 / 4 blocks per SM, 40-220 / no spill bytes) decoded slower on an H200 (2026-12-02, forced
// for every shape: int4 g128 b1 329.3 (c) / 291.7 (96) / 302.2 (128) tok/s; Q4_K 251.8 / - / 224.0).
char variant(int blocks) {
  static const char forced = [] {
    const char* e = std::getenv("IGNIS_QGEMV_VARIANT");
    return e && (*e == 'a' || *e == 'b' || *e == 'c') ? *e : 0;
  }();
  if (forced) return forced;
  return blocks >= 4 * sm_count() ? 'c' : 'a';
}

// Split-K, only where the tiles alone leave SMs idle (fewer tiles than SMs): enough (tile, split) blocks
// for variant c's 6 per SM, at least 2 steps per warp in a split, and what the workspace holds.
// IGNIS_QGEMV_SPLITS=n forces n (A/B measurements; 1 = no split, 0 = chosen). The 7B wo / down shapes
// (256 tiles for 132 SMs) used to be split 3 ways: unsplit, int4 g128 decoded faster (H100, 2026-12-07:
// b1 450.3 vs 428.3 tok/s, b8 2,720 vs 2,487; 2 / 4 / 6 splits forced on every shape: 331 / 277 / 275).
int splits_for(const QGemvArgs& a, int tiles) {
  static const int forced = [] {
    const char* e = std::getenv("IGNIS_QGEMV_SPLITS");
    return e ? std::max(0, std::atoi(e)) : 0;
  }();
  if (!a.ws || !a.counters || a.n_counters < tiles) return 1;
  if (a.splits <= 0 && !forced && tiles >= sm_count()) return 1;
  const int nsteps = a.W.K / kStep;
  int s = a.splits > 0 ? a.splits : forced ? forced : (6 * sm_count() + tiles / 2) / tiles;
  s = std::min({s, 16, a.splits > 0 ? nsteps : std::max(1, nsteps / (2 * kWarps))});
  s = std::min<int>(s, int(a.ws_floats / (size_t(a.B) * a.W.N)));
  return std::max(1, s);
}

// ceil(2^32 / group) = (2^32 + e) / group, 0 <= e < group: __umulhi(k, group_mul(group)) == k / group
// when the excess k e / 2^32 stays below the distance 1 / group to the next integer, i.e. k e < 2^32:
// always for powers of two (e = 0), else for K group <= 2^32 (group_mul_exact, in int4_tc_supported).
uint32_t group_mul(int group) { return uint32_t(((uint64_t(1) << 32) + uint64_t(group) - 1) / uint64_t(group)); }
bool group_mul_exact(int group, int K) {
  return group > 0 && ((group & (group - 1)) == 0 || uint64_t(K) * uint64_t(group) <= (uint64_t(1) << 32));
}

// H1 (top of the file): batch 1, tiled, groups of 128+ (not mins), or G1: groups of 32 / 64 (zero points
// or mins); the staged x within 40 KB of shared memory; QGemvArgs::h1 or IGNIS_INT4_H1=0|1 (H1; default on:
// +4.8% int4 g128 b1 decode, H100, 2026-12-06) / IGNIS_INT4_G1=0|1 (G1; default on: Q4_K b1 decode +27%,
// Q4_0 / int4 g32 +13%, H100, 2026-12-07) choose.
// Returns the dynamic shared memory bytes it needs, 0 where it does not run.
size_t h1_smem(const QGemvArgs& a, int splits) {
  static const int env = [] {
    const char* e = std::getenv("IGNIS_INT4_H1");
    return e ? std::atoi(e) : 1;
  }();
  static const int env_g1 = [] {
    const char* e = std::getenv("IGNIS_INT4_G1");
    return e ? std::atoi(e) : 1;
  }();
  const bool g1 = a.W.group == 32 || a.W.group == 64;
  const int want = a.h1 >= 0 ? a.h1 : g1 ? env_g1 : env;
  if (!want || a.B != 1 || !a.W.tiled || (!g1 && (a.W.group < kStep || a.W.mins))) return 0;
  const int nsteps = a.W.K / kStep, per = (nsteps + splits - 1) / splits + 1;  // a split's steps, at most
  const int sums = g1 ? kStep / a.W.group : 1;  // (C, U) pairs a step
  const size_t bytes = (g1 ? kG1Zeros * sizeof(uint4) : 0) + size_t(per) * (16 * sizeof(uint4) + sums * sizeof(float2));
  return bytes <= 40 * 1024 ? bytes : 0;  // + the kernel's static shared memory (~4 KB): within the 48 KB default
}

template <int EPI, int U, int ZM, int MINB, bool TILED>
void launch_t(const QGemvArgs& a, dim3 grid, int sdt, uint32_t gmul, int ldo, cudaStream_t stream) {
  if constexpr (TILED) {
    if (const size_t smem = h1_smem(a, int(grid.y))) {
      if (a.W.group < kStep)  // G1
        return launch(gemv_int4_tc_kernel<EPI, U, ZM, MINB, true, true, true>, grid, dim3(kWarps * 32), smem, stream,
                      a.W, sdt, gmul, static_cast<const bf16*>(a.x), a.B, a.out, ldo, a.ws, a.counters, fold_args(a));
      if constexpr (ZM != 2)
        return launch(gemv_int4_tc_kernel<EPI, U, ZM, MINB, false, true, true>, grid, dim3(kWarps * 32), smem, stream,
                      a.W, sdt, gmul, static_cast<const bf16*>(a.x), a.B, a.out, ldo, a.ws, a.counters, fold_args(a));
    }
  }
  if (a.W.group < kStep)
    return launch(gemv_int4_tc_kernel<EPI, U, ZM, MINB, true, TILED>, grid, dim3(kWarps * 32), 0, stream, a.W, sdt,
                  gmul, static_cast<const bf16*>(a.x), a.B, a.out, ldo, a.ws, a.counters, fold_args(a));
  if constexpr (ZM != 2)  // mins: groups of 32 / 64 only (int4_tc_supported)
    launch(gemv_int4_tc_kernel<EPI, U, ZM, MINB, false, TILED>, grid, dim3(kWarps * 32), 0, stream, a.W, sdt, gmul,
           static_cast<const bf16*>(a.x), a.B, a.out, ldo, a.ws, a.counters, fold_args(a));
}

template <int EPI, int U, int ZM, int MINB>
void launch_v(const QGemvArgs& a, dim3 grid, int sdt, int ldo, cudaStream_t stream) {
  const uint32_t gmul = group_mul(a.W.group);
  if (a.W.tiled) return launch_t<EPI, U, ZM, MINB, true>(a, grid, sdt, gmul, ldo, stream);
  launch_t<EPI, U, ZM, MINB, false>(a, grid, sdt, gmul, ldo, stream);
}

template <int EPI, int ZM>
void launch_z(const QGemvArgs& a, int sdt, int ldo, cudaStream_t stream) {
  const int tiles = ceil_div(a.W.N, 16), splits = splits_for(a, tiles);
  const dim3 grid(tiles, splits);
  switch (variant(tiles * splits)) {
    case 'a': return launch_v<EPI, 4, ZM, 1>(a, grid, sdt, ldo, stream);
    case 'c': return launch_v<EPI, 2, ZM, 6>(a, grid, sdt, ldo, stream);
    default: return launch_v<EPI, 4, ZM, 4>(a, grid, sdt, ldo, stream);
  }
}

template <int EPI>
void launch_epi(const QGemvArgs& a, int sdt, int ldo, cudaStream_t stream) {
  if (a.W.mins) return launch_z<EPI, 2>(a, sdt, ldo, stream);
  return a.W.zeros ? launch_z<EPI, 1>(a, sdt, ldo, stream) : launch_z<EPI, 0>(a, sdt, ldo, stream);
}

}  // namespace

bool int4_tc_supported(const QWeight& W) {
  return W.type == QType::kInt4 && (W.group == 32 || W.group == 64 || (W.group % kStep == 0 && !W.mins)) &&
         W.K % kStep == 0 && group_mul_exact(W.group, W.K) && (W.scale_dtype == DType::BF16 || W.scale_dtype == DType::F16);
}

void gemv_int4_tc(const QGemvArgs& a, int ldo, cudaStream_t stream) {
  IGNIS_CHECK(int4_tc_supported(a.W), "int4 tensor-core GEMV: needs groups of 32, 64 or a multiple of 128 (got ",
              a.W.group, "), K % 128 == 0 (K = ", a.W.K, ") and bf16 / f16 scales");
  const int sdt = scale_code(a.W.scale_dtype);
  switch (a.epi) {
    case GemvEpilogue::kStore: return launch_epi<int(GemvEpilogue::kStore)>(a, sdt, ldo, stream);
    case GemvEpilogue::kStoreF32: return launch_epi<int(GemvEpilogue::kStoreF32)>(a, sdt, ldo, stream);
    case GemvEpilogue::kAddF32: return launch_epi<int(GemvEpilogue::kAddF32)>(a, sdt, ldo, stream);
    case GemvEpilogue::kSwiGLU: return launch_epi<int(GemvEpilogue::kSwiGLU)>(a, sdt, ldo, stream);
  }
}

}  // namespace ignis::cuda
