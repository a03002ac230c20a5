// The whole encoder pass of a small bucket (at most kEncoderFusedRows = 128 tokens) as one
// persistent cooperative kernel. Why: at such sizes each of the 85 kernels of the usual path
// (7 a layer + the embeddings) is bound by its launch, ramp and dependent-load latency, not by
// bytes or FLOPs (Nsight Compute, H200, BERT-base 1x128: 4-8 us a kernel, weights streaming at
// 250-800 GB/s). Here the phases are separated by grid barriers instead of kernel boundaries, and
// the weights of a block's next product are already in flight during the barrier.
//
// Grid: one block of 128 threads (4 warps) per SM (cooperative launch: all resident), 81 KB of
// dynamic shared memory. Per pass:
//   embeddings + LayerNorm -> x                                        (block per row)
//   per layer:
//     qkv  = x Wqkv^T + bqkv                 product, items = 32-column tiles
//     ctx  = attention(qkv)                  items = (64-row query tile, head): enc_flash_tile
//     part = ctx Wo^T, split over K          items = (64-column tile, K slice), fp32 partials
//     x    = LayerNorm(sum part + bo + x)    block per row
//     ffn  = GELU(x W1^T + b1)               items = 32-column tiles
//     part = ffn W2^T, split over K
//     x    = LayerNorm(sum part + b2 + x)
//   with a grid barrier after every phase (7 a layer).
// Products: a work item computes all (up to 128) rows of its column tile, so every row of the
// activations streams once per item from L2 and the weights once in all. The A and W tiles
// (64-wide K chunks) go through a 3-stage cp.async pipeline in shared memory (rows padded by 16
// bytes: conflict-free ldmatrix), mma.sync m16n8k16 with fp32 accumulators; warp w owns rows
// 32w..32w+31 and skips its 16-row halves past the real token count, whose A rows are zero-filled,
// not loaded. Before each barrier a block issues the W chunks of its first item of the next
// product (the weights never depend on the activations), as cp.async group G0; the product then
// commits A0 and A1 as groups G1, G2, and the pipeline's "all but the newest group done" wait
// holds for the W-first order as for the usual one.
// Coherence: data written by other blocks of this launch is read only through L2 (cp.async.cg,
// __ldcg), after a barrier whose arrive is a release and whose poll an acquire at GPU scope.
// Rows past n are neither read (zero-filled) nor written, so their contents never matter.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "cuda/encoder_common.cuh"
#include "cuda/encoder_flash_tile.cuh"
#include "cuda/encoder_kernels.h"

namespace ignis::cuda {
namespace {

using namespace enc;

constexpr int kThreads = 128;             // 4 warps (the attention tile's shape)
constexpr int kBM = kEncoderFusedRows;    // rows of every product tile
constexpr int kKC = 64;                   // K chunk of the pipeline
constexpr int kLD = kKC + 8;              // shared row stride (elements)
constexpr int kStages = 3;
constexpr int kBNMax = 64;
constexpr int kStageElems = (kBNMax + kBM) * kLD;  // W rows first, then A rows
constexpr int kSmem = kStages * kStageElems * 2;    // 82,944 bytes
constexpr int kMaxSplit = 8;              // K slices of out-proj / FFN2 (partials: 8 x 128 x H floats)
constexpr int kLnG = 4;                   // groups of 4 values per thread in a LayerNorm row: H <= 2048

// One product of a phase: out[r, n] = sum_k A[r, k] W[n, k] over the item's K chunks.
struct Prod {
  const void* A;  // T [rows, K]
  const void* W;  // T [N, K]
  int N, K;
  int split;      // K slices (1: whole K)
};

__device__ __forceinline__ int prod_items(const Prod& p, int bn) { return (p.N / bn) * p.split; }

// Item i -> column tile and chunk range [c0, c1).
__device__ __forceinline__ void item_range(const Prod& p, int bn, int i, int& n0, int& c0, int& c1) {
  const int nt = i / p.split, s = i % p.split, nck = p.K / kKC;
  n0 = nt * bn;
  c0 = s * nck / p.split;
  c1 = (s + 1) * nck / p.split;
}

template <typename T>
__device__ __forceinline__ T* stage_w(T* smem, int st) { return smem + st * kStageElems; }
template <typename T>
__device__ __forceinline__ T* stage_a(T* smem, int st) { return smem + st * kStageElems + kBNMax * kLD; }

// W chunk kc of rows n0 .. n0 + BN into stage st (BN x 8 16-byte pieces).
template <typename T, int BN>
__device__ __forceinline__ void load_w(const Prod& p, int n0, int kc, T* smem, int st) {
  const T* W = static_cast<const T*>(p.W) + size_t(n0) * p.K + kc * kKC;
  T* d = stage_w(smem, st);
#pragma unroll
  for (int e = threadIdx.x; e < BN * 8; e += kThreads) {
    const int r = e >> 3, col = (e & 7) * 8;
    cp_async16(d + r * kLD + col, W + size_t(r) * p.K + col, true);
  }
}
// A chunk kc of rows 0 .. 127 into stage st; rows at or past nrows zero-filled (not read).
template <typename T>
__device__ __forceinline__ void load_a(const Prod& p, int nrows, int kc, T* smem, int st) {
  const T* A = static_cast<const T*>(p.A) + kc * kKC;
  T* d = stage_a(smem, st);
#pragma unroll
  for (int e = threadIdx.x; e < kBM * 8; e += kThreads) {
    const int r = e >> 3, col = (e & 7) * 8;
    const bool ok = r < nrows;
    cp_async16(d + r * kLD + col, ok ? A + size_t(r) * p.K + col : A, ok);
  }
}

// The W part of an item's pipeline prologue (chunks c0 and c0 + 1), committed as one group.
template <typename T, int BN>
__device__ __forceinline__ void prologue_w(const Prod& p, int i, T* smem) {
  int n0, c0, c1;
  item_range(p, BN, i, n0, c0, c1);
  load_w<T, BN>(p, n0, c0, smem, 0);
  if (c1 - c0 > 1) load_w<T, BN>(p, n0, c0 + 1, smem, 1);
  cp_async_commit();
}

// This block's first item of product p, if it has one: its W prologue before the barrier.
template <typename T, int BN>
__device__ __forceinline__ bool prefetch_first(const Prod& p, T* smem) {
  if (int(blockIdx.x) >= prod_items(p, BN)) return false;
  prologue_w<T, BN>(p, blockIdx.x, smem);
  return true;
}

// acc = A W^T for item i (all rows, BN columns, its K chunks). w_ready: prologue_w was issued.
// Ends with a block barrier after the last shared-memory read.
template <typename T, int BN>
__device__ __forceinline__ void item_product(const Prod& p, int i, int nrows, bool w_ready, T* smem,
                                             float (&acc)[2][BN / 8][4]) {
  constexpr int NB = BN / 8;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int n0, c0, c1;
  item_range(p, BN, i, n0, c0, c1);
  const int nck = c1 - c0;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) acc[mi][nb][0] = acc[mi][nb][1] = acc[mi][nb][2] = acc[mi][nb][3] = 0.f;
  if (!w_ready) prologue_w<T, BN>(p, i, smem);  // G0
  load_a<T>(p, nrows, c0, smem, 0);
  cp_async_commit();  // G1
  if (nck > 1) load_a<T>(p, nrows, c0 + 1, smem, 1);
  cp_async_commit();  // G2 (maybe empty)
  const bool act0 = warp * 32 < nrows, act1 = warp * 32 + 16 < nrows;  // warp-uniform
  for (int j = 0; j < nck; ++j) {
    cp_async_wait<1>();  // every group but the newest: chunk j's W and A are in
    __syncthreads();     // ... for all threads; and stage (j + 2) % 3 (read at j - 1) is free
    if (j + 2 < nck) {
      const int st = (j + 2) % kStages;
      load_w<T, BN>(p, n0, c0 + j + 2, smem, st);
      load_a<T>(p, nrows, c0 + j + 2, smem, st);
    }
    cp_async_commit();
    const T* As = stage_a(smem, j % kStages);
    const T* Ws = stage_w(smem, j % kStages);
    if (!act0) continue;
#pragma unroll
    for (int ks = 0; ks < kKC / 16; ++ks) {
      uint32_t af[2][4];
      ldsm_x4(af[0], As + (warp * 32 + (lane & 15)) * kLD + ks * 16 + (lane >> 4) * 8);
      if (act1) ldsm_x4(af[1], As + (warp * 32 + 16 + (lane & 15)) * kLD + ks * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int nb = 0; nb < NB; nb += 2) {
        uint32_t bb[4];
        const int mi = lane >> 3;
        ldsm_x4(bb, Ws + ((nb + (mi >> 1)) * 8 + (lane & 7)) * kLD + ks * 16 + (mi & 1) * 8);
        mma16816<T>(acc[0][nb], af[0], bb[0], bb[1]);
        mma16816<T>(acc[0][nb + 1], af[0], bb[2], bb[3]);
        if (act1) {
          mma16816<T>(acc[1][nb], af[1], bb[0], bb[1]);
          mma16816<T>(acc[1][nb + 1], af[1], bb[2], bb[3]);
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the next item's (or phase's) loads overwrite the stages
}

template <typename T>
__device__ __forceinline__ float act_of(float v, EncAct act) {
  if (act == EncAct::kGeluErf) return gelu_erf(v);
  if (act == EncAct::kGeluTanh) return gelu_tanh(v);
  return v;
}

// Product with the bias (and activation) epilogue into T out [rows, N]: items = 32-column tiles.
template <typename T>
__device__ void phase_store(const Prod& p, const void* bias, EncAct act, void* out, int nrows, bool w_ready,
                            T* smem) {
  constexpr int BN = 32, NB = BN / 8;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int items = prod_items(p, BN);
  const T* b = static_cast<const T*>(bias);
  for (int i = blockIdx.x; i < items; i += gridDim.x) {
    float acc[2][NB][4];
    item_product<T, BN>(p, i, nrows, w_ready && i == int(blockIdx.x), smem, acc);
    const int n0 = i * BN;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        const int col = n0 + nb * 8 + 2 * c;
        const float b0 = t2f(b[col]), b1 = t2f(b[col + 1]);
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int row = warp * 32 + mi * 16 + g + 8 * hf;
          if (row < nrows)
            *reinterpret_cast<uint32_t*>(static_cast<T*>(out) + size_t(row) * p.N + col) =
                pack2<T>(act_of<T>(acc[mi][nb][2 * hf] + b0, act), act_of<T>(acc[mi][nb][2 * hf + 1] + b1, act));
        }
      }
  }
}

// Product split over K into fp32 partials part[s][row][N]: items = (64-column tile, K slice).
template <typename T>
__device__ void phase_partial(const Prod& p, float* part, int nrows, bool w_ready, T* smem) {
  constexpr int BN = 64, NB = BN / 8;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int items = prod_items(p, BN);
  for (int i = blockIdx.x; i < items; i += gridDim.x) {
    float acc[2][NB][4];
    item_product<T, BN>(p, i, nrows, w_ready && i == int(blockIdx.x), smem, acc);
    const int n0 = (i / p.split) * BN, s = i % p.split;
    float* dst = part + size_t(s) * kBM * p.N;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        const int col = n0 + nb * 8 + 2 * c;
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int row = warp * 32 + mi * 16 + g + 8 * hf;
          if (row < nrows)
            *reinterpret_cast<float2*>(dst + size_t(row) * p.N + col) =
                make_float2(acc[mi][nb][2 * hf], acc[mi][nb][2 * hf + 1]);
        }
      }
  }
}

// LayerNorm of the row held in v (this thread's groups tid + 128 i of 4 values), stored to out.
template <typename T>
__device__ __forceinline__ void ln_store(float (&v)[kLnG][4], int H, const float* gamma, const float* beta, float eps,
                                         T* out, float* red) {
  const int G = H / 4;
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kLnG; ++i)
    if (int(threadIdx.x) + i * kThreads < G) s += v[i][0] + v[i][1] + v[i][2] + v[i][3];
  const float mean = block_sum(s, red) / float(H);
  float q = 0.f;
#pragma unroll
  for (int i = 0; i < kLnG; ++i)
    if (int(threadIdx.x) + i * kThreads < G) {
#pragma unroll
      for (int e = 0; e < 4; ++e) q += (v[i][e] - mean) * (v[i][e] - mean);
    }
  const float rstd = rsqrtf(block_sum(q, red) / float(H) + eps);
#pragma unroll
  for (int i = 0; i < kLnG; ++i) {
    const int gi = int(threadIdx.x) + i * kThreads;
    if (gi < G) {
      const float4 ga = __ldg(reinterpret_cast<const float4*>(gamma) + gi);
      const float4 be = __ldg(reinterpret_cast<const float4*>(beta) + gi);
      float y[4];
      y[0] = (v[i][0] - mean) * rstd * ga.x + be.x;
      y[1] = (v[i][1] - mean) * rstd * ga.y + be.y;
      y[2] = (v[i][2] - mean) * rstd * ga.z + be.z;
      y[3] = (v[i][3] - mean) * rstd * ga.w + be.w;
      store4(out + 4 * gi, y);
    }
  }
}

// 4 values of T at p through L2 (written by another block of this launch).
template <typename T>
__device__ __forceinline__ void load4_cg(const T* p, float (&o)[4]) {
  const uint2 u = __ldcg(reinterpret_cast<const uint2*>(p));
  const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) o[i] = t2f(e[i]);
}

// x[r] = LayerNorm(sum_s part[s][r] + bias + x[r]) for rows r < n: a block per row.
template <typename T>
__device__ void phase_add_ln(const float* part, int split, const void* bias, const float* gamma, const float* beta,
                             float eps, T* x, int H, int n, float* red) {
  const int G = H / 4;
  const T* b = static_cast<const T*>(bias);
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    T* xr = x + size_t(r) * H;
    float v[kLnG][4];
#pragma unroll
    for (int i = 0; i < kLnG; ++i) {
      const int gi = int(threadIdx.x) + i * kThreads;
      v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.f;
      if (gi < G) {
        float t[4];
        load4_cg(xr + 4 * gi, v[i]);
        load4(b + 4 * gi, t);
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][e] += t[e];
        for (int s = 0; s < split; ++s) {
          const float4 q = __ldcg(reinterpret_cast<const float4*>(part + (size_t(s) * kBM + r) * H) + gi);
          v[i][0] += q.x, v[i][1] += q.y, v[i][2] += q.z, v[i][3] += q.w;
        }
      }
    }
    ln_store<T>(v, H, gamma, beta, eps, xr, red);
  }
}

// x[r] = LayerNorm(word[id] + pos_tab[pos] + type_tab[type]) for rows r < n (ids out of range add 0).
template <typename T>
__device__ void phase_embed(const EmbedLnArgs& a, int n, float* red) {
  const int H = a.hidden, G = H / 4;
  for (int r = blockIdx.x; r < n; r += gridDim.x) {
    const int id = a.ids[r], p = a.pos[r], ty = a.types ? a.types[r] : 0;
    const bool id_ok = id >= 0 && id < a.vocab, p_ok = p >= 0 && p < a.max_positions,
               ty_ok = ty >= 0 && ty < a.type_vocab;
    const T* w = static_cast<const T*>(a.word) + size_t(id_ok ? id : 0) * H;
    const T* pe = static_cast<const T*>(a.pos_tab) + size_t(p_ok ? p : 0) * H;
    const T* te = static_cast<const T*>(a.type_tab) + size_t(ty_ok ? ty : 0) * H;
    float v[kLnG][4];
#pragma unroll
    for (int i = 0; i < kLnG; ++i) {
      const int gi = int(threadIdx.x) + i * kThreads;
      v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.f;
      if (gi < G) {
        float t[4];
        if (id_ok) {
          load4(w + 4 * gi, t);
          for (int e = 0; e < 4; ++e) v[i][e] += t[e];
        }
        if (p_ok) {
          load4(pe + 4 * gi, t);
          for (int e = 0; e < 4; ++e) v[i][e] += t[e];
        }
        if (ty_ok) {
          load4(te + 4 * gi, t);
          for (int e = 0; e < 4; ++e) v[i][e] += t[e];
        }
      }
    }
    ln_store<T>(v, H, a.gamma, a.beta, a.eps, static_cast<T*>(a.out) + size_t(r) * H, red);
  }
}

__device__ __forceinline__ void grid_sync(unsigned long long* count) {
  __syncthreads();  // the block's writes happen before thread 0's release
  if (threadIdx.x == 0) grid_arrive_wait(count);
  __syncthreads();  // thread 0's acquire happens before the block's reads
}

struct Splits {
  int o, ffn2;  // K slices of out-proj and FFN2
};

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, 1) enc_fused_kernel(EncFusedArgs a, Splits sp) {
  extern __shared__ float4 smem_raw[];
  __shared__ float red[32];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int n = a.batch.counts[0];
  const int H = a.hidden, I = a.inter;
  T* x = static_cast<T*>(a.x);

  EncAttnArgs at;
  at.dtype = a.dtype;
  at.qkv = a.qkv, at.out = a.ctx;
  at.batch = a.batch;
  at.rows = kBM, at.nh = a.heads, at.hd = HD;
  at.scale = a.scale;
  const int attn_items = a.batch.counts[2] * a.heads;

  auto qkv_of = [&](const EncFusedLayerW& w) { return Prod{a.x, w.wqkv, 3 * H, H, 1}; };
  auto o_of = [&](const EncFusedLayerW& w) { return Prod{a.ctx, w.wo, H, H, sp.o}; };
  auto ffn1_of = [&](const EncFusedLayerW& w) { return Prod{a.x, w.w1, I, H, 1}; };
  auto ffn2_of = [&](const EncFusedLayerW& w) { return Prod{a.ffn, w.w2, H, I, sp.ffn2}; };

  phase_embed<T>(a.embed, n, red);
  bool w_ready = prefetch_first<T, 32>(qkv_of(a.layers[0]), smem);
  grid_sync(a.barrier);
  for (int l = 0; l < a.n_layers; ++l) {
    const EncFusedLayerW w = a.layers[l];
    phase_store<T>(qkv_of(w), w.bqkv, EncAct::kNone, a.qkv, n, w_ready, smem);
    grid_sync(a.barrier);

    for (int i = blockIdx.x; i < attn_items; i += gridDim.x)
      enc_flash_tile<T, HD>(at, i / a.heads, i % a.heads, smem_raw);
    w_ready = prefetch_first<T, 64>(o_of(w), smem);
    grid_sync(a.barrier);

    phase_partial<T>(o_of(w), a.part, n, w_ready, smem);
    w_ready = prefetch_first<T, 32>(ffn1_of(w), smem);  // stays in flight through the LayerNorm
    grid_sync(a.barrier);
    phase_add_ln<T>(a.part, sp.o, w.bo, w.ln1_g, w.ln1_b, a.eps, x, H, n, red);
    grid_sync(a.barrier);

    phase_store<T>(ffn1_of(w), w.b1, a.act, a.ffn, n, w_ready, smem);
    w_ready = prefetch_first<T, 64>(ffn2_of(w), smem);
    grid_sync(a.barrier);

    phase_partial<T>(ffn2_of(w), a.part, n, w_ready, smem);
    w_ready = l + 1 < a.n_layers && prefetch_first<T, 32>(qkv_of(a.layers[l + 1]), smem);
    grid_sync(a.barrier);
    phase_add_ln<T>(a.part, sp.ffn2, w.b2, w.ln2_g, w.ln2_b, a.eps, x, H, n, red);
    if (l + 1 < a.n_layers) grid_sync(a.barrier);
  }
  cp_async_wait<0>();
}

// Which grid size each barrier count serves (the count only grows, by the grid size per barrier).
std::mutex barrier_mu;
std::unordered_map<const void*, int> barrier_grid;

int fused_blocks_per_sm() {
  static const int v = [] {
    const char* e = std::getenv("IGNIS_ENC_FUSED_BPS");
    return e && std::strcmp(e, "2") == 0 ? 2 : 1;
  }();
  return v;
}

template <typename T, int HD>
void launch_fused(const EncFusedArgs& a, cudaStream_t stream) {
  static const int per_sm = [] {
    CUDA_CHECK(cudaFuncSetAttribute(enc_fused_kernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    int blocks = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, enc_fused_kernel<T, HD>, kThreads, kSmem));
    return blocks;
  }();
  IGNIS_CHECK(per_sm >= 1, "encoder_fused: the kernel does not fit on an SM (", kSmem, " bytes of shared memory)");
  int grid = sm_count() * std::min(per_sm, fused_blocks_per_sm());
  if (a.max_blocks > 0) grid = std::min(grid, a.max_blocks);
  {  // the barrier count is a multiple of the grid size between launches: one barrier, one grid
    std::lock_guard<std::mutex> lock(barrier_mu);
    auto [it, fresh] = barrier_grid.emplace(a.barrier, grid);
    IGNIS_CHECK(fresh || it->second == grid, "encoder_fused: this barrier was used with a grid of ", it->second,
                " blocks, now ", grid, ": give each grid size its own barrier");
  }
  // K slices: enough items to give every block one (64-column tiles), at most kMaxSplit.
  auto split_of = [&](int N, int K) {
    const int tiles = N / kBNMax, chunks = K / kKC;
    return std::max(1, std::min({kMaxSplit, chunks, grid / std::max(1, tiles)}));
  };
  const Splits sp{split_of(a.hidden, a.hidden), split_of(a.hidden, a.inter)};
  launch_cooperative(enc_fused_kernel<T, HD>, dim3(grid), dim3(kThreads), size_t(kSmem), stream, a, sp);
}

}  // namespace

bool encoder_fused_supported(DType t, int hidden, int heads, int inter, EncAct act) {
  if (t != DType::F16 && t != DType::BF16) return false;
  if (heads <= 0 || hidden % heads != 0) return false;
  const int hd = hidden / heads;
  return (hd == 32 || hd == 64) && hidden % kBNMax == 0 && inter % kBNMax == 0 && hidden <= 4 * kLnG * kThreads &&
         (act == EncAct::kGeluErf || act == EncAct::kGeluTanh);
}

size_t encoder_fused_part_floats(int hidden) { return size_t(kMaxSplit) * kBM * size_t(hidden); }

void encoder_fused(const EncFusedArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(encoder_fused_supported(a.dtype, a.hidden, a.heads, a.inter, a.act),
              "encoder_fused: unsupported shape (", dtype_name(a.dtype), ", hidden ", a.hidden, ", heads ", a.heads,
              ", intermediate ", a.inter, ")");
  IGNIS_CHECK(a.layers && a.n_layers >= 1 && a.x && a.qkv && a.ctx && a.ffn && a.part && a.batch.counts &&
                  a.batch.offsets && a.batch.tiles,
              "encoder_fused: missing buffers");
  IGNIS_CHECK(a.embed.out == a.x && a.embed.hidden == a.hidden, "encoder_fused: the embeddings must write x");
  IGNIS_CHECK(a.barrier && reinterpret_cast<uintptr_t>(a.barrier) % 8 == 0,
              "encoder_fused: needs a zeroed, 8-byte aligned 64-bit barrier count");
  const int hd = a.hidden / a.heads;
  if (a.dtype == DType::F16) {
    if (hd == 32)
      launch_fused<__half, 32>(a, stream);
    else
      launch_fused<__half, 64>(a, stream);
  } else {
    if (hd == 32)
      launch_fused<bf16, 32>(a, stream);
    else
      launch_fused<bf16, 64>(a, stream);
  }
}

}  // namespace ignis::cuda
