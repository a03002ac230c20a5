// L2 prefetch of a weight range while DRAM would otherwise idle.
//
// Why: batch-1 decode streams every weight once per step, but the decode attention between a layer's
// q/k/v product and its output projection reads only the small KV cache for a few microseconds, on
// a few dozen SMs. The model forks this kernel onto a side stream beside the attention (a branch of
// the captured graph) so the first bytes of Wo travel into L2 meanwhile, and the o product that
// follows finds them there instead of starting its stream from DRAM (CudaOptions::attn_prefetch_mb).
//
// l2_prefetch_kernel: every thread issues prefetches of kChunk-byte pieces of [p, p + bytes), a grid
// stride apart: cp.async.bulk.prefetch.L2 on sm_90 (one instruction a piece, fire and forget), else
// prefetch.global.L2 per 128-byte line. Nothing is written and nothing waits for the data, so the
// kernel ends as soon as its requests are issued; the copies finish in the background. A prefetch
// never changes a result: a line it brings in is the same bytes a later load would read.
// Launch: one warp a block, up to a block per SM, so the requests spread over the SMs' copy engines
// (the attention beside it holds a few dozen SMs and leaves room on all of them).
#include <algorithm>

#include "cuda/common.h"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

constexpr uint32_t kChunk = 16 * 1024;  // bytes per bulk prefetch (ring_probe: >= 16 KB pieces stream at full rate)

__global__ void l2_prefetch_kernel(const char* __restrict__ p, size_t bytes) {
  const size_t pieces = (bytes + kChunk - 1) / kChunk;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < pieces; i += size_t(gridDim.x) * blockDim.x) {
    const size_t off = i * kChunk;
    const uint32_t n = uint32_t(std::min<size_t>(kChunk, bytes - off));
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // size: a multiple of 16 (the host rounded bytes down to one), address 16-byte aligned
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + off), "r"(n) : "memory");
#else
    for (uint32_t b = 0; b < n; b += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off + b));
#endif
  }
}

}  // namespace

void l2_prefetch(const void* p, size_t bytes, cudaStream_t stream) {
  // the bulk form needs a 16-byte aligned start and a multiple of 16 bytes: skip to the first aligned
  // byte and drop the last partial 16 (a prefetch may cover less than asked, never more)
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t start = (a + 15) & ~uintptr_t(15);
  if (!p || bytes < 16 || start - a >= bytes) return;
  const size_t n = (bytes - (start - a)) & ~size_t(15);
  if (n == 0) return;
  // one warp a block, a block per SM at most: the requests spread over the SMs' copy engines
  const int threads = 32;
  const size_t pieces = (n + kChunk - 1) / kChunk;
  const int blocks = int(std::min<size_t>(size_t(sm_count()), (pieces + threads - 1) / threads * 4));
  launch(l2_prefetch_kernel, dim3(blocks), dim3(threads), 0, stream, reinterpret_cast<const char*>(start), n);
}

}  // namespace ignis::cuda
