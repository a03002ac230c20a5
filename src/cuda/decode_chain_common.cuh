// Device helpers shared by the two engines of the persistent batch-1 decode chain (decode_chain.cu:
// weights streamed through registers; decode_ring.cu: through a shared-memory ring of bulk copies),
// and the ring engine's host entry points, which decode_chain() dispatches to.
#pragma once
#include "cuda/common.h"
#include "cuda/gemv_common.cuh"
#include "cuda/kernels.h"

namespace ignis::cuda {

// acc += dot(8 bf16 of w, 8 bf16 of x)
__device__ __forceinline__ float dot8(uint4 w, uint4 x, float acc) {
  const uint32_t wv[4] = {w.x, w.y, w.z, w.w}, xv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 wf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&wv[i]));
    const float2 xf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&xv[i]));
    acc = fmaf(wf.x, xf.x, acc);
    acc = fmaf(wf.y, xf.y, acc);
  }
  return acc;
}

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Rows of item `item` of a step with R rows per item.
template <int R>
__device__ __forceinline__ void item_rows(int item, int (&rows)[R]) {
  if constexpr (R == 2) {
    rows[0] = int(swiglu_row_of_gate(item));
    rows[1] = rows[0] + 8;
  } else {
    rows[0] = item;
  }
}

template <int EPI>
__device__ __forceinline__ void store_item(const ChainStep& st, int item, const float (&s)[2]) {
  if constexpr (EPI == int(GemvEpilogue::kSwiGLU)) {
    static_cast<bf16*>(st.out)[item] = __float2bfloat16(silu(s[0]) * s[1]);
  } else if constexpr (EPI == int(GemvEpilogue::kAddF32)) {
    float* o = static_cast<float*>(st.out) + item;
    *o = __ldcg(o) + s[0];  // x may have been written by another block of this launch
  } else {
    epilogue_store<EPI>(st.out, 0, 0, item, s[0]);
  }
}

// ---- the ring engine (decode_ring.cu); decode_chain() checks the arguments first ----
// Blocks it runs (one per SM) and its dynamic shared memory; launch.
int decode_ring_grid();
size_t decode_ring_smem(int max_k);
void launch_decode_ring(const ChainArgs& a, cudaStream_t stream);

}  // namespace ignis::cuda
