// Decode attention over the KV cache with the keys spread over warps and K / V read straight
// into registers (AttnImpl::kWarp; head size 64, 128 or 256, up to 8 query heads per kv head).
//
// Why: at batch 1 the attention of a layer reads little (2 L hd bytes per kv head) and its time
// is latency: the tile kernel (attention_decode.cu) waits for a whole 64-key tile in shared
// memory, then computes the scores with one thread per key (a serial 128-long dot product) and
// P.V with one thread per output dim (a serial loop over the keys). Here the first loads are
// issued right after the position is read, before the queries are rotated, and every step after
// them is short and parallel.
//
// attn_warp_kernel: block (split s, kv head kh, query i), 8 warps, the same key range and
//   split-K partials as the tile kernel (attention_decode_common.cuh). The range is walked in
//   rounds of 64 keys; in a round warp w takes the 8 keys r0 + 8 w + j. Lane l holds dims
//   [l DPL, (l + 1) DPL) (DPL = hd / 32): it loads DPL elements of each of its 8 K rows and 8 V
//   rows (a warp reads whole rows, coalesced; all 16 loads in flight together), the partial dot
//   products with the G queries go through a butterfly warp sum (every lane gets every score),
//   and each lane keeps its own online softmax (max m, sum l, in the exp2 domain) and its DPL
//   output dims per head. Keys past the range read the last valid row and are masked to -inf.
//   At the end the 8 warps' (m, l, o) are merged in shared memory, then written normalised
//   (one non-empty split) or as partials (several; the last block combines with AttnArgs::counters).
//   With AttnArgs::rope_qkv the block rotates q itself, and the block holding key p writes the
//   new k and v into the cache and uses them from shared memory for key p.
//   Bytes: K and V rows of the range once per (kv head, query); registers: 16 loads of DPL
//   elements, G x 8 scores, G x DPL outputs and queries per lane.
#include "cuda/attention_decode_warp.cuh"

namespace ignis::cuda {

namespace {

using namespace attn_detail;
constexpr int kWarps = 8, kThreads = 32 * kWarps;

template <typename T, int DPL, int GMAX>
__global__ void __launch_bounds__(kThreads) attn_warp_kernel(AttnArgs a) {
  pdl_trigger();
  pdl_wait();
  attn_warp_block<T, DPL, GMAX, kWarps, false>(a, blockIdx.x, gridDim.x, blockIdx.y, blockIdx.z);
}

template <typename T, int DPL>
void launch_dpl(const AttnArgs& a, cudaStream_t stream) {
  const int G = a.nh / a.nkv;
  const dim3 grid(a.n_splits, a.nkv, a.n);
  if (G <= 1) return launch(attn_warp_kernel<T, DPL, 1>, grid, dim3(kThreads), 0, stream, a);
  if (G <= 2) return launch(attn_warp_kernel<T, DPL, 2>, grid, dim3(kThreads), 0, stream, a);
  if (G <= 4) return launch(attn_warp_kernel<T, DPL, 4>, grid, dim3(kThreads), 0, stream, a);
  if constexpr (DPL * 8 <= 32) launch(attn_warp_kernel<T, DPL, 8>, grid, dim3(kThreads), 0, stream, a);
}

template <typename T>
void launch_t(const AttnArgs& a, cudaStream_t stream) {
  if (a.hd == 64) launch_dpl<T, 2>(a, stream);
  if (a.hd == 128) launch_dpl<T, 4>(a, stream);
  if (a.hd == 256) launch_dpl<T, 8>(a, stream);
}

}  // namespace

bool attn_warp_supported(const AttnArgs& a) {
  if (a.dtype != DType::F32 && a.dtype != DType::BF16) return false;
  if (a.hd != 64 && a.hd != 128 && a.hd != 256) return false;
  const int G = a.nkv > 0 ? a.nh / a.nkv : 0;
  return G >= 1 && G <= (a.hd == 256 ? 4 : 8);  // shared memory: GMAX x hd <= 1024
}

// (without AttnArgs::counters, attention() launches the combine after it)
void launch_attn_warp(const AttnArgs& a, cudaStream_t stream) {
  if (a.dtype == DType::F32)
    launch_t<float>(a, stream);
  else
    launch_t<bf16>(a, stream);
}

}  // namespace ignis::cuda
