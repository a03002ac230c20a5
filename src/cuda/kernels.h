// Host-side entry points of the CUDA kernels of the Llama backend. Plain C++ (includes only the
// CUDA runtime header), so tests and the model code call them without nvcc.
//
// Conventions: activations and weights are of one "compute dtype" T, F32 or BF16 (given as a
// DType); accumulation is always fp32; the residual stream is fp32. Matrices are row-major;
// a linear layer's weight is W[N, K] (out, in) and computes y = x W^T. Positions, KV lengths
// and token ids are read from device memory so a captured CUDA graph serves every step.
// Every launcher checks its launch (CUDA_CHECK_LAUNCH) and throws ignis::Error on bad sizes.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "models/config.h"

#ifdef __CUDACC__
#define IGNIS_HD __host__ __device__
#else
#define IGNIS_HD
#endif

namespace ignis::cuda {

// ---- skinny GEMM for decode: y[B, N] = x[B, K] W[N, K]^T, B in 1..8 (gemv.cu) ---------------------
enum class GemvEpilogue : uint8_t {
  kStore,     // out: T[B, ldo]           out[b, n] = y
  kStoreF32,  // out: float[B, ldo]       out[b, n] = y          (logits)
  kAddF32,    // out: float[B, ldo]       out[b, n] += y         (residual add)
  kSwiGLU,    // out: T[B, ldo], N/2 cols out[b, j] = silu(y[gate row of j]) * y[up row of j]
};
// Row layout of a fused [gate; up] weight for kSwiGLU: blocks of 16 rows, the first 8 are gate
// rows 8t..8t+7 and the next 8 the up rows 8t..8t+7 (so N = 2 * round_up(hidden, 8)).
IGNIS_HD inline int64_t swiglu_row_of_gate(int64_t j) { return (j / 8) * 16 + j % 8; }

// kAuto: kBulk on sm_90+ for bf16 with K % 8 == 0 and no fused norm, else kTensorCore where it
// applies, else kSimple; IGNIS_GEMV=simple|tc|bulk overrides kAuto. kTensorCore: gemv.cu's
// register-streaming kernel; kBulk: gemv_bulk.cu (bulk copies into shared memory).
enum class GemvImpl : uint8_t { kAuto, kSimple, kTensorCore, kBulk };

struct GemvArgs {
  DType dtype = DType::BF16;  // of W and x
  const void* W = nullptr;    // [N, K]
  const void* x = nullptr;    // [B, K], contiguous
  int B = 1, N = 0, K = 0;
  GemvEpilogue epi = GemvEpilogue::kStore;
  void* out = nullptr;
  int ldo = 0;                // row stride of out in elements (0: N, or N/2 for kSwiGLU)
  // Split-K across blocks (optional): workspace of ws_floats floats and n_counters zeroed
  // counters (each launch leaves them zero again). Without it, no split across blocks.
  float* ws = nullptr;
  size_t ws_floats = 0;
  unsigned* counters = nullptr;
  int n_counters = 0;
  GemvImpl impl = GemvImpl::kAuto;
  // Fused RMSNorm of the input (tensor-core path only, see gemv_fused_norm_ok): when norm_w
  // (float[K]) is set, x is the fp32 residual stream float[B, K] and the product uses
  // bf16(x / sqrt(mean(x^2) + norm_eps) * norm_w), exactly what rmsnorm() would write to h.
  const float* norm_w = nullptr;
  float norm_eps = 0.f;
  // With norm_w: the sum of x^2 of each batch row comes from ss_in instead of a pass over x:
  // ss_in[t * B + b] for t < ceil(K / 16), the partial sums written by the kAddF32 GEMV that last
  // updated x (its ss_out). Summed in a fixed order: the result does not depend on timing.
  const float* ss_in = nullptr;
  // kAddF32 (tensor-core path): after out += y, ss_out[t * B + b] = sum of out[b, r]^2 over the 16
  // rows r of tile t (t < ceil(N / 16)): what the next fused-norm GEMV needs as ss_in.
  float* ss_out = nullptr;
  // Folded RMSNorm (CUDA-core kernel; what batch-1 decode uses): the norm's division by rms(x) moves
  // to the end of the next product, y = (W . (x * norm_w)) / rms(x), so no RMSNorm kernel runs
  // between a residual product and the next normed one:
  //  - producer (kAddF32, next_ss set): after out += y it also writes next_h[b, r] = T(out[b, r] *
  //    next_norm_w[r]) (T = dtype, [B, N]) and next_ss[blk * B + b] = the sum of the new out[b, r]^2
  //    over the rows r of block blk (gemv_fold_parts(N) blocks);
  //  - consumer (rms_ss set): x is such a next_h; every dot product of batch row b is multiplied by
  //    1 / sqrt(sum_blk rms_ss[blk * B + b] / K + norm_eps) before the epilogue (gemv_fold_parts(K)
  //    partials, summed in a fixed order).
  const float* rms_ss = nullptr;
  int rms_parts = 0;  // partials per batch row in rms_ss (what the producer's gemv / gemv_quant returned); 0: gemv_fold_parts(K)
  const float* next_norm_w = nullptr;
  void* next_h = nullptr;
  float* next_ss = nullptr;
};
// Partial sums a folded-norm producer of N rows writes per batch row (GemvArgs::next_ss).
int gemv_fold_parts(int N);
// Whether gemv() at batch B takes the CUDA-core kernel that the folded RMSNorm needs (batch 1,
// unless IGNIS_GEMV forces another kernel).
bool gemv_fold_ok(int B);
// Returns the number of partial sums per batch row it wrote to next_ss (the folded norm's producer), else 0.
int gemv(const GemvArgs& a, cudaStream_t stream);
// Whether the current device has the bulk-copy engine and mbarrier transaction counts (sm_90+).
bool device_has_bulk_copy();
// The bulk-copy kernel alone (gemv_bulk.cu; gemv() dispatches to it): ldo already resolved.
void gemv_bulk(const GemvArgs& a, int ldo, cudaStream_t stream);
// Whether gemv can fuse the RMSNorm for these weights (bf16, K % 8 == 0, not forced simple).
bool gemv_fused_norm_ok(DType dtype, int K);
// Grid the tensor-core GEMV would use (for tests that want to force split-K): splits across blocks.
int gemv_splits(int N, int K, int max_splits_by_ws);

// ---- diagnostics (load_probe.cu) -------------------------------------------------------------------
// Loads a rows x rbytes matrix (rows % 16 == 0, rbytes % 64 == 0) in one of the decode GEMVs' access
// patterns, with no arithmetic: how fast each pattern streams (CudaQuant.DISABLED_LoadPatterns).
enum class LoadPattern { kTile16U2, kTile16U4, kTileContigU2, kTileContigU4, kWarpRow, kBulk16K, kBulk32K };  // sm_90 for kBulk*
void load_probe(LoadPattern p, const void* w, int rows, int rbytes, unsigned* sink, cudaStream_t stream);
// Byte ranges of one buffer streamed in order by ring_probe.
struct RingProducts {
  static constexpr int kMax = 160;
  int n = 0;
  long long off[kMax], bytes[kMax];  // 16-byte aligned, multiples of 16
};
// Streams P's ranges through a persistent kernel (a block per SM) whose producer warp bulk-copies
// `chunk`-byte pieces into a ring of `stages` shared-memory stages and runs ahead across ranges,
// consumers optionally meeting at a grid barrier after each range (load_probe.cu). sink[0] = the XOR
// of all 32-bit words read; count: 8 bytes of device scratch (the barrier). Sm_90 only.
void ring_probe(const void* base, const RingProducts& P, int chunk, int stages, bool barriers, unsigned* sink,
                unsigned long long* count, cudaStream_t stream);

// ---- persistent batch-1 decode chain (decode_chain.cu) ---------------------------------------------
// Up to kChainMaxSteps bf16 decode products (batch 1) run by one persistent kernel, separated by
// grid barriers: step s computes y = W_s . in_s through epi_s (GemvEpilogue; kAddF32 adds into the
// fp32 vector out), where in_s is the bf16 vector `in`, or, when norm_w is set, the RMSNorm
// bf16(x / sqrt(mean(x^2) + eps) * norm_w) of the fp32 residual stream ChainArgs::x as it is
// when the step starts (after the earlier steps' writes). Every input may be the output of an
// earlier step of the same chain.
struct ChainStep {
  const void* W = nullptr;  // bf16 [N, K], K % 8 == 0 (kSwiGLU: the fused gate/up layout, N % 16 == 0)
  int N = 0, K = 0;
  GemvEpilogue epi = GemvEpilogue::kStore;
  void* out = nullptr;          // [N] (kSwiGLU: [N / 2]); bf16 for kStore / kSwiGLU, fp32 otherwise
  const void* in = nullptr;     // bf16 [K], 16-byte aligned (when norm_w is null)
  const float* norm_w = nullptr;
};
constexpr int kChainMaxSteps = 4;
struct ChainArgs {
  ChainStep step[kChainMaxSteps];
  int n_steps = 0;
  int max_k = 0;             // >= every step's K (sizes the shared memory; keep it fixed per model)
  int norm_k = 0;            // >= the K of every normed step (likewise)
  const float* x = nullptr;  // fp32 [K] residual stream of the normed steps
  float eps = 0.f;
  // The grid barrier: a 64-bit count, 8-byte aligned, set up once by decode_chain_barrier_init, used
  // with one grid size (one max_k / norm_k); it only grows (by the grid size per barrier), so every
  // launch leaves it ready.
  unsigned long long* barrier = nullptr;
  // Optional, for measurements: [n_steps][blocks][2] %globaltimer readings (ns) of each block when
  // its step's input is staged and when all its warps are done with the step.
  unsigned long long* trace = nullptr;
  // The engine: false = weights streamed through registers (decode_chain.cu, 2 blocks an SM);
  // true = through a shared-memory ring filled by bulk copies that runs ahead across the barriers
  // (decode_ring.cu, a block an SM, sm_90; every step's R K 2 bytes <= kRingStageBytes, R = 2 for
  // kSwiGLU; max_k <= kRingMaxK; normed steps' K <= kRingMaxNormK).
  bool ring = false;
  // Ring engine, launches of >= 2 steps: the last ring_tail (0 .. 0.5) of each step's items is handed
  // out at run time from a counter per step (fast SMs take more; 0: every block's share is fixed).
  // ring_ctr: 2 kChainMaxSteps + 1 zeroed 32-bit words, set up once and kept for every launch (two
  // counter sets used in turn and an epoch: block 0 zeroes the other set at the end of a launch).
  float ring_tail = 0.f;
  unsigned* ring_ctr = nullptr;
};
constexpr int kRingCounterWords = 2 * 4 + 1;  // 2 kChainMaxSteps + 1
constexpr int kRingStageBytes = 32 * 1024, kRingMaxK = 16384, kRingMaxNormK = 8192;
void decode_chain(const ChainArgs& a, cudaStream_t stream);
// Zeroes a barrier count (queued on stream) for its first launch, with any grid size.
void decode_chain_barrier_init(unsigned long long* barrier, cudaStream_t stream);
// Blocks the chain kernel runs (all resident at once), and its dynamic shared memory.
int decode_chain_grid(int max_k, int norm_k, bool ring = false);
size_t decode_chain_smem(int max_k, int norm_k);

// ---- RMSNorm (rmsnorm.cu) -------------------------------------------------------------------------------
// For each of n rows: x += residual (if residual != nullptr; residual is T[n, dim]);
// h = x / sqrt(mean(x^2) + eps) * w. x: float[n, dim] updated in place, w: float[dim], h: T[n, dim].
void rmsnorm(DType t, float* x, const void* residual, const float* w, void* h, int n, int dim, float eps,
             cudaStream_t stream);

// ---- RoPE + KV-cache write (rope.cu) -----------------------------------------------------------------
// The KV cache of one layer: k and v of shape [slots][n_kv_heads][ctx][head_dim] (T).
struct RopeArgs {
  DType dtype = DType::BF16;
  const void* qkv = nullptr;     // [n, (nh + 2 nkv) * hd]: q heads, then k heads, then v heads
  const float* bias = nullptr;   // optional [(nh + 2 nkv) * hd] (qwen2)
  void* q_out = nullptr;         // [n, nh, hd], rotated q
  void* k_cache = nullptr;       // layer base
  void* v_cache = nullptr;
  const int* pos = nullptr;      // device: start position of each sequence
  int n = 0;                     // tokens; token i is token i % q_per_seq of sequence i / q_per_seq
  int q_per_seq = 1;
  int slot0 = 0;                 // sequence b uses cache slot slot0 + b and position pos[b] + i % q_per_seq
  int nh = 0, nkv = 0, hd = 0, ctx = 0, rope_dim = 0;
  RopeStyle style = RopeStyle::kInterleaved;
  const float* inv_freq = nullptr;  // device [rope_dim / 2]
};
void rope_kv(const RopeArgs& a, cudaStream_t stream);

// ---- attention (attention_decode.cu, attention_prefill.cu) ------------------------------------------
// out[i, h, :] = softmax(q[i, h] . K[0..p_i]^T * scale) V[0..p_i] with p_i the position of token i
// (causal), K/V of kv head h / (nh / nkv) of its sequence's cache slot.
// kGeneric: the tile kernel (K/V tiles in shared memory, any head size); kWarp: the decode kernel
// that reads K/V into registers, warps over keys (head 64/128/256, <= 8 query heads per kv head;
// attn_warp_supported); kFlash: tensor-core prefill. kAuto: flash where supported, else warp for
// one query per sequence where supported, else generic.
enum class AttnImpl : uint8_t { kAuto, kGeneric, kFlash, kWarp };
struct AttnArgs {
  DType dtype = DType::BF16;
  const void* q = nullptr;       // [n, nh, hd]
  const void* k_cache = nullptr; // layer base, [slots][nkv][ctx][hd]
  const void* v_cache = nullptr;
  void* out = nullptr;           // [n, nh, hd]
  const int* pos = nullptr;      // device, as in RopeArgs
  int n = 0, q_per_seq = 1, slot0 = 0;
  int nh = 0, nkv = 0, hd = 0, ctx = 0;
  float scale = 1.f;
  // Flash-decoding: the keys of each query are split in n_splits ranges processed by separate
  // blocks, then combined. Needs ws of attn_ws_floats() floats. n_splits == 1: no workspace.
  int n_splits = 1;
  float* ws = nullptr;
  size_t ws_floats = 0;
  // Optional, n * nkv zeroed counters (left zeroed): the last split block of each (query, kv
  // head) combines the partials itself, saving the combine kernel's launch.
  unsigned* counters = nullptr;
  AttnImpl impl = AttnImpl::kAuto;
  // Decode (q_per_seq == 1, tile or warp kernel): when rope_qkv is set, the kernel does rope_kv's work
  // itself: q is read unrotated from rope_qkv ([n, (nh + 2 nkv) hd], + rope_bias) and rotated
  // (then rounded to T, as rope_kv's q_out), and the block that holds position p writes the
  // rotated k and v of its kv head into the cache. a.q is not read then.
  const void* rope_qkv = nullptr;
  const float* rope_bias = nullptr;
  const float* inv_freq = nullptr;
  int rope_dim = 0;
  RopeStyle style = RopeStyle::kInterleaved;
};
size_t attn_ws_floats(int n, int nh, int hd, int n_splits);
// A good split count for decode of B sequences of up to ctx positions on this GPU.
int attn_decode_splits(int B, int nkv, int ctx);
void attention(const AttnArgs& a, cudaStream_t stream);
// Whether the tensor-core flash kernel handles this shape (bf16, hd 64 or 128, one sequence).
bool flash_attention_supported(const AttnArgs& a);
// Whether the warp decode kernel (AttnImpl::kWarp) handles this shape.
bool attn_warp_supported(const AttnArgs& a);

// ---- element-wise (elementwise.cu) -------------------------------------------------------------------
// out[i, j] = silu(gu[i, gate(j)]) * gu[i, up(j)] for the 8-row-block interleaved layout above;
// gu: T[n, 2 * hp], out: T[n, hp], hp a multiple of 8.
void swiglu(DType t, const void* gu, void* out, int n, int hp, cudaStream_t stream);
// x[i, :] = float(table[tokens[i], :]); table: T[vocab, dim]. Ids outside [0, vocab) give zeros.
void embed(DType t, const void* table, const int* tokens, int n, int dim, int vocab, float* x,
           cudaStream_t stream);
// Converts a [rows, cols] matrix of src_type (F32, F16, BF16) into dst_type (F32, BF16) rows of
// dst: source row r goes to dst row  row_offset + (interleave8 ? swiglu_row_of_gate(r) : r),
// with dst row stride dst_ld (>= cols; the padding columns are left alone).
void convert_matrix(DType src_type, const void* src, DType dst_type, void* dst, int64_t rows, int64_t cols,
                    int64_t dst_ld, int64_t row_offset, bool interleave8, cudaStream_t stream);
// p[i] = scale * u(seed, i), u uniform in [-1, 1) from a counter-based hash (+ offset).
void fill_random(DType t, void* p, size_t n, uint64_t seed, float scale, float offset, cudaStream_t stream);

// ---- sampling (sampling.cu) ---------------------------------------------------------------------------
// Lives in device memory so a captured graph picks up new values.
struct SamplingParamsDev {
  float temperature;  // <= 0: greedy (argmax, lowest index on ties)
  int top_k;          // <= 0: off
  float top_p;        // >= 1: off
  uint32_t seed_lo, seed_hi;
};
// For each row b < B of logits (float[B, ld]): picks a token into tokens[b]. With temperature > 0:
// p = softmax(logits / temperature); keep the top_k most probable (all tokens tied with the
// k-th are kept), then the smallest set of most probable whose mass >= top_p of what is kept
// (ties kept too), and draw from the kept ones, in token order, with
// u = philox_uniform(seed_lo, seed_hi, counter[b], b) (philox.h); then counter[b]++.
// scratch: float[B, vocab].
void sample(const float* logits, int B, int vocab, int ld, const SamplingParamsDev* params, uint32_t* counters,
            float* scratch, int* tokens, cudaStream_t stream);

}  // namespace ignis::cuda
