// Decode GEMV, y[B, N] = x[B, K] W[N, K]^T (bf16, B = 1..8, fp32 accumulation), with the weights
// streamed into shared memory by the bulk-copy engine (Hopper cp.async.bulk + mbarrier), for
// memory bandwidth the register-streaming kernel of gemv.cu does not reach on an H200.
//
// Why: the register kernel keeps ~8 KB of loads in flight per warp and, at 128 registers a thread,
// 16 warps per SM; on an H200 (4.2 TB/s copy) it streamed ~2.4 TB/s in a decode step. A bulk copy is
// one instruction for a whole row segment, tracked by the copy engine rather than by per-thread
// registers and scoreboards, so the bytes in flight are bounded by shared memory instead.
//
// Work: the weight is cut into units of (tile of 16 rows) x (chunk of 256 k) = 8 KB; units are
// numbered tile-major (all chunks of tile 0, then tile 1, ...) and the persistent grid (as many
// blocks as fit on the GPU) gives each block one contiguous range of units. So every block streams
// about the same number of bytes whatever N and K are (no wave quantization, no per-shape split
// heuristics), and a tile is cut across at most a few neighbouring blocks.
//
// Block: 4 consumer warps + 1 producer warp, kStages shared-memory stages of one unit each.
//   producer (lanes 0..15, one row each): waits until a stage is free (empty barrier), announces
//     its bytes on the stage's full barrier, and issues the 16 row copies (512 B each, less at the
//     end of K; rows past N are not copied and their results are never stored). The weights do not
//     depend on earlier kernels, so this starts before the PDL wait.
//   consumers: wait for a stage (full barrier), then warp w multiplies k in [64 w, 64 w + 64) of the
//     unit: lane (g, c) reads 16 bytes of rows g and g + 8 at k = 8c (+32) from shared memory, which
//     are the A fragments of mma.m16n8k16 as in gemv.cu (x[b = g] at the same k is the B fragment);
//     then releases the stage (every consumer thread arrives). Rows are 576 bytes apart in shared memory
//     (512 + 64): lanes g and g + 1 of a phase land in different halves of the banks (no conflicts).
//   When a block's tile changes (or its range ends), the 4 warps add their accumulators in shared
//   memory; warp 0 stores the tile (tile_epilogue) if the block covered all of it, else writes its
//   part to the workspace and bumps the tile's counter: the last of the tile's blocks adds the parts
//   in block order (deterministic) and stores. Each block has at most two cut tiles (its first and
//   its last), so the workspace is 2 slots x 128 floats per block.
// Without a workspace the ranges are whole tiles (nothing is ever cut).
//
// Bytes moved: N*K*2 of W once, x (B*K*2) from L1/L2 per block, the outputs, 1 KB per cut tile.
#include <algorithm>

#include "cuda/gemv_common.cuh"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kChunk = 256;                 // k per unit
constexpr int kPitch = kChunk * 2 + 64;     // bytes between rows of a stage in shared memory
constexpr int kStageBytes = 16 * kPitch;    // 9 KB
constexpr int kStages = 5;
constexpr int kConsumerWarps = 4;
constexpr int kThreads = (kConsumerWarps + 1) * 32;
constexpr size_t kSmemBytes = size_t(kStages) * kStageBytes + 2 * kStages * 8 + 16;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}
// bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned), completing on bar
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                   smem_u32(dst)),
               "l"(src), "r"(bytes), "r"(smem_u32(bar))
               : "memory");
}
// the 4 consumer warps only (the producer warp never joins)
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumerWarps * 32)); }

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

template <int EPI>
__global__ void __launch_bounds__(kThreads) gemv_bulk_kernel(const bf16* __restrict__ W, const bf16* __restrict__ x,
                                                             int B, int N, int K, void* out, int ldo,
                                                             float* __restrict__ ws, unsigned* counters,
                                                             float* __restrict__ ss_out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  __trap();  // bulk copies and mbarrier transaction counts need sm_90; gemv() never picks this kernel there
#else
  extern __shared__ __align__(128) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + size_t(kStages) * kStageBytes);
  uint64_t* empty = full + kStages;
  __shared__ float red[kConsumerWarps][4][32];

  const int tiles = (N + 15) / 16, nch = (K + kChunk - 1) / kChunk;
  const int64_t units = int64_t(tiles) * nch, G = gridDim.x;
  const bool aligned = ws == nullptr;
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
      const int k0 = j * kChunk, kc = min(kChunk, K - k0);
      const int rows = min(16, N - tile * 16);
      if (lane == 0) mbar_expect_tx(&full[s], uint32_t(rows * kc * 2));
      __syncwarp();
      if (lane < rows)
        bulk_copy(smem + size_t(s) * kStageBytes + lane * kPitch, W + (size_t(tile) * 16 + lane) * K + k0,
                  uint32_t(kc * 2), &full[s]);
    }
    return;
  }

  // ---- consumers
  pdl_wait();
  const int g = lane >> 2, c = lane & 3;
  const bool x_row = g < B;
  const bf16* xp = x + size_t(min(g, B - 1)) * K;
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
        for (int i = 0; i < 4; ++i) ws[((size_t(blockIdx.x) * 2 + slot) * 4 + i) * 32 + lane] = v[i];
        __threadfence();
        __syncwarp();
        const int64_t b_first = block_of(t_begin, G, units), b_last = block_of(t_end - 1, G, units);
        unsigned prev = 0;
        if (lane == 0) prev = atomicAdd(&counters[tile], 1u);
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
            for (int i = 0; i < 4; ++i) v[i] += __ldcg(ws + ((size_t(b) * 2 + sl) * 4 + i) * 32 + lane);
          }
          if (lane == 0) counters[tile] = 0;  // ready for the next launch
        }
      }
      if (store) tile_epilogue<EPI>(v, tile, g, c, B, N, out, ldo, ss_out);
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
    const int k0 = int(L % nch) * kChunk;
    const uint8_t* st = smem + size_t(s) * kStageBytes;
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int kl = 64 * warp + 32 * u + 8 * c;  // k within the unit
      const int k = k0 + kl;
      uint4 a_lo = make_uint4(0, 0, 0, 0), a_hi = make_uint4(0, 0, 0, 0), xv = make_uint4(0, 0, 0, 0);
      if (k < K) {
        a_lo = *reinterpret_cast<const uint4*>(st + g * kPitch + kl * 2);
        a_hi = *reinterpret_cast<const uint4*>(st + (g + 8) * kPitch + kl * 2);
        if (x_row) xv = __ldg(reinterpret_cast<const uint4*>(xp + k));
      }
      mma_bf16(acc, a_lo.x, a_hi.x, a_lo.y, a_hi.y, xv.x, xv.y);
      mma_bf16(acc, a_lo.z, a_hi.z, a_lo.w, a_hi.w, xv.z, xv.w);
    }
    // Every consumer thread arrives: an mbarrier arrive releases only its own thread's reads of the
    // stage, so one lane's arrive after __syncwarp would not order the other lanes' reads before
    // the producer's next bulk copy into it (compute-sanitizer racecheck flagged exactly that).
    mbar_arrive(&empty[s]);
  }
  if (u1 > u0) flush(u1);
#endif
}

template <int EPI>
int blocks_per_sm() {
  static const int v = [] {
    CUDA_CHECK(cudaFuncSetAttribute(gemv_bulk_kernel<EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(kSmemBytes)));
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_bulk_kernel<EPI>, kThreads, kSmemBytes));
    return std::max(1, n);
  }();
  return v;
}

template <int EPI>
void launch_bulk(const GemvArgs& a, int ldo, cudaStream_t stream) {
  const int tiles = ceil_div(a.N, 16), nch = ceil_div(a.K, kChunk);
  const int64_t units = int64_t(tiles) * nch;
  const bool use_ws = a.ws && a.counters && a.n_counters >= tiles;
  int64_t G = int64_t(blocks_per_sm<EPI>()) * sm_count();
  if (use_ws)
    G = std::min<int64_t>(G, int64_t(a.ws_floats / 256));  // 2 slots of 128 floats per block
  else
    G = std::min<int64_t>(G, tiles);
  G = std::max<int64_t>(1, std::min(G, units));
  launch(gemv_bulk_kernel<EPI>, dim3(unsigned(G)), dim3(kThreads), kSmemBytes, stream, static_cast<const bf16*>(a.W),
         static_cast<const bf16*>(a.x), a.B, a.N, a.K, a.out, ldo, use_ws && G > 1 ? a.ws : nullptr, a.counters,
         a.ss_out);
}

}  // namespace

void gemv_bulk(const GemvArgs& a, int ldo, cudaStream_t stream) {
  switch (a.epi) {
    case GemvEpilogue::kStore: return launch_bulk<int(GemvEpilogue::kStore)>(a, ldo, stream);
    case GemvEpilogue::kStoreF32: return launch_bulk<int(GemvEpilogue::kStoreF32)>(a, ldo, stream);
    case GemvEpilogue::kAddF32: return launch_bulk<int(GemvEpilogue::kAddF32)>(a, ldo, stream);
    case GemvEpilogue::kSwiGLU: return launch_bulk<int(GemvEpilogue::kSwiGLU)>(a, ldo, stream);
  }
}

}  // namespace ignis::cuda
