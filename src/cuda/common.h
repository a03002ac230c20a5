// Shared by every CUDA file of the backend: error checking, the launch helper (with
// Programmatic Dependent Launch), small device helpers (bf16 <-> float, warp reductions,
// vector loads) and an owning device buffer.
//
// Error policy: every CUDA / cuBLAS call goes through CUDA_CHECK / CUBLAS_CHECK, which throw
// ignis::Error("file:line: call: error string"); every kernel launch goes through launch(),
// which checks the launch error right after it.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "core/error.h"

#define IGNIS_CUDA_STR2(x) #x
#define IGNIS_CUDA_STR(x) IGNIS_CUDA_STR2(x)

#define CUDA_CHECK(call)                                                                       \
  do {                                                                                         \
    const cudaError_t ignis_err_ = (call);                                                     \
    if (ignis_err_ != cudaSuccess)                                                             \
      ::ignis::fail(__FILE__ ":" IGNIS_CUDA_STR(__LINE__) ": ", #call, ": ",                   \
                    cudaGetErrorName(ignis_err_), ": ", cudaGetErrorString(ignis_err_));        \
  } while (0)

#define CUBLAS_CHECK(call)                                                                     \
  do {                                                                                         \
    const cublasStatus_t ignis_st_ = (call);                                                   \
    if (ignis_st_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::ignis::fail(__FILE__ ":" IGNIS_CUDA_STR(__LINE__) ": ", #call, ": cuBLAS error ",      \
                    int(ignis_st_), " (", cublasGetStatusString(ignis_st_), ")");               \
  } while (0)

// Checks the error of the launch just made (not its execution, which is asynchronous).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace ignis::cuda {

using bf16 = __nv_bfloat16;

// Whether launch() adds the Programmatic Dependent Launch attribute (Hopper): the next kernel
// in the stream may start while this one drains; kernels call pdl_wait() before touching data
// written by earlier kernels (only constant weights may be read before it). Process-wide
// switch, read once from the environment: on by default, IGNIS_PDL=0 turns it off (H100,
// 2026-12-07: Llama-2-7B decode +1-4% at batch 1 and 8 for bf16 / int4 / int8 / Q4_K).
bool pdl_enabled();
// The encoder's own switch (launch_enc in encoder_common.cuh): off by default, IGNIS_ENC_PDL=1 turns
// it on (H100, 2026-12-07: BERT-base fp16 1x16 / 1x128 0.375 / 0.423 ms without, 0.380 / 0.429 with).
bool pdl_encoder();

// Launches kernel<<<grid, block, smem, stream>>>(args...) through cudaLaunchKernelEx with one optional
// attribute (id, set to 1), and checks the launch.
template <typename... KArgs, typename... Args>
void launch_with(cudaLaunchAttributeID id, bool set, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                 cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = id;
  if (id == cudaLaunchAttributeCooperative)
    attr[0].val.cooperative = 1;
  else
    attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = set ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(std::forward<Args>(args))...));
}

// Every kernel launch: with the PDL attribute when enabled.
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  launch_with(cudaLaunchAttributeProgrammaticStreamSerialization, pdl_enabled(), kernel, grid, block, smem, stream,
              std::forward<Args>(args)...);
}

// A kernel whose blocks must all be resident at once (they meet at grid barriers): the cooperative
// attribute makes the launch fail instead of deadlocking when they do not fit. No PDL.
template <typename... KArgs, typename... Args>
void launch_cooperative(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                        Args&&... args) {
  launch_with(cudaLaunchAttributeCooperative, true, kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

inline int ceil_div(int64_t a, int64_t b) { return int((a + b - 1) / b); }

// Owning device allocation (cudaMalloc / cudaFree), movable, counted in a process-wide
// total so the benchmark can report the backend's own peak memory.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { alloc(bytes); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void alloc(size_t bytes);  // frees the old one first; throws with the size on failure
  void reset();
  void* get() const { return p_; }
  template <typename T>
  T* as() const { return static_cast<T*>(p_); }
  size_t size() const { return n_; }

  static size_t live_bytes();  // sum of all live DeviceBuffers
  static size_t peak_bytes();  // high-water mark of live_bytes()
  static void reset_peak();

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Number of multiprocessors of the current device (cached per device).
int sm_count();

}  // namespace ignis::cuda

// ---- device-side helpers (only in nvcc-compiled files) -------------------------------------------
#ifdef __CUDACC__
namespace ignis::cuda {

// PDL: wait until the previous kernel in the stream has completed and its writes are visible;
// let the next kernel start launching. Both are no-ops when the launch had no PDL attribute.
// Small kernels trigger at their start; the GEMVs after their main loop ("late"), so the next
// kernel's blocks only take SM slots while this one drains.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_f(float x);
template <>
__device__ __forceinline__ float from_f<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16(x); }

// One thread per block, after its block's writes are ordered before it (a block barrier): arrives at
// a grid barrier whose 64-bit count only grows (the count must start at a multiple of the grid size)
// and waits until every block of this round has arrived. Release / acquire at GPU scope.
__device__ __forceinline__ void grid_arrive_wait(unsigned long long* count) {
  unsigned long long old, now;
  asm volatile("atom.add.release.gpu.global.u64 %0, [%1], 1;" : "=l"(old) : "l"(count) : "memory");
  const unsigned long long target = (old / gridDim.x + 1) * gridDim.x;
  do {
    asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(now) : "l"(count) : "memory");
  } while (now < target);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
// `red` is __shared__ float[32]. Contains __syncthreads().
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : 0.f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : -INFINITY;
  return warp_max(v);
}

// Loads N consecutive elements of T starting at p (p aligned to N * sizeof(T), N * sizeof(T)
// in {2, 4, 8, 16} bytes or N == 1) and widens them to float.
template <typename T, int N>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[N]) {
  constexpr int kBytes = N * int(sizeof(T));
  if constexpr (kBytes == 16) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(e[i]);
  } else if constexpr (kBytes == 8) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(e[i]);
  } else if constexpr (kBytes == 4) {
    const uint32_t v = *reinterpret_cast<const uint32_t*>(p);
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(e[i]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = to_f(p[i]);
  }
}

}  // namespace ignis::cuda
#endif  // __CUDACC__
