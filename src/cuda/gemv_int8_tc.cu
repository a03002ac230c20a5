// Tensor-core GEMV for int8 per-channel weights, decode B = 2..8 (and B = 1 on request):
// y[B, N] = x[B, K] W^T, W = q * s_row, x bf16, fp32 accumulation.
//
// Why: the CUDA-core int8 kernel (gemv_quant.cu) does B FMAs per weight; at B = 8 that, not memory,
// bounds it (886 tok/s for a 7B model on an H200, below bf16's 1,632). Here the tensor cores do the
// multiply-adds for all B rows at once.
//
// Dequantization: bf16 cannot hold 1024 + u exactly, fp16 can (10 mantissa bits). The signed bytes
// are flipped to u = q + 128 (one XOR per 4), one PRMT per pair puts two bytes under the fp16
// exponent of 1024 (0x64), and one f16x2 subtraction of 1152 gives the exact integers q. So the mma
// runs in fp16: x is converted from bf16 to fp16 (exact for |x| in fp16's normal range; values
// beyond +-65504 saturate there, smaller than 6e-5 lose bits as fp16 subnormals). The row scale
// multiplies the fp32 result once at the end.
//
// Fragments (mma.m16n8k16 f16, lane g = lane / 4, c = lane % 4): a warp owns 16 rows and walks K in
// steps of 64; lane (g, c) loads 16 bytes (k = 64 s + 16 c + 0..15) of rows g and g + 8. Word w holds
// bytes b0..b3 (k = 4w .. 4w + 3 of the chunk): the pairs (b0, b2) and (b1, b3) are the two A operands
// of one mma for each row, and the B operands are x's (x0, x2), (x1, x3) at the same k (the dot
// product does not care which physical k fills which k slot as long as A and B agree). Lanes with
// g >= B read row B - 1 of x (finite, discarded).
//
// Launch: grid ceil(N / 16), 128 threads; warps take steps in turn, two register buffers of U = 4
// steps; partial sums meet in shared memory, warp 0 runs the epilogue (gemv_common.cuh). Bytes:
// N K of weights + 4 N of scales + B K 2 of x (L1 / L2).
#include <cuda_fp16.h>

#include "cuda/common.h"
#include "cuda/gemv_common.cuh"
#include "cuda/quant_kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kU = 4;      // steps per register buffer
constexpr int kStep = 64;  // k per step (4 lanes x 16 bytes)

template <int EPI>
__global__ void __launch_bounds__(kWarps * 32) gemv_int8_tc_kernel(QWeight W, int sdt, const bf16* __restrict__ x,
                                                                   int B, void* out, int ldo) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int N = W.N, K = W.K;
  const int tile = blockIdx.x, row0 = tile * 16;
  const int ra = min(row0 + g, N - 1), rb = min(row0 + g + 8, N - 1);  // rows past N: computed, not stored
  const uint8_t* wa = static_cast<const uint8_t*>(W.w) + size_t(ra) * K + 16 * c;
  const uint8_t* wb = static_cast<const uint8_t*>(W.w) + size_t(rb) * K + 16 * c;
  const int nsteps = K / kStep;

  struct Buf {
    uint4 lo[kU], hi[kU];  // rows g, g + 8
  };
  auto load = [&](Buf& bf, int t0) {  // steps past the end: zero weights (their products are 0)
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int s = warp + kWarps * (t0 + u);
      const bool ok = s < nsteps;
      // zero weights are q = 0, i.e. flipped bytes 0x80
      bf.lo[u] = ok ? ld_w16(wa + size_t(s) * kStep) : make_uint4(0u, 0u, 0u, 0u);
      bf.hi[u] = ok ? ld_w16(wb + size_t(s) * kStep) : make_uint4(0u, 0u, 0u, 0u);
    }
  };

  const bf16* xr = x + size_t(min(g, B - 1)) * K + 16 * c;
  float acc[kU][4];
#pragma unroll
  for (int u = 0; u < kU; ++u) acc[u][0] = acc[u][1] = acc[u][2] = acc[u][3] = 0.f;
  auto compute = [&](const Buf& bf, int t0) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int s0 = warp + kWarps * (t0 + u);
      const bool ok = s0 < nsteps;
      const int s = ok ? s0 : nsteps - 1;  // any valid x; its weights are zero
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const uint2 X = __ldg(reinterpret_cast<const uint2*>(xr + size_t(s) * kStep + 4 * w));  // x0..x3
        const float x0 = __uint_as_float(X.x << 16), x1 = __uint_as_float(X.x & 0xffff0000u);
        const float x2 = __uint_as_float(X.y << 16), x3 = __uint_as_float(X.y & 0xffff0000u);
        const uint32_t ua = ok ? word_of4(bf.lo[u], w) ^ 0x80808080u : 0x80808080u;
        const uint32_t ub = ok ? word_of4(bf.hi[u], w) ^ 0x80808080u : 0x80808080u;
        // A: (b0, b2) of rows g and g + 8, then (b1, b3); B: (x0, x2), (x1, x3)
        mma_f16(acc[u], deq_pair8(ua, 0x4240), deq_pair8(ub, 0x4240), deq_pair8(ua, 0x4341), deq_pair8(ub, 0x4341),
                f16_pair(x0, x2), f16_pair(x1, x3));
      }
    }
  };

  Buf b0, b1;
  load(b0, 0);
  load(b1, kU);
  pdl_wait();
  for (int t0 = 0; warp + kWarps * t0 < nsteps; t0 += 2 * kU) {
    compute(b0, t0);
    load(b0, t0 + 2 * kU);
    if (warp + kWarps * (t0 + kU) >= nsteps) break;
    compute(b1, t0 + kU);
    load(b1, t0 + 3 * kU);
  }
  pdl_trigger();  // late: the next kernel launches as this one drains (common.h)
  // acc[u]: (row g, batch 2c), (row g, 2c + 1), (row g + 8, 2c), (row g + 8, 2c + 1)
  const float sa = scale_at(W.scales, sdt, size_t(ra)), sb = scale_at(W.scales, sdt, size_t(rb));
  float v[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int u = 0; u < kU; ++u)
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] += acc[u][i];
  v[0] *= sa, v[1] *= sa, v[2] *= sb, v[3] *= sb;
  finish_tile<EPI, kWarps>(v, tile, B, N, out, ldo);
}

template <int EPI>
void launch_epi(const QGemvArgs& a, int ldo, cudaStream_t stream) {
  launch(gemv_int8_tc_kernel<EPI>, dim3(ceil_div(a.W.N, 16)), dim3(kWarps * 32), 0, stream, a.W,
         scale_code(a.W.scale_dtype), static_cast<const bf16*>(a.x), a.B, a.out, ldo);
}

}  // namespace

bool int8_tc_supported(const QWeight& W) { return W.type == QType::kInt8 && W.K % kStep == 0; }

void gemv_int8_tc(const QGemvArgs& a, int ldo, cudaStream_t stream) {
  IGNIS_CHECK(int8_tc_supported(a.W), "int8 tensor-core GEMV: needs K % 64 == 0 (K = ", a.W.K, ")");
  switch (a.epi) {
    case GemvEpilogue::kStore: return launch_epi<int(GemvEpilogue::kStore)>(a, ldo, stream);
    case GemvEpilogue::kStoreF32: return launch_epi<int(GemvEpilogue::kStoreF32)>(a, ldo, stream);
    case GemvEpilogue::kAddF32: return launch_epi<int(GemvEpilogue::kAddF32)>(a, ldo, stream);
    case GemvEpilogue::kSwiGLU: return launch_epi<int(GemvEpilogue::kSwiGLU)>(a, ldo, stream);
  }
}

}  // namespace ignis::cuda
