// GPTQ calibration on the GPU (gptq_calib_cuda.h says what it computes; src/quant/calibrate.cpp is
// the CPU reference it follows step by step, and each kernel below names its CPU counterpart).
//
// Layout: all tensors are row-major fp32, one row per calibration token. The samples' rows are
// concatenated (sample s at rows [off_s, off_s + T_s)); pos[r] is the position of row r within its
// sample, so row r's sample starts at r - pos[r] (attention and RoPE read it). The forward runs over
// chunks of whole samples, so a chunk's attention never looks outside the chunk.
// Everything is queued on one stream (the Hessians' SSYRKs too), so a chunk buffer that a Hessian
// reads is only overwritten by the next chunk after that read; the host waits only for the
// Hessians (hessian() synchronizes) and the weight uploads.
#include <algorithm>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "cuda/common.h"
#include "cuda/gptq_calib_cuda.h"
#include "cuda/gptq_cuda.h"
#include "ops/ops.h"
#include "ops/quant.h"

namespace ignis::cuda {

namespace {

constexpr int64_t kChunkRows = 4096;  // rows per chunk of samples (at least one whole sample)
constexpr int kMaxHeadDim = gptq_calib_kernels::kMaxHeadDim;  // attention_kernel: head_dim / 32 values per lane
constexpr int kHeadPerLane = kMaxHeadDim / 32;
constexpr int kNormThreads = 256;
constexpr int kAttnWarps = 4;  // warps per block of attention_kernel

// Blocks for a grid-stride loop over n elements.
int grid_for(int64_t n, int threads) {
  return int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, threads), int64_t(sm_count()) * 16)));
}

// ---- kernels ---------------------------------------------------------------------------------------

// CPU: ops::rmsnorm (ops_cpu.cpp), per row: out = x * float(1 / sqrt(mean(x^2) + eps)) * w, the sum
// of squares in double as there. One block of kNormThreads per row (a strided sum, then a warp and
// a shared-memory reduction in double); reads the row and w, writes the row: 3 D floats per row.
__global__ void rmsnorm_rows_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out,
                                    int64_t D, float eps) {
  __shared__ double red[kNormThreads / 32];
  pdl_wait();
  const float* xr = x + int64_t(blockIdx.x) * D;
  float* orow = out + int64_t(blockIdx.x) * D;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  double total = 0;
  for (int i = 0; i < int(blockDim.x >> 5); ++i) total += red[i];  // every thread: the same sum
  const float scale = float(1.0 / sqrt(total / double(D) + double(eps)));
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) orow[i] = xr[i] * scale * w[i];
}

// CPU: the bias loop of calibrate.cpp's linear(): y[t][n] += b[n] for rows x N values. Grid-stride,
// one thread per element; y read and written once.
__global__ void add_bias_kernel(float* __restrict__ y, const float* __restrict__ b, int64_t rows, int64_t N) {
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * N; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += b[i % N];
}

// CPU: ops::Rope::apply in the half-split style, at each row's position pos[r]: for head h and pair
// i < half (half = rope_dim / 2), angle = (pos * pos_scale) * inv_freq[i] (float, as there), and
// (v[i], v[i + half]) is rotated by it. inv_freq is ops::Rope's table (its rope scaling included);
// pos_scale is 1 / factor for linear scaling. One thread per (row, head, pair), grid-stride;
// in place, each value read and written once.
__global__ void rope_half_split_kernel(float* __restrict__ x, int64_t rows, int n_heads, int head_dim, int half,
                                       const int32_t* __restrict__ pos, const float* __restrict__ inv_freq,
                                       float pos_scale) {
  pdl_wait();
  const int64_t n = rows * n_heads * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(idx % half);
    const int64_t rh = idx / half;  // row * n_heads + head
    const int64_t r = rh / n_heads;
    float* v = x + rh * head_dim;
    const float p = float(pos[r]) * pos_scale;
    const float angle = p * inv_freq[i];
    const float c = cosf(angle), s = sinf(angle);
    const float x0 = v[i], x1 = v[i + half];
    v[i] = x0 * c - x1 * s;
    v[i + half] = x0 * s + x1 * c;
  }
}

// CPU: ops::attention (ops_cpu.cpp) of each sample with pos = 0: causal grouped-query attention,
// query row r (position pos[r] in its sample) attends to the rows r - pos[r] .. r of its sample,
// head h to kv head h / (n_heads / n_kv_heads); softmax(q.k / sqrt(head_dim)) . v.
// One warp per (row, head); lane l holds dimensions l, l + 32, ... of q and of the output
// accumulator (head_dim <= kMaxHeadDim). Keys are visited in order with an online softmax in fp32
// (running max m, sum l; the accumulator rescaled by exp(m_old - m_new)), one warp_sum per key.
// Traffic: each query row reads its sample's keys and values so far (L1/L2-cached across the warps
// of the rows that share them); writes head_dim floats per (row, head).
// Launch: ceil(rows * n_heads / kAttnWarps) blocks of 32 * kAttnWarps threads.
__global__ void attention_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                 float* __restrict__ out, const int32_t* __restrict__ pos, int64_t rows, int n_heads,
                                 int n_kv_heads, int head_dim, float scale) {
  pdl_wait();
  const int lane = int(threadIdx.x & 31);
  const int64_t wi = int64_t(blockIdx.x) * kAttnWarps + (threadIdx.x >> 5);
  if (wi >= rows * n_heads) return;  // whole warps leave together (no block-wide sync below)
  const int64_t r = wi / n_heads;
  const int h = int(wi - r * n_heads);
  const int kvh = h / (n_heads / n_kv_heads);
  const int64_t q_stride = int64_t(n_heads) * head_dim, kv_stride = int64_t(n_kv_heads) * head_dim;
  const float* qr = q + r * q_stride + int64_t(h) * head_dim;
  float qv[kHeadPerLane], acc[kHeadPerLane];
#pragma unroll
  for (int i = 0; i < kHeadPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < head_dim ? qr[d] : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t j = r - pos[r]; j <= r; ++j) {
    const float* kr = k + j * kv_stride + int64_t(kvh) * head_dim;
    const float* vr = v + j * kv_stride + int64_t(kvh) * head_dim;
    float part = 0.f;
#pragma unroll
    for (int i = 0; i < kHeadPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < head_dim) part += qv[i] * kr[d];
    }
    const float s = warp_sum(part) * scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), p = expf(s - m_new);  // the first key: corr = exp(-inf) = 0
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kHeadPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < head_dim) acc[i] = acc[i] * corr + p * vr[d];
    }
    m = m_new;
  }
  float* o = out + r * q_stride + int64_t(h) * head_dim;
  const float inv = 1.f / l;
#pragma unroll
  for (int i = 0; i < kHeadPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < head_dim) o[d] = acc[i] * inv;
  }
}

// CPU: ops::silu_mul: out = g / (1 + exp(-g)) * u (out may be g). Grid-stride, one thread per value.
__global__ void silu_mul_kernel(const float* g, const float* __restrict__ u, float* out, int64_t n) {
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gv = g[i];
    out[i] = gv / (1.0f + expf(-gv)) * u[i];
  }
}

// CPU: the residual adds of calibrate.cpp (X[s][i] += o[i]): x += y. Grid-stride, one thread per value.
__global__ void add_inplace_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  pdl_wait();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

}  // namespace

// ---- launchers (gptq_calib_cuda.h): the only way the kernels above are launched -------------------

namespace gptq_calib_kernels {

void rmsnorm_rows(const float* x, const float* w, float* out, int64_t rows, int64_t dim, float eps,
                  cudaStream_t stream) {
  if (rows == 0) return;
  launch(rmsnorm_rows_kernel, dim3(unsigned(rows)), dim3(kNormThreads), 0, stream, x, w, out, dim, eps);
}

void add_bias(float* y, const float* b, int64_t rows, int64_t N, cudaStream_t stream) {
  if (rows * N == 0) return;
  launch(add_bias_kernel, dim3(grid_for(rows * N, 256)), dim3(256), 0, stream, y, b, rows, N);
}

void rope_half_split(float* x, int64_t rows, int n_heads, int head_dim, int half, const int32_t* pos,
                     const float* inv_freq, float pos_scale, cudaStream_t stream) {
  if (rows * n_heads * half == 0) return;
  launch(rope_half_split_kernel, dim3(grid_for(rows * n_heads * half, 256)), dim3(256), 0, stream, x, rows, n_heads,
         head_dim, half, pos, inv_freq, pos_scale);
}

void attention(const float* q, const float* k, const float* v, float* out, const int32_t* pos, int64_t rows,
               int n_heads, int n_kv_heads, int head_dim, float scale, cudaStream_t stream) {
  IGNIS_CHECK(head_dim > 0 && head_dim <= kMaxHeadDim && n_kv_heads > 0 && n_heads % n_kv_heads == 0,
              "GPTQ calibration attention: head_dim ", head_dim, " (at most ", kMaxHeadDim, "), ", n_heads,
              " heads, ", n_kv_heads, " kv heads (must divide the heads)");
  if (rows * n_heads == 0) return;
  launch(attention_kernel, dim3(ceil_div(rows * n_heads, kAttnWarps)), dim3(32 * kAttnWarps), 0, stream, q, k, v, out,
         pos, rows, n_heads, n_kv_heads, head_dim, scale);
}

void silu_mul(const float* g, const float* u, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch(silu_mul_kernel, dim3(grid_for(n, 256)), dim3(256), 0, stream, g, u, out, n);
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch(add_inplace_kernel, dim3(grid_for(n, 256)), dim3(256), 0, stream, x, y, n);
}

}  // namespace gptq_calib_kernels

namespace {

// ---- host helpers ----------------------------------------------------------------------------------

// The stream and cuBLAS handle of one calibration run.
struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  Context() {
    try {
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      CUBLAS_CHECK(cublasCreate(&blas));
      CUBLAS_CHECK(cublasSetStream(blas, stream));
      CUBLAS_CHECK(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));  // plain fp32 (no TF32), close to the CPU
    } catch (...) {
      release();
      throw;
    }
  }
  ~Context() { release(); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  void release() {
    if (stream) cudaStreamSynchronize(stream);  // no queued work may outlive the buffers it reads
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
    blas = nullptr, stream = nullptr;
  }
};

// All of t as floats (quantized block types dequantized), as calibrate.cpp's vec_f32.
std::vector<float> vec_f32(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  for (int64_t r = 0; r < t.rows(); ++r)
    quant::dequantize_row(t.dtype(), t.row<void>(r), v.data() + r * t.cols(), t.cols());
  return v;
}

// A device copy of n host floats (the host may reuse h when this returns).
void upload(Context& ctx, DeviceBuffer& d, const float* h, size_t n) {
  d.alloc(std::max<size_t>(1, n) * sizeof(float));
  if (n == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(d.get(), h, n * sizeof(float), cudaMemcpyHostToDevice, ctx.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

// CPU: calibrate.cpp's linear() (quant::matmul with f32 weights): y[T, N] = x[T, K] W[N, K]^T (+ b).
// Row-major y^T is column-major [N, T] = W^T x^T: W row-major [N, K] is column-major [K, N] (ld K).
void linear(Context& ctx, const DeviceBuffer& W, int64_t N, int64_t K, const float* x, int64_t T, float* y,
            const DeviceBuffer* bias = nullptr) {
  const float one = 1.f, zero = 0.f;
  CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(T), int(K), &one, W.as<float>(), int(K), x,
                           int(K), &zero, y, int(N)));
  if (bias) gptq_calib_kernels::add_bias(y, bias->as<float>(), T, N, ctx.stream);
}

void rmsnorm_rows(Context& ctx, const float* x, const DeviceBuffer& w, float* out, int64_t T, int64_t D, float eps) {
  gptq_calib_kernels::rmsnorm_rows(x, w.as<float>(), out, T, D, eps, ctx.stream);
}

void add_inplace(Context& ctx, float* x, const float* y, int64_t n) {
  gptq_calib_kernels::add_inplace(x, y, n, ctx.stream);
}

// Checks that weight `name` exists with the shape the forward reads (the kernels index by the
// config's sizes); returns it.
const Tensor& weight(const ModelSource& src, const std::string& name, int64_t rows, int64_t cols) {
  const auto it = src.weights.find(name);
  IGNIS_CHECK(it != src.weights.end(), "GPTQ calibration: weight '", name, "' is missing");
  const Tensor& t = it->second;
  IGNIS_CHECK(t.rows() == rows && t.cols() == cols, "GPTQ calibration: weight '", name, "' is ", t.rows(), " x ",
              t.cols(), ", expected ", rows, " x ", cols, " from the config");
  return t;
}

struct Chunk {
  int64_t row0 = 0, rows = 0;
};

}  // namespace

std::map<std::string, quant::QuantLinear> gptq_quantize_model_cuda(const ModelSource& src,
                                                                   const std::vector<int32_t>& tokens, int seq_len,
                                                                   const quant::QuantSpec& spec,
                                                                   const quant::GptqOptions& gopt,
                                                                   const quant::Progress& progress) {
  // The checks and samples of calibrate.cpp, then the limits of the kernels here.
  const LlamaConfig& c = src.config;
  const std::vector<int64_t> samples = quant::gptq_sample_lengths(c, tokens, seq_len);  // tokens per sample
  const int64_t D = c.dim, Hd = c.hidden_dim, nh = c.n_heads, nkv = c.n_kv_heads, hd = c.head_dim;
  const int64_t qdim = nh * hd, kvdim = nkv * hd;
  IGNIS_CHECK(D > 0 && Hd > 0 && nh > 0 && nkv > 0 && hd > 0 && nh % nkv == 0, "GPTQ calibration: bad model sizes (dim ",
              D, ", hidden ", Hd, ", heads ", nh, ", kv heads ", nkv, ", head_dim ", hd, ")");
  IGNIS_CHECK(hd <= kMaxHeadDim, "GPTQ calibration on the GPU: head_dim ", hd, " is not supported (at most ",
              kMaxHeadDim, "); use --device cpu");
  IGNIS_CHECK(c.rope_dim >= 0 && c.rope_dim <= hd && c.rope_dim % 2 == 0, "GPTQ calibration on the GPU: rope_dim ",
              c.rope_dim, " must be even and at most head_dim ", hd);
  const auto embd_it = src.weights.find("token_embd.weight");
  IGNIS_CHECK(embd_it != src.weights.end(), "GPTQ calibration: weight 'token_embd.weight' is missing");
  const Tensor& embd = embd_it->second;
  IGNIS_CHECK(embd.cols() == D && embd.rows() >= c.vocab_size, "GPTQ calibration: token_embd.weight is ", embd.rows(),
              " x ", embd.cols(), ", expected ", c.vocab_size, " x ", D);

  // Samples as the CPU cuts them (gptq_sample_lengths); chunks: runs of whole samples of up to kChunkRows rows (or one longer sample). Only the last
  // window can be dropped (a single token), so row r of the concatenated samples is token r.
  std::vector<Chunk> chunks;
  std::vector<int32_t> pos;
  int64_t rows_total = 0, max_chunk = 0;
  for (const int64_t n : samples) {
    if (chunks.empty() || (chunks.back().rows > 0 && chunks.back().rows + n > kChunkRows)) chunks.push_back({rows_total, 0});
    chunks.back().rows += n;
    for (int64_t t = 0; t < n; ++t) pos.push_back(int32_t(t));
    rows_total += n;
  }
  for (const Chunk& ch : chunks) max_chunk = std::max(max_chunk, ch.rows);

  Context ctx;
  cudaStream_t st = ctx.stream;
  GptqSolverCuda solver;

  // Hidden states of all samples (the embeddings to start), positions, RoPE table.
  DeviceBuffer dX(size_t(rows_total * D) * sizeof(float)), dA(size_t(rows_total * qdim) * sizeof(float)), dPos, dInvFreq;
  {
    std::vector<float> e(size_t(max_chunk * D));
    for (const Chunk& ch : chunks) {
      quant::get_rows(embd, tokens.data() + ch.row0, ch.rows, e.data());
      CUDA_CHECK(cudaMemcpyAsync(dX.as<float>() + ch.row0 * D, e.data(), size_t(ch.rows * D) * sizeof(float),
                                 cudaMemcpyHostToDevice, st));
      CUDA_CHECK(cudaStreamSynchronize(st));  // before e is refilled
    }
  }
  dPos.alloc(pos.size() * sizeof(int32_t));
  CUDA_CHECK(cudaMemcpyAsync(dPos.get(), pos.data(), pos.size() * sizeof(int32_t), cudaMemcpyHostToDevice, st));
  const ops::Rope rope(c);
  const int half = c.rope_dim / 2;
  const float pos_scale = c.rope_scaling == RopeScaling::kLinear ? 1.0f / c.rope_factor : 1.0f;
  upload(ctx, dInvFreq, rope.inv_freq().data(), rope.inv_freq().size());
  const float attn_scale = 1.0f / std::sqrt(float(hd));

  // Chunk intermediates: h [rows, D], q [rows, qdim], k / v [rows, kvdim], o [rows, D], g / u [rows, Hd].
  DeviceBuffer dH(size_t(max_chunk * D) * sizeof(float)), dQ(size_t(max_chunk * qdim) * sizeof(float)),
      dK(size_t(max_chunk * kvdim) * sizeof(float)), dV(size_t(max_chunk * kvdim) * sizeof(float)),
      dO(size_t(max_chunk * D) * sizeof(float)), dG(size_t(max_chunk * Hd) * sizeof(float)),
      dU(size_t(max_chunk * Hd) * sizeof(float));
  float *X = dX.as<float>(), *A = dA.as<float>(), *h = dH.as<float>(), *q = dQ.as<float>(), *k = dK.as<float>(),
        *v = dV.as<float>(), *o = dO.as<float>(), *g = dG.as<float>(), *u = dU.as<float>();
  const int32_t* P = dPos.as<int32_t>();

  std::map<std::string, quant::QuantLinear> out;
  const int total_steps = c.n_layers * 4;
  int step = 0;
  auto report = [&](const std::string& what) {
    ++step;
    if (progress) progress(double(step) / total_steps, what);
  };
  // The solve of one layer from its Hessian; `dev` receives the weights the forward goes on with:
  // the dequantized result, or the float weights of a layer that is not quantizable.
  auto quantize = [&](const std::string& name, int64_t N, int64_t K, const std::vector<double>& H, DeviceBuffer& dev) {
    const Tensor& w = weight(src, name, N, K);
    const std::vector<float> wf = vec_f32(w);
    if (!quant::quantizable(spec, N, K)) return upload(ctx, dev, wf.data(), wf.size());  // stays in float
    out[name] = solver.quantize(wf.data(), N, K, H, spec, gopt, name);
    const std::vector<float> deq = quant::dequantize(out[name]);
    upload(ctx, dev, deq.data(), deq.size());
  };
  auto vec_dev = [&](const std::string& name, int64_t n, DeviceBuffer& dev) {
    const std::vector<float> f = vec_f32(weight(src, name, 1, n));
    upload(ctx, dev, f.data(), f.size());
  };

  DeviceBuffer Wq, Wk, Wv, Wo, Wg, Wu, Wd, attn_norm, ffn_norm, bq, bk, bv;
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    vec_dev(b + "attn_norm.weight", D, attn_norm);
    vec_dev(b + "ffn_norm.weight", D, ffn_norm);
    if (c.qkv_bias) {
      vec_dev(b + "attn_q.bias", qdim, bq);
      vec_dev(b + "attn_k.bias", kvdim, bk);
      vec_dev(b + "attn_v.bias", kvdim, bv);
    }
    const DeviceBuffer* pbq = c.qkv_bias ? &bq : nullptr;
    const DeviceBuffer* pbk = c.qkv_bias ? &bk : nullptr;
    const DeviceBuffer* pbv = c.qkv_bias ? &bv : nullptr;

    // 1. q, k, v from h = rmsnorm(x)
    {
      GptqHessianCuda acc(D, st);
      for (const Chunk& ch : chunks) {
        rmsnorm_rows(ctx, X + ch.row0 * D, attn_norm, h, ch.rows, D, c.norm_eps);
        acc.add_device(h, ch.rows);
      }
      const std::vector<double> H = acc.hessian();
      quantize(b + "attn_q.weight", qdim, D, H, Wq);
      quantize(b + "attn_k.weight", kvdim, D, H, Wk);
      quantize(b + "attn_v.weight", kvdim, D, H, Wv);
    }
    report("layer " + std::to_string(l) + " q/k/v");

    // 2. o from the attention output (with the quantized q/k/v); A is kept for step 3
    {
      GptqHessianCuda acc(qdim, st);
      for (const Chunk& ch : chunks) {
        const int64_t T = ch.rows;
        rmsnorm_rows(ctx, X + ch.row0 * D, attn_norm, h, T, D, c.norm_eps);
        linear(ctx, Wq, qdim, D, h, T, q, pbq);
        linear(ctx, Wk, kvdim, D, h, T, k, pbk);
        linear(ctx, Wv, kvdim, D, h, T, v, pbv);
        if (half > 0) {
          gptq_calib_kernels::rope_half_split(q, T, int(nh), int(hd), half, P + ch.row0, dInvFreq.as<float>(),
                                              pos_scale, st);
          gptq_calib_kernels::rope_half_split(k, T, int(nkv), int(hd), half, P + ch.row0, dInvFreq.as<float>(),
                                              pos_scale, st);
        }
        float* a = A + ch.row0 * qdim;
        gptq_calib_kernels::attention(q, k, v, a, P + ch.row0, T, int(nh), int(nkv), int(hd), attn_scale, st);
        acc.add_device(a, T);
      }
      const std::vector<double> H = acc.hessian();
      quantize(b + "attn_output.weight", D, qdim, H, Wo);
    }
    report("layer " + std::to_string(l) + " o");

    // 3. x += a Wo; gate/up from h2 = rmsnorm(x)
    {
      GptqHessianCuda acc(D, st);
      for (const Chunk& ch : chunks) {
        const int64_t T = ch.rows;
        float* x = X + ch.row0 * D;
        linear(ctx, Wo, D, qdim, A + ch.row0 * qdim, T, o);
        add_inplace(ctx, x, o, T * D);
        rmsnorm_rows(ctx, x, ffn_norm, h, T, D, c.norm_eps);
        acc.add_device(h, T);
      }
      const std::vector<double> H = acc.hessian();
      quantize(b + "ffn_gate.weight", Hd, D, H, Wg);
      quantize(b + "ffn_up.weight", Hd, D, H, Wu);
    }
    report("layer " + std::to_string(l) + " gate/up");

    // 4. down from m = silu(h2 Wg) * (h2 Wu); then x += m Wd with the quantized Wd
    auto mlp_in = [&](const Chunk& ch) {
      const int64_t T = ch.rows;
      rmsnorm_rows(ctx, X + ch.row0 * D, ffn_norm, h, T, D, c.norm_eps);
      linear(ctx, Wg, Hd, D, h, T, g);
      linear(ctx, Wu, Hd, D, h, T, u);
      gptq_calib_kernels::silu_mul(g, u, g, T * Hd, st);
    };
    {
      GptqHessianCuda acc(Hd, st);
      for (const Chunk& ch : chunks) {
        mlp_in(ch);
        acc.add_device(g, ch.rows);
      }
      const std::vector<double> H = acc.hessian();
      quantize(b + "ffn_down.weight", D, Hd, H, Wd);
    }
    for (const Chunk& ch : chunks) {
      mlp_in(ch);
      linear(ctx, Wd, D, Hd, g, ch.rows, o);
      add_inplace(ctx, X + ch.row0 * D, o, ch.rows * D);
    }
    CUDA_CHECK(cudaStreamSynchronize(st));  // surfaces an execution error at the layer it happened in
    report("layer " + std::to_string(l) + " down");
  }
  return out;
}

}  // namespace ignis::cuda
