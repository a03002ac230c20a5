// The persistent batch-1 decode chain, ring engine (ChainArgs::ring): the same products as
// decode_chain.cu (a Llama layer's o, gate/up, down and the next q/k/v or the head, separated by
// grid barriers), but the weights reach the multipliers through a shared-memory ring filled by
// bulk copies (cp.async.bulk) that never waits for the activations.
//
// Why: every product of a decode step ends with a drain and starts with a ramp (~4-5 us each on an
// H200, four per layer), during which the memory pipe is idle. The weights do not depend on the
// activations, so a producer that only waits for free ring space can keep streaming the next
// product's weights while the multipliers finish this one, wait at the barrier and stage the next
// input. ring_probe (load_probe.cu, H200 2026-12-03, docs/results/ring-streaming-H200-20261203.txt)
// streams the 32 layers' 7B weight matrices this way at 4,292 GB/s with a grid barrier after each
// matrix (4,657 without; one load kernel per matrix: 3,980).
//
// Layout of the work:
//   grid = one block per SM (all co-resident: cooperative launch), 8 consumer warps + 1 producer warp.
//   Step s: its items (an output row; for SwiGLU an output j and its gate and up rows, 8 apart) are
//   split evenly over the blocks. A block's items go through the ring in stages of kRingStageBytes:
//   a stage holds n <= ips items, ips = kRingStageBytes / (R K 2) (R = rows an item), laid out
//   [r][i] (row r of item i at (r n + i) K 2 bytes), so consecutive items' rows are one bulk copy.
//   Stages are numbered across the steps of the launch (t = 0, 1, ...): stage t sits in ring slot
//   t % stages and is consumed by warp t % stages (stages <= 8 warps). One warp per slot is what makes
//   the parity wait safe: mbarrier.try_wait.parity only tells the parity of the phase, so a second
//   warp waiting for a slot's next use before the current use was consumed would pass at once.
//   producer (one lane): for each stage in order, waits for its slot to be free (empty barrier),
//     writes the stage's item range into the slot's meta, announces the bytes on the slot's full
//     barrier and issues the copies. After a step's stages it puts an END marker (no bytes) in every
//     slot. It never waits for a grid barrier, so it runs ahead into the next step as far as the ring
//     allows. With ChainArgs::ring_tail the last part of each step's items is not split in advance:
//     the producer takes a stage's worth at a time from the step's counter (atomicAdd), so the blocks
//     of fast SMs take more (the static split left the blocks finishing 4-6 us apart on an H200).
//   consumers: stage the step's input into shared memory as bf16 (the bf16 vector `in`, or the
//     RMSNorm of the fp32 residual x, read through L2: other blocks wrote it), then each warp takes
//     its stages: waits for the full barrier, computes its items (lane l: 16-byte chunks
//     c = l + 32 j of each row against the same 8 values of the input, fp32 accumulation, a warp sum;
//     lane 0 stores through the epilogue: exactly one warp owns each row, so the order is fixed and
//     no atomics are needed), then every lane arrives on the empty barrier. After the step the 256
//     consumer threads meet at the grid barrier (the producer never joins). A warp is done with a
//     step when its slot shows the step's END marker.
// Grid barrier: decode_chain.cu's growing 64-bit count, with a named barrier (bar.sync 1) for the
// consumer threads in place of __syncthreads.
// Bytes: the weights once, the input (and x for normed steps, twice) per block from L2, outputs once.
#include <algorithm>
#include <mutex>

#include "cuda/decode_chain_common.cuh"

namespace ignis::cuda {
namespace {

constexpr int kConsumerWarps = 8, kConsumers = 32 * kConsumerWarps, kThreads = kConsumers + 32;
constexpr int kMaxStages = 8;
static_assert(kMaxStages <= kConsumerWarps, "a consumer warp per ring slot");
constexpr int kBarBytes = 256;  // the full and empty barriers, 2 x kMaxStages x 8 bytes, padded
constexpr int kSmemLimit = 227 * 1024;
static_assert(kRingCounterWords == 2 * kChainMaxSteps + 1, "two counter sets and the epoch");

__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory"); }

__host__ __device__ constexpr size_t in_bytes(int max_k) { return (size_t(max_k) * 2 + 127) / 128 * 128; }

int ring_stages(int max_k) {
  const long long avail = kSmemLimit - 1024 - kBarBytes - static_cast<long long>(in_bytes(max_k));
  return int(std::min<long long>(kMaxStages, avail / kRingStageBytes));
}

// Rows an item, items a stage, and this block's items of step st: the static range [begin, end) of the
// first S items, and (dyn) the items [S, n) handed out at run time.
struct Plan {
  int R, ips, begin, end, S, n;
  size_t row_bytes;
};
__device__ __forceinline__ Plan plan_of(const ChainStep& st, float tail) {
  Plan p;
  p.R = st.epi == GemvEpilogue::kSwiGLU ? 2 : 1;
  p.n = st.N / p.R;
  p.row_bytes = size_t(st.K) * 2;
  p.ips = int(kRingStageBytes / (p.R * p.row_bytes));
  p.S = p.n - int(float(p.n) * tail);
  p.begin = int(int64_t(blockIdx.x) * p.S / gridDim.x);
  p.end = int(int64_t(blockIdx.x + 1) * p.S / gridDim.x);
  return p;
}
__device__ __forceinline__ int row_of(int R, int item, int r) {
  return R == 2 ? int(swiglu_row_of_gate(item)) + 8 * r : item;
}

// The producer (one lane). Per step: the static stages, then (tail > 0) stages of ips items taken from
// the step's counter until it passes n, then an END marker in every slot (meta n = -1, no bytes), so
// each consumer warp learns that the step is over in its own slot's order.
__device__ void produce(const ChainArgs& a, float tail, unsigned* ctr, int stages, uint8_t* ring, uint64_t* full,
                        uint64_t* empty, int (*meta)[2]) {
  long long t = 0;  // stages and markers issued so far: slot t % stages, use t / stages
  auto take_slot = [&]() {
    const int slot = int(t % stages);
    const long long use = t / stages;
    if (use > 0) mbar_wait(&empty[slot], uint32_t((use - 1) & 1));
    ++t;
    return slot;
  };
  for (int s = 0; s < a.n_steps; ++s) {
    const ChainStep& st = a.step[s];
    const Plan p = plan_of(st, tail);
    const uint8_t* W = static_cast<const uint8_t*>(st.W);
    auto issue = [&](int i0, int n) {
      const int slot = take_slot();
      meta[slot][0] = i0, meta[slot][1] = n;
      mbar_expect_tx(&full[slot], uint32_t(p.R * n * p.row_bytes));  // (its release publishes meta)
      uint8_t* dst = ring + size_t(slot) * kRingStageBytes;
      for (int r = 0; r < p.R; ++r)
        for (int i = 0; i < n;) {  // runs of consecutive rows: one copy each
          const int row0 = row_of(p.R, i0 + i, r);
          int run = 1;
          while (i + run < n && row_of(p.R, i0 + i + run, r) == row0 + run) ++run;
          bulk_copy(dst + (size_t(r) * n + i) * p.row_bytes, W + size_t(row0) * p.row_bytes,
                    uint32_t(run * p.row_bytes), &full[slot]);
          i += run;
        }
    };
    for (int i0 = p.begin; i0 < p.end; i0 += p.ips) issue(i0, min(p.ips, p.end - i0));
    if (p.S < p.n)
      for (;;) {
        const int c = p.S + int(atomicAdd(&ctr[s], unsigned(p.ips)));
        if (c >= p.n) break;
        issue(c, min(p.ips, p.n - c));
      }
    for (int k = 0; k < stages; ++k) {
      const int slot = take_slot();
      meta[slot][0] = 0, meta[slot][1] = -1;
      mbar_arrive(&full[slot]);
    }
  }
}

// The norm weights a consumer thread needs for a normed step, loaded before the grid barrier (they
// are constants): chunks i = ct + kConsumers j (8 values each), j < kNormJ, i.e. K <= 8 kNormJ kConsumers
// = kRingMaxNormK (decode_chain checks).
constexpr int kNormJ = kRingMaxNormK / 8 / kConsumers;
static_assert(kNormJ * 8 * kConsumers == kRingMaxNormK, "");
struct NormW {
  float4 w[2 * kNormJ];
};
__device__ __forceinline__ void load_norm_w(const ChainStep& st, NormW& nw) {
  if (!st.norm_w) return;
  const float4* w4 = reinterpret_cast<const float4*>(st.norm_w);
#pragma unroll
  for (int j = 0; j < kNormJ; ++j) {
    const int i = threadIdx.x + kConsumers * j;
    nw.w[2 * j] = nw.w[2 * j + 1] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (i < st.K / 8) nw.w[2 * j] = __ldg(w4 + 2 * i), nw.w[2 * j + 1] = __ldg(w4 + 2 * i + 1);
  }
}

__device__ __forceinline__ uint4 norm_chunk(float4 x0, float4 x1, float4 w0, float4 w1, float r) {
  // the rmsnorm kernel's order of operations: x * r * w, rounded to bf16
  return make_uint4(pack_bf16x2(x0.x * r * w0.x, x0.y * r * w0.y), pack_bf16x2(x0.z * r * w0.z, x0.w * r * w0.w),
                    pack_bf16x2(x1.x * r * w1.x, x1.y * r * w1.y), pack_bf16x2(x1.z * r * w1.z, x1.w * r * w1.w));
}

// Sum over the consumer threads (all of them call it; red: kConsumerWarps floats, free again after).
__device__ __forceinline__ float consumers_sum(float v, float* red) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  consumers_sync();
  float tot = 0.f;
#pragma unroll
  for (int w = 0; w < kConsumerWarps; ++w) tot += red[w];
  return tot;
}

// The step's input as bf16 into s_in (consumer threads; see the file comment). Every load of x or
// `in` is issued before any is used: one L2 round trip after the barrier, not one per loop pass.
__device__ void stage_input(const ChainStep& st, const float* x, float eps, const NormW& nw, uint4* s_in,
                            float* red) {
  const int ct = threadIdx.x, K = st.K;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  if (st.norm_w) {
    float4 xv[2 * kNormJ];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < kNormJ; ++j) {
      const int i = ct + kConsumers * j;
      xv[2 * j] = xv[2 * j + 1] = make_float4(0.f, 0.f, 0.f, 0.f);
      if (i < K / 8) xv[2 * j] = __ldcg(x4 + 2 * i), xv[2 * j + 1] = __ldcg(x4 + 2 * i + 1);  // through L2
    }
#pragma unroll
    for (int q = 0; q < 2 * kNormJ; ++q)
      ss = fmaf(xv[q].x, xv[q].x, fmaf(xv[q].y, xv[q].y, fmaf(xv[q].z, xv[q].z, fmaf(xv[q].w, xv[q].w, ss))));
    const float r = rsqrtf(consumers_sum(ss, red) / float(K) + eps);
#pragma unroll
    for (int j = 0; j < kNormJ; ++j) {
      const int i = ct + kConsumers * j;
      if (i < K / 8) s_in[i] = norm_chunk(xv[2 * j], xv[2 * j + 1], nw.w[2 * j], nw.w[2 * j + 1], r);
    }
  } else {
    const uint4* in = static_cast<const uint4*>(st.in);
    constexpr int kJ = kRingMaxK / 8 / kConsumers;  // chunks a thread at the largest K
    uint4 v[kJ];
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int i = ct + kConsumers * j;
      if (i < K / 8) v[j] = __ldcg(in + i);
    }
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int i = ct + kConsumers * j;
      if (i < K / 8) s_in[i] = v[j];
    }
  }
  consumers_sync();  // s_in complete; red free again
}

// Warp `warp`'s stages of step st, up to the step's END marker in its slot (u: the slot's uses so far).
template <int R, int EPI>
__device__ void consume_step(const ChainStep& st, const uint4* s_in, const uint8_t* ring, uint64_t* full,
                             uint64_t* empty, const int (*meta)[2], long long& u, int warp, int lane) {
  const int nc = st.K / 8;  // 16-byte chunks a row
  const uint4* sw = reinterpret_cast<const uint4*>(ring + size_t(warp) * kRingStageBytes);
  for (;; ++u) {
    mbar_wait(&full[warp], uint32_t(u & 1));
    const int i0 = meta[warp][0], n = meta[warp][1];
    if (n < 0) {  // END: the step is over for this slot
      mbar_arrive(&empty[warp]);
      ++u;
      return;
    }
    for (int i = 0; i < n; ++i) {
      float acc[R];
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = 0.f;
#pragma unroll 4
      for (int c = lane; c < nc; c += 32) {
        const uint4 xv = s_in[c];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = dot8(sw[(size_t(r) * n + i) * nc + c], xv, acc[r]);
      }
      float s2[2] = {0.f, 0.f};
#pragma unroll
      for (int r = 0; r < R; ++r) s2[r] = warp_sum(acc[r]);
      if (lane == 0) store_item<EPI>(st, i0 + i, s2);
    }
    mbar_arrive(&empty[warp]);  // every lane: its reads of the slot (and of meta) are done
  }
}

__global__ void __launch_bounds__(kThreads, 1) decode_ring_kernel(ChainArgs a, int stages) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float red[kConsumerWarps];
  __shared__ int meta[kMaxStages][2];  // per slot: first item, items (-1: END of the step)
  __shared__ unsigned s_parity;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem);
  uint64_t* empty = full + kMaxStages;
  uint4* s_in = reinterpret_cast<uint4*>(smem + kBarBytes);
  uint8_t* ring = smem + kBarBytes + in_bytes(a.max_k);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // the dynamic tail needs a grid barrier before block 0 can flip the counter set (see ChainArgs)
  const bool dyn = a.ring_tail > 0.f && a.ring_ctr && a.n_steps >= 2;
  unsigned* epoch = a.ring_ctr + 2 * kChainMaxSteps;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], 32);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    s_parity = dyn ? *reinterpret_cast<volatile unsigned*>(epoch) & 1u : 0u;
  }
  __syncthreads();  // (also: every block has read the epoch before any block passes the first barrier)
  const float tail = dyn ? a.ring_tail : 0.f;
  if (warp == kConsumerWarps) {  // the producer warp: one lane issues every copy
    if (lane == 0) produce(a, tail, dyn ? a.ring_ctr + s_parity * kChainMaxSteps : nullptr, stages, ring, full, empty, meta);
    return;
  }
  long long u = 0;  // this warp's slot: uses so far
  NormW nw;
  load_norm_w(a.step[0], nw);
#pragma unroll 1
  for (int s = 0; s < a.n_steps; ++s) {
    const ChainStep& st = a.step[s];
    stage_input(st, a.x, a.eps, nw, s_in, red);
    if (a.trace && threadIdx.x == 0) a.trace[(size_t(s) * gridDim.x + blockIdx.x) * 2] = global_ns();
    if (warp < stages) switch (st.epi) {  // warps past the slot count only stage inputs and meet at barriers
        case GemvEpilogue::kStore:
          consume_step<1, int(GemvEpilogue::kStore)>(st, s_in, ring, full, empty, meta, u, warp, lane);
          break;
        case GemvEpilogue::kStoreF32:
          consume_step<1, int(GemvEpilogue::kStoreF32)>(st, s_in, ring, full, empty, meta, u, warp, lane);
          break;
        case GemvEpilogue::kAddF32:
          consume_step<1, int(GemvEpilogue::kAddF32)>(st, s_in, ring, full, empty, meta, u, warp, lane);
          break;
        case GemvEpilogue::kSwiGLU:
          consume_step<2, int(GemvEpilogue::kSwiGLU)>(st, s_in, ring, full, empty, meta, u, warp, lane);
          break;
      }
    consumers_sync();  // every consumer warp is done with step s (its stores are issued)
    if (a.trace && threadIdx.x == 0) a.trace[(size_t(s) * gridDim.x + blockIdx.x) * 2 + 1] = global_ns();
    if (s + 1 == a.n_steps) break;
    load_norm_w(a.step[s + 1], nw);  // constants: before the barrier
    if (threadIdx.x == 0) grid_arrive_wait(a.barrier);  // the grid barrier (see decode_chain.cu)
    consumers_sync();  // thread 0's acquire happens before the block's reads of step s + 1
  }
  if (dyn && blockIdx.x == 0 && threadIdx.x == 0) {  // the other counter set, for the next launch
    for (int s = 0; s < kChainMaxSteps; ++s) a.ring_ctr[(s_parity ^ 1u) * kChainMaxSteps + s] = 0;
    __threadfence();
    *epoch += 1;
  }
}

}  // namespace

int decode_ring_grid() { return sm_count(); }

size_t decode_ring_smem(int max_k) {
  return size_t(kBarBytes) + in_bytes(max_k) + size_t(ring_stages(max_k)) * kRingStageBytes;
}

void launch_decode_ring(const ChainArgs& a, cudaStream_t stream) {
  const int stages = ring_stages(a.max_k);
  IGNIS_CHECK(stages >= 2, "decode_chain (ring): max_k ", a.max_k, " leaves shared memory for ", stages, " stages");
  const size_t smem = decode_ring_smem(a.max_k);
  static std::once_flag attr_once;
  std::call_once(attr_once, [] {
    CUDA_CHECK(cudaFuncSetAttribute(decode_ring_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemLimit - 1024));
  });
  launch_cooperative(decode_ring_kernel, dim3(decode_ring_grid()), dim3(kThreads), smem, stream, a, stages);
}

}  // namespace ignis::cuda
