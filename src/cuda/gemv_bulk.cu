// Decode GEMV, y[B, N] = x[B, K] W[N, K]^T (B = 1..8, x bf16, fp32 accumulation), with the weights
// streamed into shared memory by the bulk-copy engine (Hopper cp.async.bulk + mbarrier). Three weight
// formats share the pipeline: bf16, int8 per row (quant_kernels.h) and int4 group-wise.
//
// Why: a register-streaming kernel keeps only what its registers hold in flight (~8 KB a warp) and
// its warps per SM are bounded by registers; the int4 / int8 kernels need many registers for the
// unpacking, so on an H200 they streamed 1.3-2.4 TB/s of packed bytes (copy: 4.2 TB/s). A bulk copy
// is one instruction for a whole row segment, tracked by the copy engine rather than by per-thread
// registers, so the bytes in flight are bounded by shared memory instead (~200 KB per SM here).
//
// Work: the weight is cut into units of (tile of 16 rows) x (chunk of k) = 16 rows x 512 bytes
// (bf16: 256 k, int8: 512 k, int4: 1024 k); units are numbered tile-major (all chunks of tile 0, then
// tile 1, ...) and the persistent grid (as many blocks as fit on the GPU) gives each block one
// contiguous range of units. So every block streams about the same number of bytes whatever N and
// K are (no wave quantization, no per-shape split heuristics), and a tile is cut across at most a
// few neighbouring blocks.
//
// Block: 4 consumer warps + 1 producer warp, kStages shared-memory stages of one unit each.
//   producer (lanes 0..15, one row each): waits until a stage is free (empty barrier), announces
//     its bytes on the stage's full barrier, and issues the 16 row copies (512 B each, less at the
//     end of K; rows past N are not copied and their results are never stored). int4 also copies
//     the unit's scales (lane 16) and zero points (lane 17): their device layout (qmeta_index) puts
//     a tile's entries for consecutive groups next to each other, 16-byte aligned. The weights do
//     not depend on earlier kernels, so this starts before the PDL wait.
//   consumers: wait for a stage (full barrier), multiply their quarter of its k range on the tensor
//     cores (mma.m16n8k16; x[b = g] at the same k is the B fragment), then release the stage (every
//     consumer thread arrives). Per format:
//     bf16: lane (g, c) reads 16 bytes of rows g and g + 8 at k = 8c (+32): the A fragments as in
//       gemv.cu. Rows 576 bytes apart (512 + 64): lanes g and g + 1 of a phase use different banks.
//     int8: lane (g, c) reads 16 bytes (k = 16c .. +15) of rows g and g + 8 per 64-k step; bytes
//       become exact fp16 integers and the mma runs in fp16 (gemv_int8_tc.cu); the row scale
//       multiplies the finished tile. Rows 576 bytes apart.
//     int4: per 32-k group chunk (16 bytes a row), lane (g, c) reads word c (8 nibbles) of rows g and
//       g + 8: the 4 lanes c of one mma then hold the same 32 k, so each 2-mma chunk lies inside one
//       group (any group of 32 or more) and its fp32 result is scaled once by the group's scale.
//       Nibbles become exact bf16 integers (gemv_int4_tc.cu). Rows 528 bytes apart (512 + 16): the
//       32 lanes' 4-byte reads (g * 132 + c words) fall in 32 different banks.
//   When a block's tile changes (or its range ends), the 4 warps add their accumulators in shared
//   memory; warp 0 stores the tile (tile_epilogue) if the block covered all of it, else writes its
//   part to the workspace and bumps the tile's counter: the last of the tile's blocks adds the parts
//   in block order (deterministic) and stores. Each block has at most two cut tiles (its first and
//   its last), so the workspace is 2 slots x 128 floats per block.
// Without a workspace the ranges are whole tiles (nothing is ever cut).
//
// Bytes moved: the weights (and int4 scales / zeros) once, x (B*K*2) from L1/L2 per block, the
// outputs, 1 KB per cut tile.
#include <algorithm>

#include "cuda/gemv_common.cuh"
#include "cuda/kernels.h"
#include "cuda/quant_kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kRowBytes = 512;  // bytes of one weight row per unit
constexpr int kStages = 5;
constexpr int kConsumerWarps = 4;
constexpr int kThreads = (kConsumerWarps + 1) * 32;

// the 4 consumer warps only (the producer warp never joins)
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumerWarps * 32)); }

// Everything a launch needs (one struct: the kernel is templated on the format only).
struct BulkArgs {
  const uint8_t* w;       // [N, K] weights, rows of row_bytes
  size_t row_bytes;
  const void* scales;     // int8: [N]; int4: qmeta_index layout; bf16: unused
  int sdt;                // scale dtype code (scale_code)
  const uint8_t* zeros;   // int4 asymmetric: qmeta_index layout, else nullptr
  int gshift;             // int4: log2(group / 32)
  const bf16* x;
  int B, N, K;
  void* out;
  int ldo;
  float* ws;              // nullptr: whole tiles per block
  unsigned* counters;
  float* ss_out;
};

// ---- formats: k per unit, row pitch in shared memory, extra bytes per stage, the stage's product ----

struct Bf16Fmt {
  static constexpr int kChunk = 256, kPitch = kRowBytes + 64, kMetaBytes = 0;
  static constexpr bool kRowScale = false;
  __device__ static uint32_t bytes_of(int kc) { return uint32_t(kc) * 2; }
  // warp's k in [64 warp, 64 warp + 64) of the unit
  __device__ static void consume(const uint8_t* st, const BulkArgs& a, int k0, int kc, int warp, int g, int c,
                                 bool x_row, const bf16* xp, float (&acc)[4]) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int kl = 64 * warp + 32 * u + 8 * c;  // k within the unit
      uint4 a_lo = make_uint4(0, 0, 0, 0), a_hi = make_uint4(0, 0, 0, 0), xv = make_uint4(0, 0, 0, 0);
      if (kl < kc) {
        a_lo = *reinterpret_cast<const uint4*>(st + g * kPitch + kl * 2);
        a_hi = *reinterpret_cast<const uint4*>(st + (g + 8) * kPitch + kl * 2);
        if (x_row) xv = __ldg(reinterpret_cast<const uint4*>(xp + k0 + kl));
      }
      mma_bf16(acc, a_lo.x, a_hi.x, a_lo.y, a_hi.y, xv.x, xv.y);
      mma_bf16(acc, a_lo.z, a_hi.z, a_lo.w, a_hi.w, xv.z, xv.w);
    }
  }
};

struct Int8Fmt {
  static constexpr int kChunk = 512, kPitch = kRowBytes + 64, kMetaBytes = 0;
  static constexpr bool kRowScale = true;
  __device__ static uint32_t bytes_of(int kc) { return uint32_t(kc); }
  // warp's k in [128 warp, 128 warp + 128): two steps of 64 (K % 64 == 0, so a step is whole)
  __device__ static void consume(const uint8_t* st, const BulkArgs& a, int k0, int kc, int warp, int g, int c,
                                 bool x_row, const bf16* xp, float (&acc)[4]) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int kl = 128 * warp + 64 * u;
      if (kl >= kc) break;  // warp-uniform
      const uint4 lo = *reinterpret_cast<const uint4*>(st + g * kPitch + kl + 16 * c);
      const uint4 hi = *reinterpret_cast<const uint4*>(st + (g + 8) * kPitch + kl + 16 * c);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        uint2 X = make_uint2(0, 0);
        if (x_row) X = __ldg(reinterpret_cast<const uint2*>(xp + k0 + kl + 16 * c + 4 * w));  // x0..x3
        const float x0 = __uint_as_float(X.x << 16), x1 = __uint_as_float(X.x & 0xffff0000u);
        const float x2 = __uint_as_float(X.y << 16), x3 = __uint_as_float(X.y & 0xffff0000u);
        const uint32_t ua = word_of4(lo, w) ^ 0x80808080u, ub = word_of4(hi, w) ^ 0x80808080u;
        // A: (b0, b2) of rows g and g + 8, then (b1, b3); B: (x0, x2), (x1, x3)
        mma_f16(acc, deq_pair8(ua, 0x4240), deq_pair8(ub, 0x4240), deq_pair8(ua, 0x4341), deq_pair8(ub, 0x4341),
                f16_pair(x0, x2), f16_pair(x1, x3));
      }
    }
  }
};

template <bool HAS_Z>
struct Int4Fmt {
  // stage: 16 rows x 528 bytes, then the scales (up to 32 groups x 16 rows x 4 bytes), then the zeros
  static constexpr int kChunk = 1024, kPitch = kRowBytes + 16;
  static constexpr int kScaleOff = 16 * kPitch, kZeroOff = kScaleOff + 32 * 16 * 4;
  static constexpr int kMetaBytes = 32 * 16 * 4 + 32 * 16;
  static constexpr bool kRowScale = false;
  __device__ static uint32_t bytes_of(int kc) { return uint32_t(kc) / 2; }
  // warp's 32-k chunks q = 8 warp .. 8 warp + 7 of the unit (K % 32 == 0: a chunk is whole)
  __device__ static void consume(const uint8_t* st, const BulkArgs& a, int k0, int kc, int warp, int g, int c,
                                 bool x_row, const bf16* xp, float (&acc)[4]) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int q = 8 * warp + i;
      if (32 * q >= kc) break;  // warp-uniform
      const uint32_t la = *reinterpret_cast<const uint32_t*>(st + g * kPitch + 16 * q + 4 * c);
      const uint32_t lb = *reinterpret_cast<const uint32_t*>(st + (g + 8) * kPitch + 16 * q + 4 * c);
      uint4 X = make_uint4(0, 0, 0, 0);
      if (x_row) X = __ldg(reinterpret_cast<const uint4*>(xp + k0 + 32 * q + 8 * c));  // x of nibbles 0..7
      const int gl = q >> a.gshift;  // the chunk's group within the unit
      float sa, sb;  // scales of rows g, g + 8: neighbours in the tile's group (qmeta_index)
      if (a.sdt == 0) {
        const float2 s = *reinterpret_cast<const float2*>(st + kScaleOff + (gl * 16 + 2 * g) * 4);
        sa = s.x, sb = s.y;
      } else {
        const uint32_t h = *reinterpret_cast<const uint32_t*>(st + kScaleOff + (gl * 16 + 2 * g) * 2);
        if (a.sdt == 1) {
          sa = __uint_as_float(h << 16), sb = __uint_as_float(h & 0xffff0000u);
        } else {
          sa = __half2float(__ushort_as_half(uint16_t(h))), sb = __half2float(__ushort_as_half(uint16_t(h >> 16)));
        }
      }
      uint32_t za = bias_pair(8), zb = bias_pair(8);
      if constexpr (HAS_Z) {
        const uint32_t z = *reinterpret_cast<const uint16_t*>(st + kZeroOff + gl * 16 + 2 * g);
        za = bias_pair(int(z & 0xFFu)), zb = bias_pair(int(z >> 8));
      }
      float s4[4] = {0.f, 0.f, 0.f, 0.f};
      // (v0, v4), (v1, v5) against (x0, x4), (x1, x5); then (v2, v6), (v3, v7)
      mma_bf16(s4, deq_pair(la, 0, za), deq_pair(lb, 0, zb), deq_pair(la, 4, za), deq_pair(lb, 4, zb),
               __byte_perm(X.x, X.z, 0x5410), __byte_perm(X.x, X.z, 0x7632));
      mma_bf16(s4, deq_pair(la, 8, za), deq_pair(lb, 8, zb), deq_pair(la, 12, za), deq_pair(lb, 12, zb),
               __byte_perm(X.y, X.w, 0x5410), __byte_perm(X.y, X.w, 0x7632));
      acc[0] = fmaf(sa, s4[0], acc[0]);
      acc[1] = fmaf(sa, s4[1], acc[1]);
      acc[2] = fmaf(sb, s4[2], acc[2]);
      acc[3] = fmaf(sb, s4[3], acc[3]);
    }
  }
};

template <class F>
constexpr int stage_bytes() {
  return 16 * F::kPitch + F::kMetaBytes;
}
template <class F>
constexpr size_t smem_bytes() {
  return size_t(kStages) * stage_bytes<F>() + 2 * kStages * 8 + 16;
}

struct Range {
  int64_t begin, end;  // units [begin, end)
};
// Units of block b. aligned: whole tiles per block (no workspace).
__device__ __forceinline__ int64_t range_start(int64_t b, int64_t G, int64_t units, int64_t tiles, int nch,
                                               bool aligned) {
  return aligned ? (tiles * b / G) * nch : units * b / G;
}
// The block whose range holds unit L (not aligned): the largest b with units * b / G <= L.
__device__ __forceinline__ int64_t block_of(int64_t L, int64_t G, int64_t units) { return ((L + 1) * G - 1) / units; }

template <class F, int EPI>
__global__ void __launch_bounds__(kThreads) gemv_bulk_kernel(const BulkArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // bulk copies and mbarrier transaction counts need sm_90; the dispatch never picks this kernel there
#else
  constexpr int kStageBytes = stage_bytes<F>();
  extern __shared__ __align__(128) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + size_t(kStages) * kStageBytes);
  uint64_t* empty = full + kStages;
  __shared__ float red[kConsumerWarps][4][32];

  const int N = a.N, K = a.K;
  const int tiles = (N + 15) / 16, nch = (K + F::kChunk - 1) / F::kChunk;
  const int64_t units = int64_t(tiles) * nch, G = gridDim.x;
  const bool aligned = a.ws == nullptr;
  const int64_t u0 = range_start(blockIdx.x, G, units, tiles, nch, aligned);
  const int64_t u1 = range_start(blockIdx.x + 1, G, units, tiles, nch, aligned);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], kConsumerWarps * 32);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  pdl_trigger();

  if (warp == kConsumerWarps) {  // ---- producer: weights only, so before the PDL wait
    for (int64_t L = u0; L < u1; ++L) {
      const int i = int(L - u0), s = i % kStages;
      if (i >= kStages) mbar_wait(&empty[s], uint32_t((i / kStages - 1) & 1));
      const int tile = int(L / nch), j = int(L % nch);
      const int k0 = j * F::kChunk, kc = min(F::kChunk, K - k0);
      const int rows = min(16, N - tile * 16);
      const uint32_t rb = F::bytes_of(kc);
      uint8_t* st = smem + size_t(s) * kStageBytes;
      // int4: the unit's groups of the tile's scales (and zeros), whole 16-row blocks (padded layout)
      uint32_t sbytes = 0, zbytes = 0;
      size_t meta0 = 0;
      if constexpr (F::kMetaBytes > 0) {
        const int gpu = F::kChunk >> (5 + a.gshift), ng = (kc >> 5) >> a.gshift;  // groups per unit, in this one
        meta0 = (size_t(tile) * size_t(K >> (5 + a.gshift)) + size_t(j) * gpu) * 16;
        sbytes = uint32_t(ng) * 16 * (a.sdt == 0 ? 4 : 2);
        zbytes = a.zeros ? uint32_t(ng) * 16 : 0;
      }
      if (lane == 0) mbar_expect_tx(&full[s], uint32_t(rows) * rb + sbytes + zbytes);
      __syncwarp();
      if (lane < rows) bulk_copy(st + lane * F::kPitch, a.w + (size_t(tile) * 16 + lane) * a.row_bytes + F::bytes_of(k0), rb,
                                 &full[s]);
      if constexpr (F::kMetaBytes > 0) {
        if (lane == 16)
          bulk_copy(st + F::kScaleOff, static_cast<const uint8_t*>(a.scales) + meta0 * (a.sdt == 0 ? 4 : 2), sbytes,
                    &full[s]);
        if (lane == 17 && zbytes) bulk_copy(st + F::kZeroOff, a.zeros + meta0, zbytes, &full[s]);
      }
    }
    return;
  }

  // ---- consumers
  pdl_wait();
  const int g = lane >> 2, c = lane & 3;
  const bool x_row = g < a.B;
  const bf16* xp = a.x + size_t(min(g, a.B - 1)) * K;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  int64_t seg_begin = u0;  // first unit of the current tile segment

  // adds the warps' accumulators and stores / hands over the tile segment [seg_begin, end)
  auto flush = [&](int64_t end) {
    const int tile = int(seg_begin / nch);
#pragma unroll
    for (int i = 0; i < 4; ++i) red[warp][i][lane] = acc[i], acc[i] = 0.f;
    consumers_sync();
    if (warp == 0) {
      float v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[i] = red[0][i][lane];
#pragma unroll
        for (int w = 1; w < kConsumerWarps; ++w) v[i] += red[w][i][lane];
      }
      const int64_t t_begin = int64_t(tile) * nch, t_end = t_begin + nch;
      bool store = true;
      if (seg_begin != t_begin || end != t_end) {  // the tile is cut across blocks
        const int slot = seg_begin == u0 ? 0 : 1;
#pragma unroll
        for (int i = 0; i < 4; ++i) a.ws[((size_t(blockIdx.x) * 2 + slot) * 4 + i) * 32 + lane] = v[i];
        __threadfence();
        __syncwarp();
        const int64_t b_first = block_of(t_begin, G, units), b_last = block_of(t_end - 1, G, units);
        unsigned prev = 0;
        if (lane == 0) prev = atomicAdd(&a.counters[tile], 1u);
        prev = __shfl_sync(0xffffffffu, prev, 0);
        store = prev == unsigned(b_last - b_first);
        if (store) {
          __threadfence();
#pragma unroll
          for (int i = 0; i < 4; ++i) v[i] = 0.f;
          for (int64_t b = b_first; b <= b_last; ++b) {
            // block b's part of this tile is in slot 0 if the tile holds b's first unit
            const int sl = range_start(b, G, units, tiles, nch, false) >= t_begin ? 0 : 1;
#pragma unroll
            for (int i = 0; i < 4; ++i) v[i] += __ldcg(a.ws + ((size_t(b) * 2 + sl) * 4 + i) * 32 + lane);
          }
          if (lane == 0) a.counters[tile] = 0;  // ready for the next launch
        }
      }
      if (store) {
        if constexpr (F::kRowScale) {  // int8: the row scales of rows g and g + 8 (clamped rows are not stored)
          const float sa = scale_at(a.scales, a.sdt, size_t(min(tile * 16 + g, N - 1)));
          const float sb = scale_at(a.scales, a.sdt, size_t(min(tile * 16 + g + 8, N - 1)));
          v[0] *= sa, v[1] *= sa, v[2] *= sb, v[3] *= sb;
        }
        tile_epilogue<EPI>(v, tile, g, c, a.B, N, a.out, a.ldo, a.ss_out);
      }
    }
    consumers_sync();  // red is rewritten by the next flush
  };

  for (int64_t L = u0; L < u1; ++L) {
    const int i = int(L - u0), s = i % kStages;
    if (L != seg_begin && L % nch == 0) {  // a new tile starts
      flush(L);
      seg_begin = L;
    }
    mbar_wait(&full[s], uint32_t((i / kStages) & 1));
    const int k0 = int(L % nch) * F::kChunk;
    F::consume(smem + size_t(s) * kStageBytes, a, k0, min(F::kChunk, K - k0), warp, g, c, x_row, xp, acc);
    // Every consumer thread arrives: an mbarrier arrive releases only its own thread's reads of the
    // stage, so one lane's arrive after __syncwarp would not order the other lanes' reads before
    // the producer's next bulk copy into it (compute-sanitizer racecheck flagged exactly that).
    mbar_arrive(&empty[s]);
  }
  if (u1 > u0) flush(u1);
#endif
}

template <class F, int EPI>
int blocks_per_sm() {
  static const int v = [] {
    CUDA_CHECK(cudaFuncSetAttribute(gemv_bulk_kernel<F, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem_bytes<F>())));
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_bulk_kernel<F, EPI>, kThreads, smem_bytes<F>()));
    return std::max(1, n);
  }();
  return v;
}

// Grid and launch; ws / counters (optional) split tiles across blocks.
template <class F, int EPI>
void launch_bulk(BulkArgs a, size_t ws_floats, int n_counters, cudaStream_t stream) {
  const int tiles = ceil_div(a.N, 16), nch = ceil_div(a.K, F::kChunk);
  const int64_t units = int64_t(tiles) * nch;
  const bool use_ws = a.ws && a.counters && n_counters >= tiles;
  int64_t G = int64_t(blocks_per_sm<F, EPI>()) * sm_count();
  if (use_ws)
    G = std::min<int64_t>(G, int64_t(ws_floats / 256));  // 2 slots of 128 floats per block
  else
    G = std::min<int64_t>(G, tiles);
  G = std::max<int64_t>(1, std::min(G, units));
  if (!use_ws || G == 1) a.ws = nullptr;
  launch(gemv_bulk_kernel<F, EPI>, dim3(unsigned(G)), dim3(kThreads), smem_bytes<F>(), stream, a);
}

template <class F>
void launch_epi(const BulkArgs& a, GemvEpilogue epi, size_t ws_floats, int n_counters, cudaStream_t stream) {
  switch (epi) {
    case GemvEpilogue::kStore: return launch_bulk<F, int(GemvEpilogue::kStore)>(a, ws_floats, n_counters, stream);
    case GemvEpilogue::kStoreF32: return launch_bulk<F, int(GemvEpilogue::kStoreF32)>(a, ws_floats, n_counters, stream);
    case GemvEpilogue::kAddF32: return launch_bulk<F, int(GemvEpilogue::kAddF32)>(a, ws_floats, n_counters, stream);
    case GemvEpilogue::kSwiGLU: return launch_bulk<F, int(GemvEpilogue::kSwiGLU)>(a, ws_floats, n_counters, stream);
  }
}

int log2_exact(int v) {
  int s = 0;
  while ((1 << s) < v) ++s;
  return (1 << s) == v ? s : -1;
}

}  // namespace

void gemv_bulk(const GemvArgs& a, int ldo, cudaStream_t stream) {
  BulkArgs b{static_cast<const uint8_t*>(a.W), size_t(a.K) * 2, nullptr, 0, nullptr, 0,
             static_cast<const bf16*>(a.x), a.B, a.N, a.K, a.out, ldo, a.ws, a.counters, a.ss_out};
  launch_epi<Bf16Fmt>(b, a.epi, a.ws_floats, a.n_counters, stream);
}

bool quant_bulk_supported(const QWeight& W) {
  if (W.type == QType::kInt8) return W.K % 64 == 0;
  if (W.type == QType::kInt4 && !W.mins) {
    const int s = log2_exact(W.group / 32);
    return W.group % 32 == 0 && s >= 0 && W.group <= Int4Fmt<false>::kChunk && W.K % W.group == 0;
  }
  return false;
}

void gemv_quant_bulk(const QGemvArgs& a, int ldo, cudaStream_t stream) {
  IGNIS_CHECK(quant_bulk_supported(a.W), "bulk-copy quantized GEMV: needs int8 with K % 64 == 0 or int4 with a "
              "power-of-two group of 32..1024 (K = ", a.W.K, ", group ", a.W.group, ")");
  const bool int4 = a.W.type == QType::kInt4;
  BulkArgs b{static_cast<const uint8_t*>(a.W.w), int4 ? size_t(a.W.K) / 2 : size_t(a.W.K), a.W.scales,
             scale_code(a.W.scale_dtype), a.W.zeros, int4 ? log2_exact(a.W.group / 32) : 0,
             static_cast<const bf16*>(a.x), a.B, a.W.N, a.W.K, a.out, ldo, a.ws, a.counters, nullptr};
  if (!int4) return launch_epi<Int8Fmt>(b, a.epi, a.ws_floats, a.n_counters, stream);
  if (a.W.zeros) return launch_epi<Int4Fmt<true>>(b, a.epi, a.ws_floats, a.n_counters, stream);
  launch_epi<Int4Fmt<false>>(b, a.epi, a.ws_floats, a.n_counters, stream);
}

}  // namespace ignis::cuda
