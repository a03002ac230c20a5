// Encoder self-attention over a ragged batch of packed sequences (no padding anywhere): every
// query row attends to all the keys of its own sequence (non-causal), nothing else.
//
// Flash kernel (F16 / BF16, head size 32 / 64 / 128): tensor cores (mma.sync m16n8k16, fp32
// accumulation) with an online softmax, as in FlashAttention-2 and attention_prefill.cu (whose
// fragment layouts it reuses). A work item is (query tile of 64 rows of one sequence, head h);
// the host lists the tiles of the batch (sequence, first row), longest sequences first, and the
// block (x, h) takes tiles x, x + gridDim.x, ... so the grid depends only on the bucket, never on
// the batch mix (a captured graph serves any mix). 4 warps, warp w owns query rows 16w..16w+15.
// Keys and values of the sequence stream through shared memory in tiles of 64 rows (cp.async,
// double buffered, rows padded by 16 bytes for conflict-free ldmatrix); keys past the end of the
// sequence are zero-filled and masked to -inf. Nothing of size S x S is stored.
// Bytes: Q and O once; K and V of a sequence once per query tile of it (L2-resident).
// Launch: grid (min(bucket, ~2 waves / nh), nh), 128 threads, (64 + 4 * 64) * (hd + 8) * 2 bytes of
// shared memory. A variant with 2 warps of 32 rows each (every K / V fragment read by ldmatrix
// feeding two mma instead of one) measured no faster on an H200 (2026-12-02, BERT-base fp16: 32x512
// 7.11 vs 7.18 ms, 8x512 1.95 vs 1.88, 1x512 0.74 vs 0.71), so ldmatrix bandwidth is not what bounds
// this kernel; it is not kept. Nor are 128-row query tiles (8 warps; each K / V tile in shared memory
// serving twice the rows): 32x512 7.11 vs 7.24 ms, but 32x299 4.11-4.24 vs 4.03-4.09 and the ragged
// 32 x 16..512 mix 4.36-4.38 vs 4.31-4.32 (same H200, same call): longer partial tiles cost more than
// the halved L2 -> SM traffic gains, and real batches are ragged.
//
// Instruction diet (H100, 2026-12-07, BERT-base fp16 32x512, Nsight Compute): copies by running
// pointers (the generic chunk loop was ~320 of the ~850 instructions a warp issued per key tile), a
// one-MUFU exp2 (flash_common.cuh) with the scale folded into its FFMA, one barrier per key tile:
// 70.9M -> 42.0M instructions, 138 -> 125 us a layer; whole pass 32x512 7.74 -> 7.55-7.58 ms, 8x512
// 2.05 -> 1.98, ragged 32 x 16..512 4.14 -> 4.08. What bounded it then: 4 warps per scheduler (128
// registers, 46 KB of shared memory a block) waiting on short scoreboards (MUFU / ldmatrix, 2.0
// cycles per issue) and fixed-latency dependencies (1.8), tensor pipe 36% busy. Later (same day): the
// row sums as one more mma against ones (no chain of 32 FADDs a lane), a tree row max (depth 4, not 16),
// the mask and the copy predicates only on a sequence's last key tile (SASS: 412 -> 360 instructions a
// warp per full key tile, no spills). H100 (2026-12-08, ncu at 32x512, the 4-warp bucket kernel): 125.5 ->
// 118.4 us, 42.1M -> 37.3M instructions, tensor pipe 35.5 -> 40.3% busy; whole pass 7.24-7.35 -> 7.21-7.26
// ms, ragged 3.92-3.93 -> 3.90. A pipelined form (the next tile's scores computed in the same basic block
// as this tile's softmax, 166 registers, 3 blocks an SM) measured 127.1 us there, and -2% / +3% at 8x512 /
// 8x128 end to end: not kept.
//
// Generic kernel (any dtype, head size <= 256): one warp per (query row, head), keys one at a
// time (dot product across the warp, online softmax in fp32). O(S^2 hd) with no reuse: used for
// the fp32 parity mode and as an independent cross-check of the flash kernel in the tests.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cuda/encoder_common.cuh"
#include "cuda/encoder_kernels.h"
#include "cuda/flash_common.cuh"

namespace ignis::cuda {
namespace {

using namespace enc;
using namespace flash;

constexpr int kBN = 64;
// Buckets of up to this many rows run 2-warp blocks (flash_warps).
constexpr int kSmallAttnRows = 1024;
constexpr float kLog2e = 1.4426950408889634f;

// NW warps a block (4 or 2): the block's query rows are kBM = 16 NW, a slice of a host tile of
// kEncoderAttnTile rows (work item = (tile, slice)); buckets of up to 1,024 rows use 2-warp blocks, so
// that more SMs share their few tiles. H100 (2026-12-07, BERT-base fp16, IGNIS_ENC_ATTN_NW forced, four
// runs each, median ms, NW = 4 / 2 / 1): 1x128 0.396 / 0.387 / 0.390, 1x256 0.445 / 0.435 / 0.445, 8x16
// 0.440 / 0.430 / 0.433, 8x128 0.698 / 0.680 / 0.704, 32x16 0.572 / 0.560 / 0.573, 1x512 0.572 / 0.572 /
// 0.628; from 2,048 rows 4 warps win (8x256 1.022 / 1.080, 32x512 7.56 / 8.27). 1-warp blocks never won
// and are not built.
template <typename T, int HD, int NW>
__global__ void __launch_bounds__(32 * NW, NW == 4 ? (HD == 128 ? 2 : 4) : 1) enc_flash_kernel(EncAttnArgs a) {
  constexpr int kThreads = 32 * NW, kBM = 16 * NW, kSlices = kEncoderAttnTile / kBM;
  static_assert(kEncoderAttnTile % kBM == 0, "a host tile is a whole number of block slices");
  constexpr int LD = HD + 8;  // shared row stride in elements
  constexpr int CH = HD / 8;  // 16-byte chunks per row
  constexpr int KS = HD / 16; // k-steps over the head dim
  constexpr int DB = HD / 8;  // 8-wide output column blocks
  constexpr int RP = kThreads / CH, NP = kBN / RP;  // rows copied per pass of the block, passes per tile
  static_assert(kThreads % CH == 0 && kBN % RP == 0 && kBM % RP == 0, "copy passes must tile the rows");
  extern __shared__ float4 smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* Ks = Qs + kBM * LD;      // [2][kBN][LD]
  T* Vs = Ks + 2 * kBN * LD;  // [2][kBN][LD]

  pdl_trigger();
  pdl_wait();
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, c = lane & 3;
  const int lr = tid / CH, lc = (tid % CH) * 8;  // this thread's copy row / column (elements)
  const int h = blockIdx.y;
  const int H = a.nh * HD;
  const size_t ld = size_t(3) * H;  // row stride of qkv
  const int n_work = a.batch.counts[2] * kSlices;
  const float sl2 = a.scale * kLog2e;

  for (int w = blockIdx.x; w < n_work; w += gridDim.x) {
    const int t = w / kSlices;
    const int b = a.batch.tiles[2 * t], q0 = a.batch.tiles[2 * t + 1] + (w % kSlices) * kBM;
    const int s0 = a.batch.offsets[b], len = a.batch.offsets[b + 1] - s0;
    const int rows = min(kBM, len - q0);
    if (rows <= 0) continue;  // a slice past the end of a short sequence (uniform over the block)
    const int n_tiles = (len + kBN - 1) / kBN;
    const T* Q = static_cast<const T*>(a.qkv) + size_t(s0 + q0) * ld + h * HD;
    const T* K = static_cast<const T*>(a.qkv) + size_t(s0) * ld + H + h * HD;
    const T* V = K + H;
    __syncthreads();  // every warp is done with the previous work item's Q and K / V buffers

    // Thread tid copies 16-byte chunk lc of rows lr, lr + RP, ... of every tile: running pointers and
    // compile-time shared-memory offsets. (The generic element loop, with a 64-bit address computed per
    // chunk, was ~320 of the ~850 instructions a warp issued per key tile at head size 64.)
    const size_t step = size_t(RP) * ld;
    {
      const T* src = Q + size_t(lr) * ld + lc;
#pragma unroll
      for (int i = 0; i < kBM / RP; ++i, src += step) {
        const int r = lr + i * RP;
        cp_async16(Qs + r * LD + lc, r < rows ? src : Q, r < rows);
      }
    }
    uint32_t qa[KS][4];
    float o[DB][4];
#pragma unroll
    for (int i = 0; i < DB; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY;
    float ls[4] = {0.f, 0.f, 0.f, 0.f};  // row sums of p (P times a column of ones)

    auto load_q = [&] {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks)
        ldsm_x4(qa[ks], Qs + (warp * 16 + (lane & 15)) * LD + ks * 16 + (lane >> 4) * 8);
    };
    // S = Q K^T for this warp's 16 rows x the 64 keys of the tile at kt
    auto scores = [&](float (&sc)[8][4], const T* kt) {
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
        for (int nb = 0; nb < 8; nb += 2) {
          uint32_t bb[4];
          const int mi = lane >> 3;
          ldsm_x4(bb, kt + ((nb + (mi >> 1)) * 8 + (lane & 7)) * LD + ks * 16 + (mi & 1) * 8);
          mma16816<T>(sc[nb], qa[ks], bb[0], bb[1]);
          mma16816<T>(sc[nb + 1], qa[ks], bb[2], bb[3]);
        }
      }
    };
    // Online softmax of the scores of key tile j, then O += P V with the V tile at vt. Keys past the end
    // of the sequence (only its last tile has any) are masked to -inf.
    auto softmax_pv = [&](float (&s)[8][4], const T* vt, int j) {
      if ((j + 1) * kBN > len) {
#pragma unroll
        for (int nb = 0; nb < 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (j * kBN + nb * 8 + 2 * c + (e & 1) >= len) s[nb][e] = -INFINITY;
      }
      // Running max of each row (raw scores: the scale is positive, so it is applied inside the exponent
      // below), as a tree: 4 dependent FMNMX instead of a chain of 16.
      float mx0[8], mx1[8];
#pragma unroll
      for (int nb = 0; nb < 8; ++nb) mx0[nb] = fmaxf(s[nb][0], s[nb][1]), mx1[nb] = fmaxf(s[nb][2], s[nb][3]);
#pragma unroll
      for (int w = 4; w >= 1; w >>= 1)
#pragma unroll
        for (int nb = 0; nb < w; ++nb) mx0[nb] = fmaxf(mx0[nb], mx0[nb + w]), mx1[nb] = fmaxf(mx1[nb], mx1[nb + w]);
#pragma unroll
      for (int off = 1; off <= 2; off <<= 1) {
        mx0[0] = fmaxf(mx0[0], __shfl_xor_sync(0xffffffffu, mx0[0], off));
        mx1[0] = fmaxf(mx1[0], __shfl_xor_sync(0xffffffffu, mx1[0], off));
      }
      const float mn0 = fmaxf(m0, mx0[0]), mn1 = fmaxf(m1, mx1[0]);
      // b = the running max in the log2 domain; key 0 is in the first tile, so mn is finite from then
      // on; guard anyway. p = 2^(s * scale * log2e - b): one FFMA and one MUFU a score.
      const float b0 = mn0 == -INFINITY ? 0.f : mn0 * sl2, b1 = mn1 == -INFINITY ? 0.f : mn1 * sl2;
      const float al0 = fast_exp2(m0 * sl2 - b0), al1 = fast_exp2(m1 * sl2 - b1);
      m0 = mn0, m1 = mn1;
#pragma unroll
      for (int db = 0; db < DB; ++db) o[db][0] *= al0, o[db][1] *= al0, o[db][2] *= al1, o[db][3] *= al1;
      ls[0] *= al0, ls[1] *= al0, ls[2] *= al1, ls[3] *= al1;
      // O += P V, a 16-key slice of P at a time: its exponents, packed as the A fragment, its V products
      // and its row sums, as one more product against a B fragment of ones (exact sums of the rounded p
      // the V products see, on the tensor pipe instead of a chain of 32 FADDs a lane).
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t pa[4];
        const float(&sa)[4] = s[2 * kk];
        const float(&sb)[4] = s[2 * kk + 1];
        pa[0] = exp2_pack<T>(fmaf(sa[0], sl2, -b0), fmaf(sa[1], sl2, -b0));
        pa[1] = exp2_pack<T>(fmaf(sa[2], sl2, -b1), fmaf(sa[3], sl2, -b1));
        pa[2] = exp2_pack<T>(fmaf(sb[0], sl2, -b0), fmaf(sb[1], sl2, -b0));
        pa[3] = exp2_pack<T>(fmaf(sb[2], sl2, -b1), fmaf(sb[3], sl2, -b1));
        mma16816<T>(ls, pa, ones2<T>(), ones2<T>());
#pragma unroll
        for (int db = 0; db < DB; db += 2) {
          uint32_t bb[4];
          const int mi = lane >> 3;
          ldsm_x4_t(bb, vt + (kk * 16 + (mi & 1) * 8 + (lane & 7)) * LD + (db + (mi >> 1)) * 8);
          mma16816<T>(o[db], pa, bb[0], bb[1]);
          mma16816<T>(o[db + 1], pa, bb[2], bb[3]);
        }
      }
    };
    float s[8][4];
    // K and V of a tile in one loop (V's source is K's plus H: one running pointer for both); a tile
    // wholly inside the sequence (all but its last) without a predicate a chunk (SASS: 382 -> 360
    // instructions a warp issues per full key tile at head size 64)
    auto load_kv = [&](int j, int buf) {
      T* kd = Ks + buf * kBN * LD + lr * LD + lc;
      T* vd = Vs + buf * kBN * LD + lr * LD + lc;
      const T* ks = K + (size_t(j) * kBN + lr) * ld + lc;
      if ((j + 1) * kBN <= len) {
#pragma unroll
        for (int i = 0; i < NP; ++i, ks += step) {
          cp_async16(kd + i * RP * LD, ks, true);
          cp_async16(vd + i * RP * LD, ks + H, true);
        }
      } else {
#pragma unroll
        for (int i = 0; i < NP; ++i, ks += step) {
          const bool ok = j * kBN + lr + i * RP < len;
          cp_async16(kd + i * RP * LD, ok ? ks : K, ok);
          cp_async16(vd + i * RP * LD, ok ? ks + H : V, ok);
        }
      }
    };
    load_kv(0, 0);
    cp_async_commit();
    for (int j = 0; j < n_tiles; ++j) {
      // One barrier per key tile: it publishes tile j (and Q) and tells every warp that all are done
      // with tile j - 1, whose buffer the copy of tile j + 1 then overwrites while tile j is computed.
      cp_async_wait<0>();
      __syncthreads();
      if (j + 1 < n_tiles) {
        load_kv(j + 1, (j + 1) & 1);
        cp_async_commit();
      }
      if (j == 0) load_q();
      scores(s, Ks + (j & 1) * kBN * LD);
      softmax_pv(s, Vs + (j & 1) * kBN * LD, j);
    }

    // every column of ls holds the row sum (lane (g, c): rows g, g + 8)
    const float l0 = ls[0], l1 = ls[2];
    const float inv0 = 1.f / l0, inv1 = 1.f / l1;
    const int r0 = warp * 16 + g, r1 = r0 + 8;
    T* out = static_cast<T*>(a.out) + size_t(s0 + q0) * H + h * HD;
#pragma unroll
    for (int db = 0; db < DB; ++db) {
      const int col = db * 8 + 2 * c;
      if (r0 < rows) *reinterpret_cast<uint32_t*>(out + size_t(r0) * H + col) = pack2<T>(o[db][0] * inv0, o[db][1] * inv0);
      if (r1 < rows) *reinterpret_cast<uint32_t*>(out + size_t(r1) * H + col) = pack2<T>(o[db][2] * inv1, o[db][3] * inv1);
    }
  }
}

template <typename T, int HD, int NW>
void launch_flash_nw(const EncAttnArgs& a, cudaStream_t stream) {
  constexpr int kBM = 16 * NW;
  const int smem = (kBM + 4 * kBN) * (HD + 8) * 2;
  static const bool configured = [smem] {
    CUDA_CHECK(cudaFuncSetAttribute(enc_flash_kernel<T, HD, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)configured;
  // About two waves of resident blocks (shared memory bound), split over the heads; in buckets of up to
  // 512 rows one block per head for every 16 * NW rows (blocks loop over the work items, so any count is
  // correct): the bucket's tiles are only known on the device, and a block per row (up to 128 rows per
  // sequence of 1) meant ~1,000 blocks, almost all empty, for a 128-row bucket of 12 heads. H100
  // (2026-12-07, BERT-base fp16, two runs each, 4 warps): 1x128 0.407 vs 0.424 ms, 1x256 0.471-0.474 vs
  // 0.483-0.488, 1x512 0.652-0.671 vs 0.691, 32x16 0.503-0.506 vs 0.515; the 1,024-row bucket (8x128:
  // 0.712-0.727 vs 0.707) keeps the old bound. IGNIS_ENC_ATTN_GRID=rows restores it everywhere (A/B).
  static const bool per_row = [] {
    const char* e = std::getenv("IGNIS_ENC_ATTN_GRID");
    return e && std::strcmp(e, "rows") == 0;
  }();
  const int per_sm = std::max(1, (200 * 1024) / smem);
  const int bound = per_row || a.rows > 512 ? a.rows : ceil_div(a.rows, kBM);
  const int gx = std::max(1, std::min(bound, ceil_div(int64_t(sm_count()) * per_sm * 2, a.nh)));
  launch_enc(enc_flash_kernel<T, HD, NW>, dim3(gx, a.nh), dim3(32 * NW), size_t(smem), stream, a);
}

// Warps a block for a bucket of `rows` rows: the caller's choice (tests), else IGNIS_ENC_ATTN_NW = 2 / 4
// (A/B runs), else 2-warp blocks up to kSmallAttnRows rows.
int flash_warps(int rows, int asked) {
  if (asked == 2 || asked == 4) return asked;
  static const int forced = [] {
    const char* e = std::getenv("IGNIS_ENC_ATTN_NW");
    const int v = e ? std::atoi(e) : 0;
    return v == 2 || v == 4 ? v : 0;
  }();
  if (forced) return forced;
  return rows <= kSmallAttnRows ? 2 : 4;
}

template <typename T, int HD>
void launch_flash(const EncAttnArgs& a, cudaStream_t stream) {
  switch (flash_warps(a.rows, a.warps)) {
    case 2: launch_flash_nw<T, HD, 2>(a, stream); break;
    default: launch_flash_nw<T, HD, 4>(a, stream); break;
  }
}

constexpr int kGenericMaxHd = 256;

template <typename T>
__global__ void enc_attn_generic_kernel(EncAttnArgs a) {
  pdl_trigger();
  pdl_wait();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int r = blockIdx.x * (blockDim.x >> 5) + warp, h = blockIdx.y;
  const int n = a.batch.counts[0], B = a.batch.counts[1];
  if (r >= n) return;  // whole warps only; no block-wide synchronisation below
  const int b = seq_of_row(a.batch.offsets, B, r);
  const int s0 = a.batch.offsets[b], s1 = a.batch.offsets[b + 1];
  const int hd = a.hd, H = a.nh * hd;
  const size_t ld = size_t(3) * H;
  const T* qkv = static_cast<const T*>(a.qkv);
  const T* q = qkv + size_t(r) * ld + size_t(h) * hd;
  constexpr int kPer = kGenericMaxHd / 32;
  float qv[kPer], o[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < hd ? t2f(q[d]) : 0.f;
    o[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = s0; j < s1; ++j) {
    const T* k = qkv + size_t(j) * ld + H + size_t(h) * hd;
    const T* v = k + H;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) dot += qv[i] * t2f(k[d]);
    }
    dot = warp_sum(dot) * a.scale;
    const float mn = fmaxf(m, dot);
    const float corr = expf(m - mn);  // m = -inf at the first key: 0
    const float p = expf(dot - mn);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int d = lane + 32 * i;
      o[i] = o[i] * corr + (d < hd ? p * t2f(v[d]) : 0.f);
    }
    m = mn;
  }
  T* out = static_cast<T*>(a.out) + size_t(r) * H + size_t(h) * hd;
  const float inv = 1.f / l;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) out[d] = f2t<T>(o[i] * inv);
  }
}

}  // namespace

bool encoder_flash_supported(DType t, int hd) {
  return (t == DType::F16 || t == DType::BF16) && (hd == 32 || hd == 64 || hd == 128);
}

void encoder_attention(const EncAttnArgs& a, cudaStream_t stream) {
  IGNIS_CHECK(a.nh > 0 && a.hd > 0, "encoder_attention: bad head shape ", a.nh, " x ", a.hd);
  IGNIS_CHECK(a.batch.counts && a.batch.offsets, "encoder_attention: batch not set");
  if (a.rows <= 0) return;
  const bool flash_ok = encoder_flash_supported(a.dtype, a.hd);
  IGNIS_CHECK(a.impl != EncAttnImpl::kFlash || flash_ok, "encoder_attention: the flash kernel needs F16/BF16 and ",
              "head size 32, 64 or 128 (got ", dtype_name(a.dtype), ", ", a.hd, ")");
  if (flash_ok && a.impl != EncAttnImpl::kGeneric) {
    IGNIS_CHECK(a.batch.tiles, "encoder_attention: the flash kernel needs the tile list");
    auto go = [&](auto tag) {
      using T = decltype(tag);
      if (a.hd == 32)
        launch_flash<T, 32>(a, stream);
      else if (a.hd == 64)
        launch_flash<T, 64>(a, stream);
      else
        launch_flash<T, 128>(a, stream);
    };
    if (a.dtype == DType::F16)
      go(__half());
    else
      go(bf16());
    return;
  }
  IGNIS_CHECK(a.hd <= kGenericMaxHd, "encoder_attention: head size ", a.hd, " is larger than ", kGenericMaxHd);
  constexpr int kWarps = 4;
  IGNIS_ENC_DISPATCH(a.dtype, T, {
    launch_enc(enc_attn_generic_kernel<T>, dim3(ceil_div(a.rows, kWarps), a.nh), dim3(32 * kWarps), 0, stream, a);
  });
}

}  // namespace ignis::cuda
