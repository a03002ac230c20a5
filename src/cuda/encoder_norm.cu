// LayerNorm kernels of the encoder: embeddings gathered and summed then normalised (one kernel
// instead of gather + add + add + norm), and residual add + LayerNorm (post-LN BERT: after the
// attention output and after the FFN). Plus the bias + activation kernel used where cuBLASLt's
// epilogue does not fit (exact erf GELU, or no epilogue algorithm).
//
// LayerNorm: the threads of a row hold up to kMaxG groups of 4 values of it in registers (groups
// strided by the number of threads), mean and variance by two reductions over those registers
// (two-pass variance: exact, no cancellation), then y = (v - mean) * rstd * gamma + beta.
// Traffic per row: embeddings 3 reads of H values + 1 write; add+LN 2 reads + 1 write (after a
// split-K product: x, the bias and S fp32 slices read, the slices summed here instead of by a
// separate reduction kernel of cuBLASLt's).
// Launch shapes:
//  - streaming (add + LayerNorm, from 512 rows, H a multiple of 16 bytes, no split-K slices):
//    resident blocks whose warps loop over rows, two rows in flight per warp (see add_ln_stream_kernel);
//  - warp per row (H <= 4 * kMaxG * 32 = 1024, every BERT-base / MiniLM / large size) when the
//    bucket has 12 rows per SM or more (warp_mode): 8 rows per 256-thread block, reductions by
//    shuffles only. A block per row measured ~41 us per LayerNorm at 16384 x 768 on an H100, about
//    half the bandwidth: 16384 tiny blocks with two __syncthreads each.
//  - block per row (larger H, or fewer rows): grid = rows of the bucket, block = 32..1024 threads
//    (about 2 groups of 4 per thread), block reductions through shared memory.
// Rows at or past n (device count of the bucket's valid rows) store nothing. EAGER (a block per row,
// at most kEagerMaxRows rows): n, the row and gamma / beta are all loaded before anything waits for
// one of them (the kernel is ~5 us at small buckets, a chain of dependent loads; Nsight Compute,
// H200, BERT-base 1x128), so n decides only the stores. Otherwise rows past n exit at once and gamma /
// beta are loaded at their use: preloading them in the warp form cost 32x128 1.687 vs 1.612 ms, 32x512
// 7.49 vs 7.31 (H200, 2026-12-03; docs/results/abbertln-H200-20261203.txt).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cuda/encoder_common.cuh"
#include "cuda/encoder_kernels.h"

namespace ignis::cuda {
namespace {

using namespace enc;

constexpr int kMaxG = 8;  // groups of 4 values per thread: H <= 4 * 8 * 1024

// Threads of a block per row: about 2 groups of 4 per thread, 32 to kMaxBlock.
constexpr int kMaxBlock = 512;  // with kMaxG groups a thread: hidden <= 4 * 8 * 512 = 16384
int ln_threads(int hidden) {
  const int groups = hidden / 4;
  const int t = ((ceil_div(groups, 2) + 31) / 32) * 32;
  return std::min(kMaxBlock, std::max(32, t));
}

void check_hidden(int hidden, const char* what) {
  IGNIS_CHECK(hidden > 0 && hidden % 4 == 0 && hidden <= 4 * kMaxG * kMaxBlock, what, ": hidden size ", hidden,
              " must be a positive multiple of 4 and at most ", 4 * kMaxG * kMaxBlock);
}

// EAGER keeps gamma / beta in registers too (~140-160 a thread), so it runs only with at most
// kEagerThreads threads (hidden <= 2048) and is bounded to them (__launch_bounds__): found by a failed
// launch (too many resources) of the EAGER form at hidden 4096, 512 threads x 140 registers, once the
// add + LayerNorm also summed split-K slices (H100, 2026-12-06).
constexpr int kEagerThreads = 256;

// Warp per row (8 rows per 256-thread block) from 12 rows per SM up; below, a block per row. On an
// H200 (2026-12-02, BERT-base fp16, whole passes) the warp form was faster from 2048 rows (32x512
// 7.10 vs 7.42 ms, 32x128 1.61 vs 1.72) and slower below (1x128 0.51 vs 0.47 ms, 8x128 0.69 vs 0.66),
// also with fewer rows per block. A warp holds rows of up to 4 * kMaxG * 32 values.
constexpr int kRowsPerBlock = 8;
// IGNIS_ENC_LN (A/B measurements): "block" forces a block per row, "warp" the forms before the streaming
// one (warp per row from 12 rows per SM, else a block per row); unset: the streaming form where it serves.
enum class LnForm { kAuto, kWarp, kBlock };
LnForm ln_form() {
  static const LnForm f = [] {
    const char* e = std::getenv("IGNIS_ENC_LN");
    if (e && std::strcmp(e, "block") == 0) return LnForm::kBlock;
    if (e && std::strcmp(e, "warp") == 0) return LnForm::kWarp;
    return LnForm::kAuto;
  }();
  return f;
}
// A block per row up to 512 rows loads everything before it waits (EAGER: 1x16 0.384 vs 0.406 ms, 1x128
// 0.429 vs 0.448, 1x512 0.642 vs 0.654, 32x16 0.493 vs 0.506) but was slower at 1024 rows (8x128 0.691
// vs 0.667; H200, 2026-12-03, docs/results/abbert-tune-ln-H200-20261203.txt).
constexpr int kEagerMaxRows = 512;
bool eager_mode(int rows, int hidden) { return rows <= kEagerMaxRows && ln_threads(hidden) <= kEagerThreads; }
bool warp_mode(int rows, int hidden) {
  return ln_form() != LnForm::kBlock && hidden <= 4 * kMaxG * 32 && rows >= 12 * sm_count();
}

template <bool WARP>
struct RowThreads {
  int row, first, stride;
  __device__ RowThreads() {
    if constexpr (WARP) {
      row = blockIdx.x * kRowsPerBlock + int(threadIdx.x >> 5), first = int(threadIdx.x & 31), stride = 32;
    } else {
      row = blockIdx.x, first = int(threadIdx.x), stride = int(blockDim.x);
    }
  }
  __device__ int group(int i) const { return first + i * stride; }
  // sum of v over the row's threads (all of them must call it)
  __device__ float sum(float v, float* red) const {
    if constexpr (WARP)
      return warp_sum(v);
    else
      return block_sum(v, red);
  }
};

// Normalises the row held in v (this thread's groups, see RowThreads) and stores it to out if
// `valid` (uniform over the row's threads, which all take part in the reductions); gamma/beta float [4 G].
template <typename T, bool WARP, bool EAGER>
__device__ __forceinline__ void layernorm_store(const RowThreads<WARP>& rt, float (&v)[kMaxG][4], int G,
                                                const float* gamma, const float* beta, float eps, T* out,
                                                bool valid) {
  __shared__ float red[32];
  const int H = 4 * G;
  // EAGER (a block per row, small buckets, latency-bound): gamma / beta loaded before the reductions
  // wait for v. Otherwise at their use (fewer registers).
  float4 ga[kMaxG], be[kMaxG];
  auto load_gb = [&](int i, int g) {
    ga[i] = __ldg(reinterpret_cast<const float4*>(gamma) + g);
    be[i] = __ldg(reinterpret_cast<const float4*>(beta) + g);
  };
  if constexpr (EAGER) {
#pragma unroll
    for (int i = 0; i < kMaxG; ++i)
      if (rt.group(i) < G) load_gb(i, rt.group(i));
  }
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxG; ++i)
    if (rt.group(i) < G) s += v[i][0] + v[i][1] + v[i][2] + v[i][3];
  const float mean = rt.sum(s, red) / float(H);
  float q = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxG; ++i) {
    if (rt.group(i) < G) {
#pragma unroll
      for (int e = 0; e < 4; ++e) q += (v[i][e] - mean) * (v[i][e] - mean);
    }
  }
  const float rstd = rsqrtf(rt.sum(q, red) / float(H) + eps);
  if (!valid) return;
#pragma unroll
  for (int i = 0; i < kMaxG; ++i) {
    const int g = rt.group(i);
    if (g < G) {
      if constexpr (!EAGER) load_gb(i, g);
      float y[4];
      y[0] = (v[i][0] - mean) * rstd * ga[i].x + be[i].x;
      y[1] = (v[i][1] - mean) * rstd * ga[i].y + be[i].y;
      y[2] = (v[i][2] - mean) * rstd * ga[i].z + be[i].z;
      y[3] = (v[i][3] - mean) * rstd * ga[i].w + be[i].w;
      store4(out + 4 * g, y);
    }
  }
}

template <typename T, bool WARP, bool EAGER>
__device__ __forceinline__ void embed_ln_body(const EmbedLnArgs& a) {
  pdl_trigger();
  pdl_wait();
  const RowThreads<WARP> rt;
  const int r = rt.row;
  if (r >= a.rows) return;  // whole warps (WARP) or the whole block
  const int n = a.n_dev ? __ldg(a.n_dev) : a.rows;
  if (!EAGER && r >= n) return;  // padding rows cost nothing; EAGER: n gates the stores only
  const int G = a.hidden / 4;
  const int id = a.ids[r], p = a.pos[r], ty = a.types ? a.types[r] : 0;
  const bool id_ok = id >= 0 && id < a.vocab, p_ok = p >= 0 && p < a.max_positions,
             ty_ok = ty >= 0 && ty < a.type_vocab;
  const T* w = static_cast<const T*>(a.word) + size_t(id_ok ? id : 0) * a.hidden;
  const T* pe = static_cast<const T*>(a.pos_tab) + size_t(p_ok ? p : 0) * a.hidden;
  const T* te = static_cast<const T*>(a.type_tab) + size_t(ty_ok ? ty : 0) * a.hidden;
  float v[kMaxG][4];
#pragma unroll
  for (int i = 0; i < kMaxG; ++i) {
    const int g = rt.group(i);
    v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.f;
    if (g < G) {
      float x[4];
      if (id_ok) {
        load4(w + 4 * g, x);
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] += x[e];
      }
      if (p_ok) {
        load4(pe + 4 * g, x);
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] += x[e];
      }
      if (ty_ok) {
        load4(te + 4 * g, x);
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] += x[e];
      }
    }
  }
  layernorm_store<T, WARP, EAGER>(rt, v, G, a.gamma, a.beta, a.eps, static_cast<T*>(a.out) + size_t(r) * a.hidden,
                                  r < n);
}

// The kernels: the warp and lazy block forms with the compiler's own register choice (~60-80), the
// EAGER form bounded to kEagerThreads threads (it holds gamma / beta in registers too: ~140-160).
template <typename T, bool WARP>
__global__ void embed_ln_kernel(EmbedLnArgs a) {
  embed_ln_body<T, WARP, false>(a);
}
template <typename T>
__global__ void __launch_bounds__(kEagerThreads, 1) embed_ln_eager_kernel(EmbedLnArgs a) {
  embed_ln_body<T, false, true>(a);
}

// What is added to x before the LayerNorm: a (T [rows, hidden]) or, after a split-K product, the bias
// (T [hidden]) and the fp32 slices parts[s] (each [rows, hidden]); neither: LayerNorm(x).
template <typename T>
struct AddSrc {
  const T* a = nullptr;
  const float* parts = nullptr;
  int nparts = 0;
  const T* bias = nullptr;
};

template <typename T, bool WARP, bool EAGER>
__device__ __forceinline__ void add_ln_body(const AddSrc<T>& src, T* x, const float* gamma, const float* beta, int rows,
                                            int hidden, float eps, const int* n_dev) {
  pdl_trigger();
  pdl_wait();
  const RowThreads<WARP> rt;
  const int r = rt.row;
  if (r >= rows) return;  // whole warps (WARP) or the whole block
  const int n = n_dev ? __ldg(n_dev) : rows;
  if (!EAGER && r >= n) return;  // padding rows cost nothing; EAGER: n gates the stores only
  const int G = hidden / 4;
  T* xr = x + size_t(r) * hidden;
  const T* ar = src.a ? src.a + size_t(r) * hidden : nullptr;
  const float* pr = src.parts ? src.parts + size_t(r) * hidden : nullptr;
  const size_t pstride = size_t(rows) * hidden;
  float v[kMaxG][4];
#pragma unroll
  for (int i = 0; i < kMaxG; ++i) {
    const int g = rt.group(i);
    v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.f;
    if (g < G) {
      load4(xr + 4 * g, v[i]);
      float y[4];
      if (ar) {
        load4(ar + 4 * g, y);
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] += y[e];
      }
      if (pr) {  // the split-K slices and the bias: the reduction cuBLASLt would run as its own kernel
        load4(src.bias + 4 * g, y);
        for (int s = 0; s < src.nparts; ++s) {
          const float4 p = __ldg(reinterpret_cast<const float4*>(pr + s * pstride) + g);
          y[0] += p.x, y[1] += p.y, y[2] += p.z, y[3] += p.w;
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] += y[e];
      }
    }
  }
  // In place: every thread has read its own groups before anything is written (and each group is
  // read and written by the same thread).
  layernorm_store<T, WARP, EAGER>(rt, v, G, gamma, beta, eps, xr, r < n);
}

template <typename T, bool WARP>
__global__ void add_ln_kernel(AddSrc<T> src, T* x, const float* gamma, const float* beta, int rows, int hidden,
                              float eps, const int* n_dev) {
  add_ln_body<T, WARP, false>(src, x, gamma, beta, rows, hidden, eps, n_dev);
}
template <typename T>
__global__ void __launch_bounds__(kEagerThreads, 1)
    add_ln_eager_kernel(AddSrc<T> src, T* x, const float* gamma, const float* beta, int rows, int hidden, float eps,
                        const int* n_dev) {
  add_ln_body<T, false, true>(src, x, gamma, beta, rows, hidden, eps, n_dev);
}

// ---- the streaming form of the add + LayerNorm (warp per row, resident blocks looping over rows) ----
// Why: the warp form above measured 31 us per LayerNorm at 16384 x 768 fp16 on an H100 (Nsight Compute,
// 2026-12-07, with the residual already added by the GEMM: one 25 MB read + one 25 MB write, 1.6 TB/s,
// half the copy rate): each warp loads
// its row, then waits through two reductions and the gamma / beta loads with nothing in flight, and
// exits. Here a grid of resident blocks loops over the rows (warp w of W: rows w, w + W, ...); the next
// row's 16-byte loads are issued before the current row is reduced (two register buffers holding the
// raw bytes, converted only when their row is worked on), and gamma / beta sit in shared memory, loaded
// once per block. TWO: v = x + a; else v = x (a is x itself: each row is read before it is written, by
// the same warp). Rows at or past n are not touched. Needs hidden % E == 0 (E values
// of T in 16 bytes) and NG >= hidden / E / 32 groups a lane (try_stream picks NG). Measured: 17.6 us
// at 16384 x 768 fp16 (2.8 TB/s, about the copy rate; H100, 2026-12-07, docs/PERF.md).
constexpr int kStreamWarps = 8;
constexpr int kStreamMaxNG = 8;

template <typename T>
constexpr int kVals16 = int(16 / sizeof(T));  // values of T in 16 bytes

template <typename T>
__device__ __forceinline__ void unpack16(uint4 u, float (&o)[kVals16<T>]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4) {
      o[i] = __uint_as_float(w[i]);
    } else if constexpr (std::is_same_v<T, __half>) {
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      o[2 * i] = f.x, o[2 * i + 1] = f.y;
    } else {
      const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
      o[2 * i] = f.x, o[2 * i + 1] = f.y;
    }
  }
}

template <typename T>
__device__ __forceinline__ uint4 pack16(const float (&v)[kVals16<T>]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4) {
      w[i] = __float_as_uint(v[i]);
    } else if constexpr (std::is_same_v<T, __half>) {
      const __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
      w[i] = *reinterpret_cast<const uint32_t*>(&h);
    } else {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
      w[i] = *reinterpret_cast<const uint32_t*>(&h);
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <int NG, bool TWO>
struct StreamRow {  // one row's raw bytes for this lane: groups lane + 32 i
  uint4 a[NG];
  uint4 x[TWO ? NG : 1];
};

template <typename T, int NG, bool TWO>
__global__ void __launch_bounds__(32 * kStreamWarps)
    add_ln_stream_kernel(const T* a, T* x, const float* gamma, const float* beta, int rows, int hidden, float eps,
                         const int* n_dev) {
  constexpr int E = kVals16<T>;
  // gamma and beta (fp32) in shared memory, in the order the lanes read them: the float4 h of group
  // g = lane + 32 i at [(i Q + h) 32 + lane] (Q = E / 4 float4 a group), so each LDS.128 of a warp reads
  // 512 consecutive bytes, without bank conflicts. (The first form read gamma[g E + e] one float at a time:
  // 8-way conflicts at E = 8, ~380 shared-memory wavefronts a row, ~28 us of them per SM at 16384 x 768;
  // that form took 26.8 us there, 1.9 TB/s, H100 2026-12-07.) Beta follows gamma.
  constexpr int Q = E / 4, kSlots = NG * Q * 32;
  extern __shared__ float4 s_gb[];  // [2][kSlots]
  pdl_trigger();
  const int lane = int(threadIdx.x & 31), G = hidden / E;
  for (int j = int(threadIdx.x); j < G * Q; j += int(blockDim.x)) {  // constants: before the PDL wait
    const int g = j / Q, h = j % Q, slot = ((g / 32) * Q + h) * 32 + g % 32;
    s_gb[slot] = __ldg(reinterpret_cast<const float4*>(gamma) + j);
    s_gb[kSlots + slot] = __ldg(reinterpret_cast<const float4*>(beta) + j);
  }
  __syncthreads();
  pdl_wait();
  const int n = min(rows, n_dev ? __ldg(n_dev) : rows);
  const int W = int(gridDim.x) * kStreamWarps;
  auto load = [&](int r, StreamRow<NG, TWO>& b) {
    const uint4* pa = reinterpret_cast<const uint4*>(a + size_t(r) * hidden);
    const uint4* px = reinterpret_cast<const uint4*>(x + size_t(r) * hidden);
#pragma unroll
    for (int i = 0; i < NG; ++i) {
      const int g = lane + 32 * i;
      if (g < G) {
        b.a[i] = __ldg(pa + g);
        if constexpr (TWO) b.x[i] = px[g];  // x is written by this kernel: not through the read-only path
      }
    }
  };
  auto finish = [&](int r, const StreamRow<NG, TWO>& b) {
    float v[NG][E];
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < NG; ++i) {
      const int g = lane + 32 * i;
#pragma unroll
      for (int e = 0; e < E; ++e) v[i][e] = 0.f;
      if (g < G) {
        unpack16<T>(b.a[i], v[i]);
        if constexpr (TWO) {
          float t[E];
          unpack16<T>(b.x[i], t);
#pragma unroll
          for (int e = 0; e < E; ++e) v[i][e] += t[e];
        }
#pragma unroll
        for (int e = 0; e < E; ++e) s += v[i][e];
      }
    }
    const float mean = warp_sum(s) / float(hidden);
    float q = 0.f;
#pragma unroll
    for (int i = 0; i < NG; ++i)
      if (lane + 32 * i < G) {
#pragma unroll
        for (int e = 0; e < E; ++e) q += (v[i][e] - mean) * (v[i][e] - mean);
      }
    const float rstd = rsqrtf(warp_sum(q) / float(hidden) + eps);
    uint4* px = reinterpret_cast<uint4*>(x + size_t(r) * hidden);
#pragma unroll
    for (int i = 0; i < NG; ++i) {
      const int g = lane + 32 * i;
      if (g < G) {
        float y[E];
#pragma unroll
        for (int h = 0; h < Q; ++h) {
          const float4 ga = s_gb[(i * Q + h) * 32 + lane], be = s_gb[kSlots + (i * Q + h) * 32 + lane];
          y[4 * h + 0] = (v[i][4 * h + 0] - mean) * rstd * ga.x + be.x;
          y[4 * h + 1] = (v[i][4 * h + 1] - mean) * rstd * ga.y + be.y;
          y[4 * h + 2] = (v[i][4 * h + 2] - mean) * rstd * ga.z + be.z;
          y[4 * h + 3] = (v[i][4 * h + 3] - mean) * rstd * ga.w + be.w;
        }
        px[g] = pack16<T>(y);
      }
    }
  };
  // two rows in flight per warp: b0 / b1 alternate, the next row's loads issued before this row's work
  StreamRow<NG, TWO> b0, b1;
  int r = int(blockIdx.x) * kStreamWarps + int(threadIdx.x >> 5);
  if (r < n) load(r, b0);
#pragma unroll 1
  for (; r < n; r += 2 * W) {
    const int r1 = r + W, r2 = r1 + W;
    if (r1 < n) load(r1, b1);
    finish(r, b0);
    if (r1 >= n) break;
    if (r2 < n) load(r2, b0);
    finish(r1, b1);
  }
}

// Blocks of the streaming form: as many as fit on the device at once (at most one a block's 8 rows).
template <typename T, int NG, bool TWO>
int stream_blocks(int rows, size_t smem) {
  static const int per_sm = [smem] {
    int b = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, add_ln_stream_kernel<T, NG, TWO>, 32 * kStreamWarps,
                                                             smem));
    return std::max(1, b);
  }();
  return std::max(1, std::min(ceil_div(rows, kStreamWarps), per_sm * sm_count()));
}

template <typename T, int NG, bool TWO>
void launch_stream(const T* a, T* x, const float* gamma, const float* beta, int rows, int hidden, float eps,
                   const int* n_dev, cudaStream_t stream) {
  const size_t smem = 2 * size_t(NG) * (kVals16<T> / 4) * 32 * sizeof(float4);  // gamma, beta: [2][NG Q 32] float4
  launch_enc(add_ln_stream_kernel<T, NG, TWO>, dim3(stream_blocks<T, NG, TWO>(rows, smem)), dim3(32 * kStreamWarps),
             smem, stream, a, x, gamma, beta, rows, hidden, eps, n_dev);
}

// Buckets served by the streaming form: from kStreamMinRows rows (H100, 2026-12-07, BERT-base fp16, first
// form: 8x128 0.724 -> 0.667 ms with it from 512 rows instead of the block per row; 1x512 0.573-0.578 either way).
constexpr int kStreamMinRows = 512;

// The streaming form for this call, if it serves it (IGNIS_ENC_LN unset, a bucket of kStreamMinRows rows or
// more, no split-K slices, hidden a multiple of E and of at most 32 kStreamMaxNG E values).
template <typename T>
bool try_stream(const AddSrc<T>& src, T* x, const float* gamma, const float* beta, int rows, int hidden, float eps,
                const int* n_dev, cudaStream_t stream) {
  constexpr int E = kVals16<T>;
  if (ln_form() != LnForm::kAuto || rows < kStreamMinRows || src.parts || hidden % E != 0 ||
      hidden / E > 32 * kStreamMaxNG)
    return false;
  const bool two = src.a != nullptr;
  const T* a = two ? src.a : x;  // neither: LayerNorm(x)
  const int ng = ceil_div(hidden / E, 32);
  auto go = [&](auto ng_c) {
    constexpr int NG = decltype(ng_c)::value;
    if (two)
      launch_stream<T, NG, true>(a, x, gamma, beta, rows, hidden, eps, n_dev, stream);
    else
      launch_stream<T, NG, false>(a, x, gamma, beta, rows, hidden, eps, n_dev, stream);
  };
  if (ng <= 1) go(std::integral_constant<int, 1>{});
  else if (ng <= 2) go(std::integral_constant<int, 2>{});
  else if (ng <= 3) go(std::integral_constant<int, 3>{});
  else if (ng <= 4) go(std::integral_constant<int, 4>{});
  else if (ng <= 6) go(std::integral_constant<int, 6>{});
  else go(std::integral_constant<int, 8>{});
  return true;
}

template <typename T>
__global__ void bias_act_kernel(T* y, const T* bias, int rows, int cols, EncAct act, const int* n_dev) {
  pdl_trigger();
  pdl_wait();
  const int n = n_dev ? *n_dev : rows;
  const size_t total = size_t(n) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    float v = t2f(y[i]);
    if (bias) v += t2f(bias[i % size_t(cols)]);
    switch (act) {
      case EncAct::kGeluErf: v = gelu_erf(v); break;
      case EncAct::kGeluTanh: v = gelu_tanh(v); break;
      case EncAct::kTanh: v = tanhf(v); break;
      case EncAct::kNone: break;
    }
    y[i] = f2t<T>(v);
  }
}

}  // namespace

void encoder_embed_layernorm(const EmbedLnArgs& a, cudaStream_t stream) {
  check_hidden(a.hidden, "encoder_embed_layernorm");
  IGNIS_CHECK(a.vocab > 0 && a.max_positions > 0 && a.type_vocab > 0, "encoder_embed_layernorm: empty table");
  if (a.rows <= 0) return;
  IGNIS_ENC_DISPATCH(a.dtype, T, {
    if (warp_mode(a.rows, a.hidden))
      launch_enc(embed_ln_kernel<T, true>, dim3(ceil_div(a.rows, kRowsPerBlock)), dim3(32 * kRowsPerBlock), 0,
             stream, a);
    else if (eager_mode(a.rows, a.hidden))
      launch_enc(embed_ln_eager_kernel<T>, dim3(a.rows), dim3(ln_threads(a.hidden)), 0, stream, a);
    else
      launch_enc(embed_ln_kernel<T, false>, dim3(a.rows), dim3(ln_threads(a.hidden)), 0, stream, a);
  });
}

namespace {
template <typename T>
void launch_add_ln(const AddSrc<T>& src, T* x, const float* gamma, const float* beta, int rows, int hidden, float eps,
                   const int* n_dev, cudaStream_t stream) {
  if (try_stream(src, x, gamma, beta, rows, hidden, eps, n_dev, stream)) return;
  if (warp_mode(rows, hidden))
    launch_enc(add_ln_kernel<T, true>, dim3(ceil_div(rows, kRowsPerBlock)), dim3(32 * kRowsPerBlock), 0, stream, src,
           x, gamma, beta, rows, hidden, eps, n_dev);
  else if (eager_mode(rows, hidden))
    launch_enc(add_ln_eager_kernel<T>, dim3(rows), dim3(ln_threads(hidden)), 0, stream, src, x, gamma, beta, rows,
           hidden, eps, n_dev);
  else
    launch_enc(add_ln_kernel<T, false>, dim3(rows), dim3(ln_threads(hidden)), 0, stream, src, x, gamma, beta, rows,
           hidden, eps, n_dev);
}
}  // namespace

void encoder_add_layernorm(DType t, const void* a, void* x, const float* gamma, const float* beta, int rows,
                           int hidden, float eps, const int* n_dev, cudaStream_t stream) {
  check_hidden(hidden, "encoder_add_layernorm");
  if (rows <= 0) return;
  IGNIS_ENC_DISPATCH(t, T, {
    AddSrc<T> src;
    src.a = static_cast<const T*>(a);
    launch_add_ln(src, static_cast<T*>(x), gamma, beta, rows, hidden, eps, n_dev, stream);
  });
}

void encoder_add_parts_layernorm(DType t, const float* parts, int nparts, const void* bias, void* x,
                                 const float* gamma, const float* beta, int rows, int hidden, float eps,
                                 const int* n_dev, cudaStream_t stream) {
  check_hidden(hidden, "encoder_add_parts_layernorm");
  IGNIS_CHECK(parts && bias && nparts >= 1, "encoder_add_parts_layernorm: needs the slices and the bias");
  if (rows <= 0) return;
  IGNIS_ENC_DISPATCH(t, T, {
    AddSrc<T> src;
    src.parts = parts, src.nparts = nparts, src.bias = static_cast<const T*>(bias);
    launch_add_ln(src, static_cast<T*>(x), gamma, beta, rows, hidden, eps, n_dev, stream);
  });
}

void encoder_bias_act(DType t, void* y, const void* bias, int rows, int cols, EncAct act, const int* n_dev,
                      cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int threads = 256;
  const int blocks = std::max(1, std::min(ceil_div(int64_t(rows) * cols, threads), sm_count() * 8));
  IGNIS_ENC_DISPATCH(t, T, {
    launch_enc(bias_act_kernel<T>, dim3(blocks), dim3(threads), 0, stream, static_cast<T*>(y),
           static_cast<const T*>(bias), rows, cols, act, n_dev);
  });
}

}  // namespace ignis::cuda
