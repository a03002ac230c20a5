// Encoder self-attention over a ragged batch of packed sequences (no padding anywhere): every
// query row attends to all the keys of its own sequence (non-causal), nothing else.
//
// Flash kernel (F16 / BF16, head size 32 / 64 / 128): tensor cores (mma.sync m16n8k16, fp32
// accumulation) with an online softmax, as in FlashAttention-2 and attention_prefill.cu (whose
// fragment layouts it reuses). A work item is (query tile of 64 rows of one sequence, head h);
// the host lists the tiles of the batch (sequence, first row), longest sequences first, and the
// block (x, h) takes tiles x, x + gridDim.x, ... so the grid depends only on the bucket, never on
// the batch mix (a captured graph serves any mix). 4 warps, warp w owns query rows 16w..16w+15.
// Keys and values of the sequence stream through shared memory in tiles of 64 rows (cp.async,
// double buffered, rows padded by 16 bytes for conflict-free ldmatrix); keys past the end of the
// sequence are zero-filled and masked to -inf. Nothing of size S x S is stored.
// Bytes: Q and O once; K and V of a sequence once per query tile of it (L2-resident).
// Launch: grid (min(bucket, ~2 waves / nh), nh), 128 threads, (64 + 4 * 64) * (hd + 8) * 2 bytes of
// shared memory. A variant with 2 warps of 32 rows each (every K / V fragment read by ldmatrix
// feeding two mma instead of one) measured no faster on an H200 (2026-12-02, BERT-base fp16: 32x512
// 7.11 vs 7.18 ms, 8x512 1.95 vs 1.88, 1x512 0.74 vs 0.71), so ldmatrix bandwidth is not what bounds
// this kernel; it is not kept. Nor are 128-row query tiles (8 warps; each K / V tile in shared memory
// serving twice the rows): 32x512 7.11 vs 7.24 ms, but 32x299 4.11-4.24 vs 4.03-4.09 and the ragged
// 32 x 16..512 mix 4.36-4.38 vs 4.31-4.32 (same H200, same call): longer partial tiles cost more than
// the halved L2 -> SM traffic gains, and real batches are ragged.
//
// Generic kernel (any dtype, head size <= 256): one warp per (query row, head), keys one at a
// time (dot product across the warp, online softmax in fp32). O(S^2 hd) with no reuse: used for
// the fp32 parity mode and as an independent cross-check of the flash kernel in the tests.
#include <algorithm>

#include "cuda/encoder_common.cuh"
#include "cuda/encoder_flash_tile.cuh"
#include "cuda/encoder_kernels.h"

namespace ignis::cuda {
namespace {

using namespace enc;

template <typename T, int HD>
__global__ void __launch_bounds__(kFlashThreads) enc_flash_kernel(EncAttnArgs a) {
  extern __shared__ float4 smem_raw[];
  pdl_trigger();
  pdl_wait();
  const int n_work = a.batch.counts[2];
  for (int t = blockIdx.x; t < n_work; t += gridDim.x) enc_flash_tile<T, HD>(a, t, blockIdx.y, smem_raw);
}

template <typename T, int HD>
void launch_flash(const EncAttnArgs& a, cudaStream_t stream) {
  const int smem = enc_flash_smem(HD);
  static const bool configured = [smem] {
    CUDA_CHECK(cudaFuncSetAttribute(enc_flash_kernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)configured;
  // About two waves of resident blocks (shared memory bound), split over the heads; never more
  // blocks per head than the bucket could have tiles.
  const int per_sm = std::max(1, (200 * 1024) / smem);
  const int gx = std::max(1, std::min(a.rows, ceil_div(int64_t(sm_count()) * per_sm * 2, a.nh)));
  launch(enc_flash_kernel<T, HD>, dim3(gx, a.nh), dim3(kFlashThreads), size_t(smem), stream, a);
}

constexpr int kGenericMaxHd = 256;

template <typename T>
__global__ void enc_attn_generic_kernel(EncAttnArgs a) {
  pdl_trigger();
  pdl_wait();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + warp, h = blockIdx.y;
  const int n = a.batch.counts[0], B = a.batch.counts[1];
  if (r >= n) return;  // whole warps only; no block-wide synchronisation below
  const int b = seq_of_row(a.batch.offsets, B, r);
  const int s0 = a.batch.offsets[b], s1 = a.batch.offsets[b + 1];
  const int hd = a.hd, H = a.nh * hd;
  const size_t ld = size_t(3) * H;
  const T* qkv = static_cast<const T*>(a.qkv);
  const T* q = qkv + size_t(r) * ld + size_t(h) * hd;
  constexpr int kPer = kGenericMaxHd / 32;
  float qv[kPer], o[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? t2f(q[d]) : 0.f;
    o[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = s0; j < s1; ++j) {
    const T* k = qkv + size_t(j) * ld + H + size_t(h) * hd;
    const T* v = k + H;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) dot += qv[i] * t2f(k[d]);
    }
    dot = warp_sum(dot) * a.scale;
    const float mn = fmaxf(m, dot);
    const float corr = expf(m - mn);  // m = -inf at the first key: 0
    const float p = expf(dot - mn);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int d = lane + 32 * i;
      o[i] = o[i] * corr + (d < hd ? p * t2f(v[d]) : 0.f);
    }
    m = mn;
  }
  T* out = static_cast<T*>(a.out) + size_t(r) * H + size_t(h) * hd;
  const float inv = 1.f / l;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[d] = f2t<T>(o[i] * inv);
  }
}

}  // namespace

bool encoder_flash_supported(DType t, int hd) {
  return (t == DType::F16 || t == DType::BF16) && (hd == 32 || hd == 64 || hd == 128);
}

void encoder_attention(const EncAttnArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(a.nh > 0 && a.hd > 0, "encoder_attention: bad head shape ", a.nh, " x ", a.hd);
  IGNIS_CHECK(a.batch.counts && a.batch.offsets, "encoder_attention: batch not set");
  if (a.rows <= 0) return;
  const bool flash_ok = encoder_flash_supported(a.dtype, a.hd);
  IGNIS_CHECK(a.impl != EncAttnImpl::kFlash || flash_ok, "encoder_attention: the flash kernel needs F16/BF16 and ",
              "head size 32, 64 or 128 (got ", dtype_name(a.dtype), ", ", a.hd, ")");
  if (flash_ok && a.impl != EncAttnImpl::kGeneric) {
    IGNIS_CHECK(a.batch.tiles, "encoder_attention: the flash kernel needs the tile list");
    auto go = [&](auto tag) {
      using T = decltype(tag);
      if (a.hd == 32)
        launch_flash<T, 32>(a, stream);
      else if (a.hd == 64)
        launch_flash<T, 64>(a, stream);
      else
        launch_flash<T, 128>(a, stream);
    };
    if (a.dtype == DType::F16)
      go(__half());
    else
      go(bf16());
    return;
  }
  IGNIS_CHECK(a.hd <= kGenericMaxHd, "encoder_attention: head size ", a.hd, " is larger than ", kGenericMaxHd);
  constexpr int kWarps = 4;
  IGNIS_ENC_DISPATCH(a.dtype, T, {
    launch(enc_attn_generic_kernel<T>, dim3(ceil_div(a.rows, kWarps), a.nh), dim3(32 * kWarps), 0, stream, a);
  });
}

}  // namespace ignis::cuda
