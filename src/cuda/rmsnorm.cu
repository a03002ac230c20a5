// Fused residual add + RMSNorm, one block per row:
//   x[r] += residual[r]            (optional; x is the fp32 residual stream, updated in place)
//   h[r]  = x[r] / sqrt(mean(x[r]^2) + eps) * w
// Bytes: reads x (4 dim) [+ residual], writes x [if residual] and h (sizeof(T) dim) per row; the
// second read of x hits L1. Launch: n blocks of min(1024, dim/4 rounded up to a warp) threads,
// so a 4096-wide row is one pass of 4 elements per thread (decode runs B <= 8 blocks: latency,
// not bandwidth, is what matters, hence the wide block).
#include "cuda/common.h"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

template <typename T>
__global__ void rmsnorm_kernel(float* __restrict__ x, const T* __restrict__ residual, const float* __restrict__ w,
                               T* __restrict__ h, int dim, float eps) {
  __shared__ float red[32];
  pdl_trigger();
  pdl_wait();
  const size_t row = blockIdx.x;
  float* xr = x + row * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = xr[i];
    if (residual) {
      v += to_f(residual[row * dim + i]);
      xr[i] = v;
    }
    ss = fmaf(v, v, ss);
  }
  ss = block_sum(ss, red);
  const float r = rsqrtf(ss / float(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) h[row * dim + i] = from_f<T>(xr[i] * r * w[i]);
}

}  // namespace

void rmsnorm(DType t, float* x, const void* residual, const float* w, void* h, int n, int dim, float eps,
             cudaStream_t stream) {
  IGNIS_CHECK(t == DType::F32 || t == DType::BF16, "rmsnorm: dtype must be F32 or BF16");
  if (n <= 0) return;
  const int threads = std::min(1024, std::max(32, ceil_div(ceil_div(dim, 4), 32) * 32));
  if (t == DType::F32)
    launch(rmsnorm_kernel<float>, dim3(n), dim3(threads), 0, stream, x, static_cast<const float*>(residual), w,
           static_cast<float*>(h), dim, eps);
  else
    launch(rmsnorm_kernel<bf16>, dim3(n), dim3(threads), 0, stream, x, static_cast<const bf16*>(residual), w,
           static_cast<bf16*>(h), dim, eps);
}

}  // namespace ignis::cuda
