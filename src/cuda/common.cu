// Host-side pieces of common.h: the PDL switch, the counted device allocator, SM count.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "cuda/common.h"

namespace ignis::cuda {

bool pdl_enabled() {
  static const bool on = [] {
    // Off unless IGNIS_PDL=1: on an H200 (2026-12-02, Llama-2-7B bf16 decode, gpu-check.sh abpdl)
    // PDL cost 12% at batch 1 (223 vs 254 tok/s) and 27% at batch 8 (1202 vs 1640) with every
    // kernel triggering at its start. With the GEMVs triggering after their main loop (as now) it
    // is even at batch 1 (248.4 vs 249.5, same call) and still 13% slower at batch 8 (1442 vs 1654).
    const char* e = std::getenv("IGNIS_PDL");
    return e && std::strcmp(e, "1") == 0;
  }();
  return on;
}

namespace {
std::atomic<size_t> g_live{0}, g_peak{0};
}

void DeviceBuffer::alloc(size_t bytes) {
  reset();
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    p_ = nullptr;
    fail("CUDA out of memory: could not allocate ", double(bytes) / (1 << 20), " MiB (", live_bytes() >> 20,
         " MiB already held by ignis): ", cudaGetErrorString(e));
  }
  n_ = bytes;
  const size_t now = g_live.fetch_add(bytes) + bytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}

void DeviceBuffer::reset() {
  if (p_) {
    cudaFree(p_);
    g_live.fetch_sub(n_);
  }
  p_ = nullptr;
  n_ = 0;
}

size_t DeviceBuffer::live_bytes() { return g_live.load(); }
size_t DeviceBuffer::peak_bytes() { return g_peak.load(); }
void DeviceBuffer::reset_peak() { g_peak.store(g_live.load()); }

int sm_count() {
  static std::mutex mu;
  static std::vector<int> cache;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (int(cache.size()) <= dev) cache.resize(size_t(dev) + 1, 0);
  if (!cache[size_t(dev)]) {
    int n = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    cache[size_t(dev)] = n;
  }
  return cache[size_t(dev)];
}

}  // namespace ignis::cuda
