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
    // On unless IGNIS_PDL=0. H100 (2026-12-07, Llama-2-7B decode tok/s, IGNIS_PDL=0 / 1 alternated, twice,
    // docs/PERF.md): bf16 b1 205.1 / 207.2, b8 1,398 / 1,457; int4 g128 b1 412.7 / 428.4, b8 2,396 / 2,485;
    // int8 b1 329.4 / 333.3; Q4_K b1 389.2 / 406.4. (On an H200 on 2026-12-02, with older kernels, it
    // was even at b1 and 13% slower at b8: 1,442 vs 1,654 tok/s; not re-measured there since.)
    const char* e = std::getenv("IGNIS_PDL");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

bool pdl_encoder() {
  static const bool on = [] {
    const char* e = std::getenv("IGNIS_ENC_PDL");
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
