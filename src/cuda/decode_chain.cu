// Persistent batch-1 decode chain: several bf16 decode products of one step (the Llama layer's
// o, gate/up, down and the next layer's q/k/v, or the output head) in ONE kernel launch, the
// products separated by grid-wide barriers instead of kernel boundaries, the RMSNorms in front of
// them done inside.
//
// Why: at batch 1 a 7B decode step is ~225 short kernels (GEMVs of 8-90 MB, norms, attention),
// and each kernel boundary costs the drain of the last blocks, the launch, and the ramp until
// enough loads are in flight again. Here every block stays resident; before it waits at a
// barrier it already issues the first weight loads of its next product (weights never depend on
// the activations), so the ramp of the next product overlaps the barrier wait.
//
// Layout of the work:
//   grid = blocks_per_sm x SMs (all co-resident: cooperative launch), 512 threads a block.
//   Step s: the block stages its input vector into shared memory as bf16 — either a bf16 vector
//   written earlier (`in`, read through L2: another block may have written it), or the RMSNorm
//   h = bf16(x / sqrt(mean(x^2) + eps) * norm_w) of the fp32 residual stream x (each block sums
//   x^2 itself: 4 K bytes from L2; norm_w was put in shared memory before the barrier). The
//   step's output items (one output row, or for SwiGLU one output j and its two weight rows, gate
//   and up, 8 apart) are split evenly over the blocks; warp w of a block starts with the block's
//   item w and then takes the next free item from a shared-memory counter, so the warps of a
//   block balance themselves. Each lane reads 16 bytes (8 bf16) of a row at chunk
//   c = lane + 32 i, multiplies with the same 8 values of the staged input (conflict-free
//   16-byte shared loads), fp32 accumulation; a warp shuffle sum gives the item, which lane 0
//   stores through the epilogue (bf16 store, fp32 store, fp32 residual add x += y — exactly one
//   warp owns each row, so no atomics and a fixed summation order — or silu(gate) * up).
//   A warp's (item, group of 4 chunks) pairs form one sequence loaded into two alternating
//   register buffers, so the loads of the next group (also of the next item) are in flight while
//   the current one is multiplied.
//   Between steps: prefetch of the next step's first group, then the grid barrier.
// Grid barrier: a 64-bit arrival count that only grows: thread 0 of each block adds 1 with release
// semantics (after a __syncthreads, so the release covers the whole block's writes) and polls with
// acquire loads until the count reaches the next multiple of the grid size. The sense-reversing
// barrier this replaced had the last arriver reset the count and then bump a generation word, one
// more round trip to L2 per barrier: the trace on an H200 (2026-12-02) showed the gap from the last
// block's end of a product to the first block's start of the next shrink by 0.8-1.0 us. The count
// must start at a multiple of the grid size, so one barrier serves one grid size (decode_chain checks).
// Bytes: the weights once (the point), the input K (x 4 K + norm_w 4 K for normed steps) per
// block from L2, outputs once.
#include <algorithm>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "cuda/common.h"
#include "cuda/decode_chain_common.cuh"
#include "cuda/gemv_common.cuh"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

// 512 threads a block, registers capped for 2 blocks an SM (64), two register buffers of 4
// 16-byte weight loads per lane. Measured on an H200 (2026-12-02, Llama-2-7B decode, chain on):
// 256 x 4 blocks 237.6 tok/s, 512 x 1 with 8 loads a buffer 237.6, 1024 x 1 248.7, this one 250.7.
constexpr int kThreads = 512, kMinBlocks = 2, kLoads = 4;

__device__ void grid_barrier(unsigned long long* count) {
  __syncthreads();  // the block's writes happen before thread 0's release
  if (threadIdx.x == 0) grid_arrive_wait(count);
  __syncthreads();  // thread 0's acquire happens before the block's reads
}

// Loads group gi (chunks 32 (gi U + u) + lane, u < U = kLoads / R) of the item's R rows.
template <int R>
__device__ __forceinline__ void load_group(const bf16* W, int K, int item, int gi, int lane, uint4 (&buf)[kLoads]) {
  constexpr int U = kLoads / R;
  int rows[R];
  item_rows<R>(item, rows);
  const int nchunk = K / 8;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = (gi * U + u) * 32 + lane;
#pragma unroll
    for (int r = 0; r < R; ++r)
      buf[u * R + r] = c < nchunk ? ld_w16(W + size_t(rows[r]) * K + size_t(c) * 8) : make_uint4(0, 0, 0, 0);
  }
}

// The (item, group) sequence of a warp in a step. Block b owns the items [begin, end) of an even
// split over the grid; its warp w starts with item begin + w, then each warp that finishes an
// item takes the next one from a shared counter (so the warps of a block balance themselves:
// rows cost the same but warps do not run at the same speed). Two register buffers hold the
// next two groups of the sequence, loaded in order and consumed in order.
struct Buf {
  uint4 w[kLoads];
  int item, gi;  // what w holds; item < 0: the sequence has ended (-2: not loaded yet)
};
struct Cursor {
  int item, gi;      // next (item, group) to load
  int end, groups;   // this block's item end; load groups per item
  int begin;
};

__device__ __forceinline__ int next_item(int* s_next, int begin, int lane) {
  int v = 0;
  if (lane == 0) v = atomicAdd(s_next, 1);
  return begin + __shfl_sync(0xffffffffu, v, 0);
}

template <int R>
__device__ __forceinline__ void load_next(const bf16* W, int K, Cursor& c, Buf& b, int* s_next, int lane) {
  if (c.gi == c.groups) {  // the item is fully loaded: take the next one
    c.item = next_item(s_next, c.begin, lane);
    c.gi = 0;
  }
  if (c.item >= c.end) {
    b.item = -1;
    return;
  }
  load_group<R>(W, K, c.item, c.gi, lane, b.w);
  b.item = c.item, b.gi = c.gi;
  ++c.gi;
}

template <int R>
__device__ __forceinline__ int step_items(const ChainStep& st) { return R == 2 ? st.N / 2 : st.N; }

// Sets the cursor to this warp's first item of step st and loads its first group (and its second
// when the item has more than one; a one-group item's successor is taken from the counter
// later, after the counter has been reset for this step).
template <int R>
__device__ void begin_step(const ChainStep& st, Cursor& c, Buf& a, Buf& b, int warp, int lane) {
  constexpr int U = kLoads / R;
  const int n = step_items<R>(st);
  c.begin = int(int64_t(blockIdx.x) * n / gridDim.x);
  c.end = int(int64_t(blockIdx.x + 1) * n / gridDim.x);
  c.groups = (st.K / 8 + 32 * U - 1) / (32 * U);
  c.item = c.begin + warp, c.gi = 0;
  const bf16* W = static_cast<const bf16*>(st.W);
  load_next<R>(W, st.K, c, a, nullptr, lane);
  b.item = a.item < 0 ? -1 : -2;
  if (a.item >= 0 && c.groups > 1) load_next<R>(W, st.K, c, b, nullptr, lane);
}

// One product of the chain, from the state begin_step left.
template <int R, int EPI>
__device__ void run_step(const ChainStep& st, const uint4* s_in, Cursor& c, Buf& a, Buf& b, int* s_next,
                         int lane) {
  constexpr int U = kLoads / R;
  const bf16* W = static_cast<const bf16*>(st.W);
  const int K = st.K, nchunk = K / 8;
  if (b.item == -2) load_next<R>(W, K, c, b, s_next, lane);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  auto compute = [&](const Buf& buf) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int ch = (buf.gi * U + u) * 32 + lane;
      if (ch < nchunk) {
        const uint4 xv = s_in[ch];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = dot8(buf.w[u * R + r], xv, acc[r]);
      }
    }
    if (buf.gi == c.groups - 1) {  // item finished
      float s[2] = {0.f, 0.f};
#pragma unroll
      for (int r = 0; r < R; ++r) {
        s[r] = warp_sum(acc[r]);
        acc[r] = 0.f;
      }
      if (lane == 0) store_item<EPI>(st, buf.item, s);
    }
  };
  while (a.item >= 0) {
    compute(a);
    load_next<R>(W, K, c, a, s_next, lane);
    if (b.item < 0) break;
    compute(b);
    load_next<R>(W, K, c, b, s_next, lane);
  }
}

// Stages the step's input into shared memory as bf16 (see the file comment). s_f: float[K]
// scratch for x, s_nw: the step's norm weights (normed steps, staged by stage_norm_w).
__device__ void stage_input(const ChainStep& st, const float* x, float eps, uint4* s_in, float* s_f,
                            const float* s_nw, float* red, int* s_next) {
  const int K = st.K;
  if (threadIdx.x == 0) *s_next = int(blockDim.x / 32);  // warp w took item begin + w already
  if (st.norm_w) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* s_f4 = reinterpret_cast<float4*>(s_f);
    float ss = 0.f;
    for (int i = threadIdx.x; i < K / 4; i += blockDim.x) {
      const float4 v = __ldcg(x4 + i);  // written by other blocks: through L2, not a stale L1 line
      s_f4[i] = v;
      ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
    }
    ss = block_sum(ss, red);  // its __syncthreads also publishes s_f
    const float r = rsqrtf(ss / float(K) + eps);
    const float4* w4 = reinterpret_cast<const float4*>(s_nw);
    for (int i = threadIdx.x; i < K / 8; i += blockDim.x) {
      const float4 w0 = w4[2 * i], w1 = w4[2 * i + 1];
      const float4 x0 = s_f4[2 * i], x1 = s_f4[2 * i + 1];
      // the rmsnorm kernel's order of operations: x * r * w, rounded to bf16
      s_in[i] = make_uint4(pack_bf16x2(x0.x * r * w0.x, x0.y * r * w0.y), pack_bf16x2(x0.z * r * w0.z, x0.w * r * w0.w),
                           pack_bf16x2(x1.x * r * w1.x, x1.y * r * w1.y), pack_bf16x2(x1.z * r * w1.z, x1.w * r * w1.w));
    }
  } else {
    const uint4* in = static_cast<const uint4*>(st.in);
    for (int i = threadIdx.x; i < K / 8; i += blockDim.x) s_in[i] = __ldcg(in + i);
  }
  __syncthreads();
}

// The norm weights of a normed step into shared memory (constant: done before the barrier).
__device__ void stage_norm_w(const ChainStep& st, float* s_nw) {
  if (!st.norm_w) return;
  const float4* w4 = reinterpret_cast<const float4*>(st.norm_w);
  for (int i = threadIdx.x; i < st.K / 4; i += blockDim.x) reinterpret_cast<float4*>(s_nw)[i] = __ldg(w4 + i);
}

__device__ __forceinline__ void begin_any(const ChainStep& st, Cursor& c, Buf& a, Buf& b, int warp, int lane) {
  if (st.epi == GemvEpilogue::kSwiGLU)
    begin_step<2>(st, c, a, b, warp, lane);
  else
    begin_step<1>(st, c, a, b, warp, lane);
}

__global__ void __launch_bounds__(kThreads, kMinBlocks) decode_chain_kernel(ChainArgs a) {
  extern __shared__ uint4 s_dyn[];
  __shared__ float red[32];
  __shared__ int s_next;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint4* s_in = s_dyn;                                          // bf16 [max_k]
  float* s_f = reinterpret_cast<float*>(s_dyn + a.max_k / 8);  // float [norm_k]
  float* s_nw = s_f + a.norm_k;                                // float [norm_k]
  Cursor c;
  Buf ba, bb;
  begin_any(a.step[0], c, ba, bb, warp, lane);
  stage_norm_w(a.step[0], s_nw);
#pragma unroll 1
  for (int s = 0; s < a.n_steps; ++s) {
    const ChainStep& st = a.step[s];
    stage_input(st, a.x, a.eps, s_in, s_f, s_nw, red, &s_next);
    if (a.trace && threadIdx.x == 0) a.trace[(size_t(s) * gridDim.x + blockIdx.x) * 2] = global_ns();
    switch (st.epi) {
      case GemvEpilogue::kStore: run_step<1, int(GemvEpilogue::kStore)>(st, s_in, c, ba, bb, &s_next, lane); break;
      case GemvEpilogue::kStoreF32: run_step<1, int(GemvEpilogue::kStoreF32)>(st, s_in, c, ba, bb, &s_next, lane); break;
      case GemvEpilogue::kAddF32: run_step<1, int(GemvEpilogue::kAddF32)>(st, s_in, c, ba, bb, &s_next, lane); break;
      case GemvEpilogue::kSwiGLU: run_step<2, int(GemvEpilogue::kSwiGLU)>(st, s_in, c, ba, bb, &s_next, lane); break;
    }
    if (s + 1 == a.n_steps) {
      if (a.trace) {
        __syncthreads();
        if (threadIdx.x == 0) a.trace[(size_t(s) * gridDim.x + blockIdx.x) * 2 + 1] = global_ns();
      }
      break;
    }
    // weights do not depend on this step's outputs: start the next step's loads as soon as this
    // warp is done (the others of the block may still be working), then wait
    begin_any(a.step[s + 1], c, ba, bb, warp, lane);
    __syncthreads();  // every warp is done with s_in / s_nw before stage_norm_w overwrites s_nw
    if (a.trace && threadIdx.x == 0) a.trace[(size_t(s) * gridDim.x + blockIdx.x) * 2 + 1] = global_ns();
    stage_norm_w(a.step[s + 1], s_nw);
    grid_barrier(a.barrier);
  }
}


}  // namespace

// Which grid size each barrier count serves (decode_chain_barrier_init forgets a barrier, so a
// buffer freed and allocated again at the same address starts afresh).
namespace {
std::mutex barrier_mu;
std::unordered_map<const void*, int> barrier_grid;
}  // namespace

void decode_chain_barrier_init(unsigned long long* barrier, cudaStream_t stream) {
  {
    std::lock_guard<std::mutex> lock(barrier_mu);
    barrier_grid.erase(barrier);
  }
  CUDA_CHECK(cudaMemsetAsync(barrier, 0, sizeof(unsigned long long), stream));
}

size_t decode_chain_smem(int max_k, int norm_k) { return size_t(max_k) * 2 + size_t(norm_k) * 8; }

int decode_chain_grid(int max_k, int norm_k, bool ring) {
  if (ring) return decode_ring_grid();
  static int cached_dev = -1, cached_k = -1, cached_nk = -1, cached = 0;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (cached_dev == dev && cached_k == max_k && cached_nk == norm_k) return cached;
  const size_t smem = decode_chain_smem(max_k, norm_k);
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(decode_chain_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, decode_chain_kernel, kThreads, smem));
  IGNIS_CHECK(per_sm >= 1, "decode_chain: the kernel does not fit on a multiprocessor (", smem,
              " bytes of shared memory)");
  cached_dev = dev, cached_k = max_k, cached_nk = norm_k, cached = per_sm * sm_count();
  return cached;
}

void decode_chain(const ChainArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(a.n_steps >= 1 && a.n_steps <= kChainMaxSteps, "decode_chain: 1..", kChainMaxSteps,
              " steps, got ", a.n_steps);
  IGNIS_CHECK(a.barrier && reinterpret_cast<uintptr_t>(a.barrier) % 8 == 0,
              "decode_chain: needs a zeroed, 8-byte aligned 64-bit barrier count");
  for (int s = 0; s < a.n_steps; ++s) {
    const ChainStep& st = a.step[s];
    IGNIS_CHECK(st.W && st.out && st.N > 0 && st.K > 0 && st.K % 8 == 0 && st.K <= a.max_k &&
                    (!st.norm_w || st.K <= a.norm_k),
                "decode_chain: step ", s, ": bad shape ", st.N, "x", st.K, " (K % 8 == 0, K <= max_k ", a.max_k,
                ", normed K <= norm_k ", a.norm_k, ")");
    IGNIS_CHECK(st.norm_w ? a.x != nullptr : st.in != nullptr, "decode_chain: step ", s, " has no input");
    auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    IGNIS_CHECK(aligned(st.W) && aligned(st.in) && aligned(st.norm_w) && (!st.norm_w || aligned(a.x)),
                "decode_chain: step ", s, ": weights, input, norm weights and x must be 16-byte aligned");
    IGNIS_CHECK(st.epi != GemvEpilogue::kSwiGLU || st.N % 16 == 0, "decode_chain: SwiGLU needs N % 16 == 0");
    IGNIS_CHECK(!a.ring || (st.epi == GemvEpilogue::kSwiGLU ? 4 : 2) * size_t(st.K) <= size_t(kRingStageBytes),
                "decode_chain (ring): step ", s, ": a row pair of K = ", st.K, " does not fit a ", kRingStageBytes,
                "-byte stage");
    IGNIS_CHECK(!a.ring || !st.norm_w || st.K <= kRingMaxNormK, "decode_chain (ring): normed step ", s, ": K = ", st.K,
                " > ", kRingMaxNormK);
  }
  IGNIS_CHECK(!a.ring || device_has_bulk_copy(), "decode_chain (ring): bulk copies need an sm_90 GPU");
  IGNIS_CHECK(!a.ring || a.max_k <= kRingMaxK, "decode_chain (ring): max_k ", a.max_k, " > ", kRingMaxK);
  IGNIS_CHECK(a.ring_tail >= 0.f && a.ring_tail <= 0.5f && (a.ring_tail == 0.f || a.ring_ctr),
              "decode_chain (ring): ring_tail must be in [0, 0.5] and needs ring_ctr");
  const int grid = decode_chain_grid(a.max_k, a.norm_k, a.ring);
  {  // the barrier count is a multiple of the grid size between launches: one barrier, one grid
    std::lock_guard<std::mutex> lock(barrier_mu);
    auto [it, fresh] = barrier_grid.emplace(a.barrier, grid);
    IGNIS_CHECK(fresh || it->second == grid, "decode_chain: this barrier was used with a grid of ", it->second,
                " blocks, now ", grid, " (another max_k / norm_k or device): give each its own barrier");
  }
  if (a.ring) return launch_decode_ring(a, stream);
  launch_cooperative(decode_chain_kernel, dim3(grid), dim3(kThreads), decode_chain_smem(a.max_k, a.norm_k), stream, a);
}

}  // namespace ignis::cuda
