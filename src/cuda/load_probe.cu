// Diagnostics: kernels that only load bytes, in the access patterns of the decode GEMVs, so a
// timing test can tell how fast each pattern streams from DRAM with no arithmetic in the way
// (CudaQuant.DISABLED_LoadPatterns). Each thread folds what it loads into one word with XOR and
// stores it only if it equals a value it never has (so the loads cannot be dropped). Loads are the
// GEMVs' own (ld_w16: no L1 allocation).
//
// A matrix of `rows` rows of `rbytes` bytes, rows % 16 == 0, rbytes % 64 == 0:
//   kTile16:      the int4 tensor-core GEMV's pattern (gemv_int4_tc.cu): block per 16-row tile, 4
//                 warps; per 64-byte step lane (g, c) loads 16 bytes of rows g and g + 8 at 16 c; warp
//                 w takes steps w, w + 4, ...; two register buffers of U steps (U = 2 and 4).
//   kTileContig:  the same work per warp, but the tile's step is 1 KB contiguous (a repacked
//                 layout): lane l loads bytes 16 l and 512 + 16 l of it.
//   kWarpRow:     the bf16 CUDA-core GEMV's pattern (gemv.cu): a warp per row, lane l loads 16 bytes at
//                 512 i + 16 l, 4 loads in flight; 4 warps a block.
//   kBulk16K/32K: a block per 16 / 32 KB piece of the matrix (flat bytes), fetched by ONE bulk copy into
//                 shared memory (cp.async.bulk + mbarrier), then read by its 128 threads; many blocks an
//                 SM (by shared memory), scheduled by the hardware like any kernel's. The question: does
//                 a contiguous bulk request stream faster from DRAM than warps' 512-byte loads (ring_probe,
//                 persistent, reached 4.66 TB/s where kWarpRow got 3.98, H200 2026-12-03)?
//
// ring_probe: the question behind a persistent decode kernel. A sequence of products (byte ranges, e.g.
// the 4 weight matrices of each of 32 layers) is streamed by ONE persistent kernel (a block per SM):
// a producer warp copies contiguous chunks into a shared-memory ring with bulk copies (cp.async.bulk,
// completing on the stage's mbarrier) and never waits for anything but a free stage, so it runs
// ahead across product boundaries; the consumer warps read each stage (XOR fold) and release it.
// With `barriers`, the consumers of all blocks meet at a grid barrier after each product (what a
// real chain needs: the next product's input is the previous one's output) while the producer keeps
// streaming. Each block takes a contiguous run of each product's chunks. The XOR of everything read
// goes to sink[0] (atomicXor), so a test can check every byte arrived.
#include <mutex>

#include "cuda/common.h"
#include "cuda/gemv_common.cuh"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

__device__ __forceinline__ unsigned fold(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

template <int U, bool CONTIG>
__global__ void __launch_bounds__(128) probe_tile_kernel(const uint8_t* __restrict__ w, int rbytes,
                                                         unsigned* sink) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
  const size_t tile = blockIdx.x;
  const int nsteps = rbytes / 64;
  const uint8_t* pa = CONTIG ? w + tile * 16 * size_t(rbytes) + 16 * lane : w + (tile * 16 + g) * size_t(rbytes) + 16 * c;
  const uint8_t* pb = CONTIG ? pa + 512 : pa + 8 * size_t(rbytes);
  const size_t stride = CONTIG ? 1024 : 64;  // bytes per step
  unsigned acc = 0;
  uint4 b0[2 * U], b1[2 * U];
  auto load = [&](uint4 (&b)[2 * U], int t0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int s = warp + 4 * (t0 + u);
      const bool ok = s < nsteps;
      b[2 * u] = ok ? ld_w16(pa + s * stride) : make_uint4(0, 0, 0, 0);
      b[2 * u + 1] = ok ? ld_w16(pb + s * stride) : make_uint4(0, 0, 0, 0);
    }
  };
  auto use = [&](const uint4 (&b)[2 * U]) {
#pragma unroll
    for (int i = 0; i < 2 * U; ++i) acc ^= fold(b[i]);
  };
  load(b0, 0);
  load(b1, U);
  for (int t0 = 0; warp + 4 * t0 < nsteps; t0 += 2 * U) {
    use(b0);
    load(b0, t0 + 2 * U);
    use(b1);
    load(b1, t0 + 3 * U);
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

__global__ void __launch_bounds__(128) probe_warp_row_kernel(const uint8_t* __restrict__ w, int rows, int rbytes,
                                                             unsigned* sink) {
  const int lane = threadIdx.x & 31, row = blockIdx.x * 4 + (threadIdx.x >> 5);
  if (row >= rows) return;
  const uint8_t* p = w + size_t(row) * rbytes + 16 * lane;
  unsigned acc = 0;
  const int n = rbytes / 512;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = ld_w16(p + size_t(i + u) * 512);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= fold(v[u]);
  }
  for (; size_t(i) * 512 < size_t(rbytes); ++i)
    if (i * 512 + 16 * lane < rbytes) acc ^= fold(ld_w16(p + size_t(i) * 512));
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

// Consumer-only grid barrier (the producer warp never joins): a 64-bit count that only grows, as in
// decode_chain.cu; bar.sync 1 spans the consumer threads.
__device__ void consumer_grid_barrier(unsigned long long* count, int nthreads, bool leader) {
  asm volatile("bar.sync 1, %0;" ::"r"(nthreads) : "memory");
  if (leader) grid_arrive_wait(count);
  asm volatile("bar.sync 1, %0;" ::"r"(nthreads) : "memory");
}

constexpr int kRingConsumerWarps = 4;
constexpr int kRingThreads = 32 * (1 + kRingConsumerWarps);

// This block's chunks of product p: [c0, c1) of ceil(bytes / chunk).
__device__ __forceinline__ void ring_range(const RingProducts& P, int p, int chunk, int& c0, int& c1) {
  const long long n = (P.bytes[p] + chunk - 1) / chunk;
  c0 = int(n * blockIdx.x / gridDim.x);
  c1 = int(n * (blockIdx.x + 1) / gridDim.x);
}

__global__ void __launch_bounds__(kRingThreads, 1) ring_probe_kernel(const uint8_t* __restrict__ base,
                                                                     RingProducts P, int chunk, int stages,
                                                                     int barriers, unsigned* sink,
                                                                     unsigned long long* count) {
  extern __shared__ __align__(128) uint8_t smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem);  // stage s holds its chunk (tx bytes landed)
  uint64_t* empty = full + stages;                      // stage s read by every consumer thread
  uint8_t* ring = smem + 128 * ((16 * stages + 127) / 128);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  constexpr int kConsumers = 32 * kRingConsumerWarps;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], kConsumers);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (warp == 0) {  // producer: one lane issues every copy
    if (lane != 0) return;
    long long t = 0;  // chunks issued so far (all products): stage t % stages, use t / stages
    for (int p = 0; p < P.n; ++p) {
      int c0, c1;
      ring_range(P, p, chunk, c0, c1);
      for (int c = c0; c < c1; ++c, ++t) {
        const int s = int(t % stages);
        const long long use = t / stages;
        if (use > 0) mbar_wait(&empty[s], uint32_t((use - 1) & 1));
        const uint32_t nb = uint32_t(min(static_cast<long long>(chunk), P.bytes[p] - static_cast<long long>(c) * chunk));
        mbar_expect_tx(&full[s], nb);
        bulk_copy(ring + size_t(s) * chunk, base + P.off[p] + size_t(c) * chunk, nb, &full[s]);
      }
    }
    return;
  }
  const int ct = threadIdx.x - 32;  // consumer thread 0..kConsumers-1
  unsigned acc = 0;
  long long t = 0;
  for (int p = 0; p < P.n; ++p) {
    int c0, c1;
    ring_range(P, p, chunk, c0, c1);
    for (int c = c0; c < c1; ++c, ++t) {
      const int s = int(t % stages);
      mbar_wait(&full[s], uint32_t((t / stages) & 1));
      const int nb = int(min(static_cast<long long>(chunk), P.bytes[p] - static_cast<long long>(c) * chunk));
      const uint8_t* st = ring + size_t(s) * chunk;
      for (int i = 16 * ct; i < nb; i += 16 * kConsumers) acc ^= fold(*reinterpret_cast<const uint4*>(st + i));
      mbar_arrive(&empty[s]);
    }
    if (barriers && p + 1 < P.n) consumer_grid_barrier(count, kConsumers, ct == 0);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) atomicXor(sink, acc);
}

// One bulk copy of this block's piece (the last one may be short), then every thread folds its words.
template <int CHUNK>
__global__ void __launch_bounds__(128) probe_bulk_kernel(const uint8_t* __restrict__ w, size_t bytes, unsigned* sink) {
  __shared__ __align__(128) uint8_t buf[CHUNK];
  __shared__ uint64_t bar;
  const size_t off = size_t(blockIdx.x) * CHUNK;
  const uint32_t nb = uint32_t(min(size_t(CHUNK), bytes - off));
  if (threadIdx.x == 0) {
    mbar_init(&bar, 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    mbar_expect_tx(&bar, nb);
    bulk_copy(buf, w + off, nb, &bar);
  }
  __syncthreads();  // the barrier is initialised before anyone waits on it
  mbar_wait(&bar, 0);
  unsigned acc = 0;
  for (uint32_t i = 16 * threadIdx.x; i < nb; i += 16 * 128) acc ^= fold(*reinterpret_cast<const uint4*>(buf + i));
  if (acc == 0x9e3779b9u) sink[0] = acc;
}

}  // namespace

void ring_probe(const void* base, const RingProducts& P, int chunk, int stages, bool barriers, unsigned* sink,
                unsigned long long* count, cudaStream_t stream) {
  IGNIS_CHECK(P.n > 0 && P.n <= RingProducts::kMax, "ring_probe: 1 to ", RingProducts::kMax, " products, got ", P.n);
  IGNIS_CHECK(chunk >= 16 && chunk % 16 == 0 && stages >= 2, "ring_probe: chunk % 16 == 0 and >= 2 stages");
  IGNIS_CHECK(device_has_bulk_copy(), "ring_probe: bulk copies need an sm_90 GPU");
  for (int p = 0; p < P.n; ++p)
    IGNIS_CHECK(P.off[p] % 16 == 0 && P.bytes[p] % 16 == 0 && P.bytes[p] > 0,
                "ring_probe: products must be 16-byte aligned, non-empty multiples of 16 bytes");
  const size_t smem = 128 * ((16 * stages + 127) / 128) + size_t(chunk) * stages;
  static std::once_flag attr_once;
  std::call_once(attr_once, [] {
    CUDA_CHECK(cudaFuncSetAttribute(ring_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
  });
  IGNIS_CHECK(smem <= 227 * 1024, "ring_probe: ", chunk, " x ", stages, " stages exceed shared memory");
  CUDA_CHECK(cudaMemsetAsync(sink, 0, 4, stream));
  CUDA_CHECK(cudaMemsetAsync(count, 0, 8, stream));
  launch_cooperative(ring_probe_kernel, dim3(sm_count()), dim3(kRingThreads), smem, stream,
                     static_cast<const uint8_t*>(base), P, chunk, stages, int(barriers), sink, count);
}

void load_probe(LoadPattern p, const void* w, int rows, int rbytes, unsigned* sink, cudaStream_t stream) {
  IGNIS_CHECK(rows > 0 && rows % 16 == 0 && rbytes > 0 && rbytes % 64 == 0,
              "load_probe: rows % 16 == 0 and rbytes % 64 == 0, got ", rows, " x ", rbytes);
  const auto* b = static_cast<const uint8_t*>(w);
  switch (p) {
    case LoadPattern::kTile16U2: probe_tile_kernel<2, false><<<rows / 16, 128, 0, stream>>>(b, rbytes, sink); break;
    case LoadPattern::kTile16U4: probe_tile_kernel<4, false><<<rows / 16, 128, 0, stream>>>(b, rbytes, sink); break;
    case LoadPattern::kTileContigU2: probe_tile_kernel<2, true><<<rows / 16, 128, 0, stream>>>(b, rbytes, sink); break;
    case LoadPattern::kTileContigU4: probe_tile_kernel<4, true><<<rows / 16, 128, 0, stream>>>(b, rbytes, sink); break;
    case LoadPattern::kWarpRow: probe_warp_row_kernel<<<rows / 4, 128, 0, stream>>>(b, rows, rbytes, sink); break;
    case LoadPattern::kBulk16K:
    case LoadPattern::kBulk32K: {
      const size_t bytes = size_t(rows) * rbytes;
      if (p == LoadPattern::kBulk16K)
        probe_bulk_kernel<16384><<<ceil_div(int64_t(bytes), 16384), 128, 0, stream>>>(b, bytes, sink);
      else
        probe_bulk_kernel<32768><<<ceil_div(int64_t(bytes), 32768), 128, 0, stream>>>(b, bytes, sink);
      break;
    }
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace ignis::cuda
