// Small element-wise kernels, all grid-stride loops of 256 threads:
//  swiglu:          out[i, j] = silu(gu[i, gate(j)]) * gu[i, up(j)]   (prefill; decode fuses it into
//                   the gate/up GEMV). Reads 2 hp, writes hp elements per row.
//  embed:           x[i, :] = float(table[tokens[i], :]). Reads dim T, writes dim floats per token.
//  convert_matrix:  weight upload: F32/F16/BF16 rows -> F32/BF16 rows at remapped row positions.
//  fill_random:     synthetic weights from a counter-based hash (no host copy).
#include <cuda_fp16.h>

#include "cuda/common.h"
#include "cuda/kernels.h"

namespace ignis::cuda {
namespace {

constexpr int kThreads = 256;

int grid_for(int64_t n) { return int(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 8)); }

template <typename T>
__global__ void swiglu_kernel(const T* __restrict__ gu, T* __restrict__ out, int n, int hp) {
  pdl_trigger();
  pdl_wait();
  const int64_t total = int64_t(n) * hp;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / hp;
    const int j = int(idx % hp);
    const T* row = gu + i * 2 * hp;
    const int64_t gcol = swiglu_row_of_gate(j);
    const float g = to_f(row[gcol]), u = to_f(row[gcol + 8]);
    out[idx] = from_f<T>(g / (1.f + __expf(-g)) * u);
  }
}

template <typename T>
__global__ void embed_kernel(const T* __restrict__ table, const int* __restrict__ tokens, int n, int dim, int vocab,
                             float* __restrict__ x) {
  pdl_trigger();
  pdl_wait();
  const int64_t total = int64_t(n) * dim;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / dim;
    const int d = int(idx % dim);
    const int tok = tokens[i];
    x[idx] = (tok >= 0 && tok < vocab) ? to_f(table[int64_t(tok) * dim + d]) : 0.f;
  }
}

__device__ __forceinline__ float load_any(DType t, const void* p, int64_t i) {
  if (t == DType::F32) return static_cast<const float*>(p)[i];
  if (t == DType::F16) return __half2float(static_cast<const __half*>(p)[i]);
  return __bfloat162float(static_cast<const bf16*>(p)[i]);
}

template <typename T>
__global__ void convert_kernel(DType st, const void* __restrict__ src, T* __restrict__ dst, int64_t rows, int64_t cols,
                               int64_t dst_ld, int64_t row_offset, bool interleave8) {
  pdl_trigger();
  pdl_wait();
  const int64_t total = rows * cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, c = idx % cols;
    const int64_t dr = row_offset + (interleave8 ? swiglu_row_of_gate(r) : r);
    dst[dr * dst_ld + c] = from_f<T>(load_any(st, src, idx));
  }
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_random_kernel(T* __restrict__ p, size_t n, uint64_t seed, float scale, float offset) {
  pdl_trigger();
  pdl_wait();
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t h = splitmix64(seed * 0x2545f4914f6cdd1dull + i);
    const float u = float(uint32_t(h >> 40)) * (2.f / 16777216.f) - 1.f;  // [-1, 1)
    p[i] = from_f<T>(offset + scale * u);
  }
}

void check_act(DType t, const char* what) {
  IGNIS_CHECK(t == DType::F32 || t == DType::BF16, what, ": dtype must be F32 or BF16, got ", dtype_name(t));
}

}  // namespace

void swiglu(DType t, const void* gu, void* out, int n, int hp, cudaStream_t stream) {
  check_act(t, "swiglu");
  IGNIS_CHECK(hp % 8 == 0, "swiglu: hidden size must be padded to a multiple of 8, got ", hp);
  if (n <= 0) return;
  const int g = grid_for(int64_t(n) * hp);
  if (t == DType::F32)
    launch(swiglu_kernel<float>, dim3(g), dim3(kThreads), 0, stream, static_cast<const float*>(gu),
           static_cast<float*>(out), n, hp);
  else
    launch(swiglu_kernel<bf16>, dim3(g), dim3(kThreads), 0, stream, static_cast<const bf16*>(gu),
           static_cast<bf16*>(out), n, hp);
}

void embed(DType t, const void* table, const int* tokens, int n, int dim, int vocab, float* x, cudaStream_t stream) {
  check_act(t, "embed");
  if (n <= 0) return;
  const int g = grid_for(int64_t(n) * dim);
  if (t == DType::F32)
    launch(embed_kernel<float>, dim3(g), dim3(kThreads), 0, stream, static_cast<const float*>(table), tokens, n, dim,
           vocab, x);
  else
    launch(embed_kernel<bf16>, dim3(g), dim3(kThreads), 0, stream, static_cast<const bf16*>(table), tokens, n, dim,
           vocab, x);
}

void convert_matrix(DType src_type, const void* src, DType dst_type, void* dst, int64_t rows, int64_t cols,
                    int64_t dst_ld, int64_t row_offset, bool interleave8, cudaStream_t stream) {
  IGNIS_CHECK(src_type == DType::F32 || src_type == DType::F16 || src_type == DType::BF16,
              "convert_matrix: source dtype must be F32, F16 or BF16, got ", dtype_name(src_type));
  check_act(dst_type, "convert_matrix");
  if (rows * cols == 0) return;
  const int g = grid_for(rows * cols);
  if (dst_type == DType::F32)
    launch(convert_kernel<float>, dim3(g), dim3(kThreads), 0, stream, src_type, src, static_cast<float*>(dst), rows,
           cols, dst_ld, row_offset, interleave8);
  else
    launch(convert_kernel<bf16>, dim3(g), dim3(kThreads), 0, stream, src_type, src, static_cast<bf16*>(dst), rows,
           cols, dst_ld, row_offset, interleave8);
}

void fill_random(DType t, void* p, size_t n, uint64_t seed, float scale, float offset, cudaStream_t stream) {
  check_act(t, "fill_random");
  if (n == 0) return;
  const int g = grid_for(int64_t(n));
  if (t == DType::F32)
    launch(fill_random_kernel<float>, dim3(g), dim3(kThreads), 0, stream, static_cast<float*>(p), n, seed, scale,
           offset);
  else
    launch(fill_random_kernel<bf16>, dim3(g), dim3(kThreads), 0, stream, static_cast<bf16*>(p), n, seed, scale,
           offset);
}

}  // namespace ignis::cuda
