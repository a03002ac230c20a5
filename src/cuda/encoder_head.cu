// The encoder heads, run once per call after the layers (eagerly, with the real batch size):
//  - pooling: mean over the rows of each sequence (or its first, CLS, row), optionally divided by
//    its L2 norm (sentence-transformers' Pooling + Normalize). One block per sequence; the pooled
//    row is kept in shared memory (H floats) between the sum and the normalisation.
//    Bytes: the hidden rows of the batch read once.
//  - a small linear layer with fp32 output: the BERT pooler / RoBERTa classifier.dense (+ tanh) on
//    the CLS rows, the classifier on the pooled vector, or the token classifier on every row.
//    One warp per output value (the products are tiny: B x labels x H), lanes over K.
#include <algorithm>

#include "cuda/encoder_common.cuh"
#include "cuda/encoder_kernels.h"

namespace ignis::cuda {
namespace {

using namespace enc;

template <typename T>
__global__ void pool_kernel(const T* hidden, const int* offsets, int H, bool mean, bool normalize, float* out) {
  extern __shared__ float pooled[];  // [H]
  __shared__ float red[32];
  pdl_trigger();
  pdl_wait();
  const int b = blockIdx.x;
  const int s0 = offsets[b], s1 = offsets[b + 1];
  const int rows = mean ? s1 - s0 : 1;
  const float inv = rows > 0 ? 1.f / float(rows) : 0.f;
  float ss = 0.f;
  for (int c = threadIdx.x; c < H; c += blockDim.x) {
    float acc = 0.f;
    for (int r = 0; r < rows; ++r) acc += t2f(hidden[size_t(s0 + r) * H + c]);
    acc *= inv;
    pooled[c] = acc;
    ss += acc * acc;
  }
  float scale = 1.f;
  if (normalize) scale = 1.f / fmaxf(sqrtf(block_sum(ss, red)), 1e-12f);
  for (int c = threadIdx.x; c < H; c += blockDim.x) out[size_t(b) * H + c] = pooled[c] * scale;
}

template <typename TX, typename TW>
__global__ void head_linear_kernel(const TX* x, const int* offsets, int B, const TW* W, const TW* bias, int N, int K,
                                   EncAct act, float* out) {
  pdl_trigger();
  pdl_wait();
  const int warp = int((blockIdx.x * size_t(blockDim.x) + threadIdx.x) >> 5), lane = threadIdx.x & 31;
  if (warp >= B * N) return;
  const int b = warp / N, j = warp % N;
  const int row = offsets ? offsets[b] : b;
  const TX* xr = x + size_t(row) * K;
  const TW* wr = W + size_t(j) * K;
  float acc = 0.f;
  for (int k = lane; k < K; k += 32) acc += t2f(xr[k]) * t2f(wr[k]);
  acc = warp_sum(acc);
  if (lane == 0) {
    if (bias) acc += t2f(bias[j]);
    if (act == EncAct::kTanh) acc = tanhf(acc);
    out[size_t(b) * N + j] = acc;
  }
}

}  // namespace

void encoder_pool(DType t, const void* hidden, const int* offsets, int B, int H, bool mean, bool normalize,
                  float* out, cudaStream_t stream) {
  if (B <= 0) return;
  IGNIS_CHECK(H > 0 && H <= 16384, "encoder_pool: hidden size ", H, " out of range");
  const int threads = std::min(1024, ((H + 31) / 32) * 32);
  IGNIS_ENC_DISPATCH(t, T, {
    launch_enc(pool_kernel<T>, dim3(B), dim3(threads), size_t(H) * sizeof(float), stream, static_cast<const T*>(hidden),
           offsets, H, mean, normalize, out);
  });
}

void encoder_head_linear(DType t, DType x_dtype, const void* x, const int* offsets, int B, const void* W,
                         const void* bias, int N, int K, EncAct act, float* out, cudaStream_t stream) {
  if (B <= 0 || N <= 0) return;
  IGNIS_CHECK(K > 0, "encoder_head_linear: K must be positive");
  IGNIS_CHECK(act == EncAct::kNone || act == EncAct::kTanh, "encoder_head_linear: activation must be none or tanh");
  IGNIS_CHECK(x_dtype == t || x_dtype == DType::F32, "encoder_head_linear: x must be of the weights' dtype or F32");
  const int threads = 256;
  const int blocks = ceil_div(int64_t(B) * N * 32, threads);
  IGNIS_ENC_DISPATCH(t, TW, {
    if (x_dtype == DType::F32) {
      launch_enc(head_linear_kernel<float, TW>, dim3(blocks), dim3(threads), 0, stream, static_cast<const float*>(x),
             offsets, B, static_cast<const TW*>(W), static_cast<const TW*>(bias), N, K, act, out);
    } else {
      launch_enc(head_linear_kernel<TW, TW>, dim3(blocks), dim3(threads), 0, stream, static_cast<const TW*>(x), offsets,
             B, static_cast<const TW*>(W), static_cast<const TW*>(bias), N, K, act, out);
    }
  });
}

}  // namespace ignis::cuda
