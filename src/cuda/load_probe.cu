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

}  // namespace

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
  }
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace ignis::cuda
