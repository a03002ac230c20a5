// L2 prefetch: lists of byte ranges that a kernel warms into L2 for the kernels after it, with bulk
// prefetches (cp.async.bulk.prefetch.L2, sm_90+) issued at its start. Nothing is loaded into
// registers or shared memory and nothing waits: one instruction per chunk, and the copy engine fills
// L2 behind the kernel. Plain C++ for the host (the chunking is shared with the device code).
//
// What for: the encoder's small buckets (BERT-base 1x128: ~30 us a layer for ~14 MB of weights) are
// latency-bound, each GEMM waiting on DRAM for a few narrow tiles; with its weights already in L2
// (50 MB on an H100) those loads come from L2. The encoder's embedding kernel prefetches layer 0 and
// each layer's attention kernel the rest of its layer and the next layer's q/k/v (bert_cuda.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define IGNIS_PF_HD __host__ __device__
#else
#define IGNIS_PF_HD
#endif

namespace ignis::cuda {

// Byte ranges of at most kMax pieces. Each range is trimmed inward to 16-byte boundaries (the
// instruction's granularity; at most 15 bytes at each end are left out, and nothing outside the range
// is touched) and cut into chunks of kChunk bytes.
struct PrefetchList {
  static constexpr int kMax = 8;
  static constexpr uint32_t kChunk = 32768;
  int n = 0;
  uint64_t begin[kMax] = {}, end[kMax] = {};  // 16-byte aligned addresses, begin <= end
  // Adds [p, p + bytes) trimmed to 16 bytes; false (nothing added) when the list is full.
  bool add(const void* p, size_t bytes) {
    if (n == kMax) return false;
    const uint64_t a = (reinterpret_cast<uint64_t>(p) + 15) & ~uint64_t(15);
    const uint64_t b = (reinterpret_cast<uint64_t>(p) + bytes) & ~uint64_t(15);
    begin[n] = a, end[n] = b > a ? b : a, ++n;
    return true;
  }
  IGNIS_PF_HD uint64_t chunks(int r) const { return (end[r] - begin[r] + kChunk - 1) / kChunk; }
  IGNIS_PF_HD uint64_t total_chunks() const {
    uint64_t t = 0;
    for (int r = 0; r < n; ++r) t += chunks(r);
    return t;
  }
  // Chunk i (0 <= i < total_chunks()): its address and bytes (a multiple of 16, at most kChunk).
  IGNIS_PF_HD void chunk(uint64_t i, uint64_t& addr, uint32_t& bytes) const {
    int r = 0;
    while (i >= chunks(r)) i -= chunks(r), ++r;
    addr = begin[r] + i * kChunk;
    const uint64_t left = end[r] - addr;
    bytes = uint32_t(left < kChunk ? left : kChunk);
  }
};
#ifdef __CUDACC__
// Issues chunks first, first + stride, ... of L (device code): a kernel's threads call it with their
// index among the issuers and the issuer count. Nothing on GPUs before sm_90.
__device__ __forceinline__ void prefetch_l2(const PrefetchList& L, uint64_t first, uint64_t stride) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const uint64_t total = L.total_chunks();
  for (uint64_t i = first; i < total; i += stride) {
    uint64_t addr;
    uint32_t bytes;
    L.chunk(i, addr, bytes);
    if (bytes) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(addr), "r"(bytes) : "memory");
  }
#endif
}
// The first warp of every block of the grid as issuers.
__device__ __forceinline__ void prefetch_l2_grid(const PrefetchList& L) {
  if (L.n == 0 || threadIdx.x >= 32) return;
  const uint64_t block = blockIdx.x + uint64_t(gridDim.x) * (blockIdx.y + uint64_t(gridDim.y) * blockIdx.z);
  prefetch_l2(L, block * 32 + threadIdx.x, uint64_t(gridDim.x) * gridDim.y * gridDim.z * 32);
}
#endif

}  // namespace ignis::cuda
