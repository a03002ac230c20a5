// Fused residual add + RMSNorm, one block per row:
//   x[r] += residual[r]            (optional; x is the fp32 residual stream, updated in place)
//   h[r]  = x[r] / sqrt(mean(x[r]^2) + eps) * w
// Bytes: reads x (4 dim) [+ residual] and w (4 dim), writes x [if residual] and h (sizeof(T) dim) per
// row. Decode runs B <= 8 blocks, so latency, not bandwidth, is what matters:
//   rmsnorm_vec_kernel (dim % 4 == 0, dim <= 16384): each thread loads its (up to 4) float4 of x, of
//     the residual and of w at once, before the reduction, so the whole kernel waits for memory once
//     (the scalar form below loaded w only after the reduction: two memory latencies in a row; on an
//     H200 it lasted 5.5 us at batch 1, 65 launches per 7B decode step); the values stay in registers.
//   rmsnorm_kernel (any dim): strided scalar loops, x read twice (the second time from L1).
// Launch: n blocks of min(1024, dim/4 rounded up to a warp) threads (vec: dim/4 float4 spread over them).
#include <cstdlib>
#include <cstring>

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

constexpr int kVecPer = 4;  // float4s a thread holds (dim <= 4 * 4 * 1024)

__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const bf16* p) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xffff0000u));
}
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void store4(bf16* p, float4 v) {
  __nv_bfloat162* q = reinterpret_cast<__nv_bfloat162*>(p);  // rounded to nearest, like from_f<bf16>
  q[0] = __floats2bfloat162_rn(v.x, v.y);
  q[1] = __floats2bfloat162_rn(v.z, v.w);
}

template <typename T>
__global__ void rmsnorm_vec_kernel(float* __restrict__ x, const T* __restrict__ residual, const float* __restrict__ w,
                                   T* __restrict__ h, int dim, float eps) {
  __shared__ float red[32];
  pdl_trigger();
  pdl_wait();
  const size_t row = blockIdx.x;
  float* xr = x + row * dim;
  const int n4 = dim / 4;
  float4 xv[kVecPer], wv[kVecPer], rv[kVecPer];
#pragma unroll
  for (int j = 0; j < kVecPer; ++j) {  // every load first: one wait for memory
    const int i = threadIdx.x + j * blockDim.x;
    if (i < n4) {
      xv[j] = load4(xr + 4 * i);
      wv[j] = __ldg(reinterpret_cast<const float4*>(w) + i);
      if (residual) rv[j] = load4(residual + row * dim + 4 * i);
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kVecPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < n4) {
      float4& v = xv[j];
      if (residual) {
        v.x += rv[j].x, v.y += rv[j].y, v.z += rv[j].z, v.w += rv[j].w;
        store4(xr + 4 * i, v);
      }
      ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
    }
  }
  ss = block_sum(ss, red);
  const float r = rsqrtf(ss / float(dim) + eps);
#pragma unroll
  for (int j = 0; j < kVecPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < n4) {  // the scalar kernel's order of operations: x * r * w
      const float4 v = xv[j], g = wv[j];
      store4(h + row * dim + 4 * i, make_float4(v.x * r * g.x, v.y * r * g.y, v.z * r * g.z, v.w * r * g.w));
    }
  }
}

}  // namespace

void rmsnorm(DType t, float* x, const void* residual, const float* w, void* h, int n, int dim, float eps,
             cudaStream_t stream) {
  IGNIS_CHECK(t == DType::F32 || t == DType::BF16, "rmsnorm: dtype must be F32 or BF16");
  if (n <= 0) return;
  const int threads = std::min(1024, std::max(32, ceil_div(ceil_div(dim, 4), 32) * 32));
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  static const bool scalar = [] {  // IGNIS_RMSNORM=scalar: the scalar kernel everywhere (A/B measurements)
    const char* e = std::getenv("IGNIS_RMSNORM");
    return e && std::strcmp(e, "scalar") == 0;
  }();
  if (!scalar && dim % 4 == 0 && dim / 4 <= kVecPer * threads && aligned(x) && aligned(w) && aligned(h) &&
      (!residual || reinterpret_cast<uintptr_t>(residual) % (t == DType::F32 ? 16 : 8) == 0)) {
    if (t == DType::F32)
      launch(rmsnorm_vec_kernel<float>, dim3(n), dim3(threads), 0, stream, x, static_cast<const float*>(residual), w,
             static_cast<float*>(h), dim, eps);
    else
      launch(rmsnorm_vec_kernel<bf16>, dim3(n), dim3(threads), 0, stream, x, static_cast<const bf16*>(residual), w,
             static_cast<bf16*>(h), dim, eps);
    return;
  }
  if (t == DType::F32)
    launch(rmsnorm_kernel<float>, dim3(n), dim3(threads), 0, stream, x, static_cast<const float*>(residual), w,
           static_cast<float*>(h), dim, eps);
  else
    launch(rmsnorm_kernel<bf16>, dim3(n), dim3(threads), 0, stream, x, static_cast<const bf16*>(residual), w,
           static_cast<bf16*>(h), dim, eps);
}

}  // namespace ignis::cuda
