// Device helpers shared by the encoder kernels (encoder_*.cu): conversions between float and the
// three activation types the encoder runs in (float, __half, bf16), and the binary search that maps
// a packed row to its sequence. Header-only, nvcc only.
#pragma once
#include <cuda_fp16.h>

#include <type_traits>
#include <utility>

#include "cuda/common.h"

namespace ignis::cuda::enc {

__device__ __forceinline__ float t2f(float v) { return v; }
__device__ __forceinline__ float t2f(__half v) { return __half2float(v); }
__device__ __forceinline__ float t2f(bf16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T f2t(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(v);
  else
    return __float2bfloat16_rn(v);
}

// Every encoder kernel launch: launch() with the encoder's PDL switch (pdl_encoder(), off by default:
// the passes interleave cuBLASLt GEMMs, and PDL measured slower at small shapes).
template <typename... KArgs, typename... Args>
void launch_enc(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  launch_with(cudaLaunchAttributeProgrammaticStreamSerialization, pdl_encoder(), kernel, grid, block, smem, stream,
              std::forward<Args>(args)...);
}

// Index b of the sequence holding packed row r: offsets[b] <= r < offsets[b + 1], B sequences.
__device__ __forceinline__ int seq_of_row(const int* offsets, int B, int r) {
  int lo = 0, hi = B - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= r)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// 4 consecutive values of T <-> float (p aligned to 4 * sizeof(T): 8 bytes for 16-bit types).
template <typename T>
__device__ __forceinline__ void load4(const T* p, float (&o)[4]) {
  if constexpr (sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    o[0] = v.x, o[1] = v.y, o[2] = v.z, o[3] = v.w;
  } else {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) o[i] = t2f(e[i]);
  }
}
template <typename T>
__device__ __forceinline__ void store4(T* p, const float (&v)[4]) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    alignas(8) T e[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) e[i] = f2t<T>(v[i]);
    *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(e);
  }
}

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

}  // namespace ignis::cuda::enc

// Dispatch on the activation dtype: runs the generic lambda with a T of the right type.
#define IGNIS_ENC_DISPATCH(dtype, T, ...)                                                   \
  do {                                                                                     \
    if ((dtype) == ::ignis::DType::F32) {                                                  \
      using T = float;                                                                     \
      __VA_ARGS__                                                                          \
    } else if ((dtype) == ::ignis::DType::F16) {                                           \
      using T = __half;                                                                    \
      __VA_ARGS__                                                                          \
    } else if ((dtype) == ::ignis::DType::BF16) {                                          \
      using T = ::ignis::cuda::bf16;                                                       \
      __VA_ARGS__                                                                          \
    } else {                                                                               \
      ::ignis::fail("encoder kernels: dtype must be F32, F16 or BF16, got ",               \
                    ::ignis::dtype_name(dtype));                                           \
    }                                                                                      \
  } while (0)
