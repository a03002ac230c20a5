// matmul / get_rows / vec_dot dispatch (see quant.h).
//
// matmul: y[M, N] = x[M, K] . W[N, K]^T.
//   1. x is converted once to vec_dot_type(W) (Q8_0 / Q8_K blocks, or left in f32) into a
//      scratch buffer that lives as long as the calling thread (no malloc per token), with
//      per-block f32 scales and scale*sums beside it for the Q8_0 kernels.
//   2. M >= 4 and 4/5-bit 32-value weights (Q4_0, Q4_1, Q5_0, Q5_1: prompt processing):
//      one task per 8 weight rows packs them into an interleaved panel (quant_avx2.cpp)
//      that stays in L1 while every activation row passes by. Compute-bound; measured
//      ~2.5x the plain tiles below.
//   3. Otherwise the N weight rows are cut into chunks handed out over the thread pool;
//      within a chunk, tiles of 4 weight rows x 4 activation rows call a tile kernel, so
//      each weight block is unpacked once per 4 activation rows. Decode (M = 1) streams
//      the weights once: traffic = W bytes + K bytes of x + N*4 bytes of y; on this kind of
//      machine it is bound by memory bandwidth, not by the kernel.
// Kernels are AVX2 when the CPU has it (quant_avx2.cpp), else the scalar reference.
#include <algorithm>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/half.h"
#include "ops/quant.h"

namespace ignis::quant {
namespace {

std::atomic<bool> g_force_scalar{false};

// From this many activation rows on, packing weight panels pays for itself.
constexpr int64_t kPanelMinRows = 4;

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool ok = [] {
    __builtin_cpu_init();
    // F16C (vcvtph2ps) comes with every AVX2 CPU in practice; checked through CPUID since
    // not every compiler knows the "f16c" feature name.
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return ok;
#else
  return false;
#endif
}

// Scalar tile: one reference dot product per (weight row, activation row) pair.
void scalar_tile(DType t, const void* w, size_t ws, const void* x, size_t xs, float* y, size_t ldy, int nr, int nc,
                 int64_t k) {
  for (int c = 0; c < nc; ++c)
    for (int r = 0; r < nr; ++r)
      y[size_t(c) * ldy + size_t(r)] = vec_dot_ref(t, static_cast<const uint8_t*>(w) + size_t(r) * ws,
                                                   static_cast<const uint8_t*>(x) + size_t(c) * xs, k);
}

// A growable 64-byte aligned buffer, one per calling thread.
struct Scratch {
  uint8_t* data = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(data); }
  uint8_t* get(size_t bytes) {
    if (bytes > cap) {
      std::free(data);
      cap = std::max<size_t>((bytes + 63) / 64 * 64, 1 << 16);
      data = static_cast<uint8_t*>(std::aligned_alloc(64, cap));
      if (!data) {
        cap = 0;
        fail("matmul: out of memory for a scratch buffer of ", bytes, " bytes");
      }
    }
    return data;
  }
};

void check_f32_cpu(const Tensor& t, const char* what) {
  IGNIS_CHECK(t.device() == Device::CPU, "matmul: ", what, " must be on the CPU");
  IGNIS_CHECK(t.dtype() == DType::F32, "matmul: ", what, " must be f32, got ", dtype_name(t.dtype()));
  IGNIS_CHECK(t.data() != nullptr || t.numel() == 0, "matmul: ", what, " has no data");
}

}  // namespace

namespace detail {
void fill_q8_0_aux(const void* x, size_t x_stride, int64_t M, int64_t nb, float* d, float* s, int64_t ld) {
  for (int64_t m = 0; m < M; ++m) {
    const auto* row = reinterpret_cast<const blocks::Q8_0*>(static_cast<const uint8_t*>(x) + size_t(m) * x_stride);
    for (int64_t b = 0; b < nb; ++b) {
      int sum = 0;
      for (int j = 0; j < blocks::QK; ++j) sum += row[b].qs[j];
      const float dx = f16_to_f32(row[b].d);
      d[b * ld + m] = dx;
      s[b * ld + m] = dx * float(sum);
    }
  }
}
}  // namespace detail

void set_force_scalar(bool force) { g_force_scalar.store(force, std::memory_order_relaxed); }
bool force_scalar() { return g_force_scalar.load(std::memory_order_relaxed); }
bool using_avx2() { return !force_scalar() && cpu_has_avx2(); }

float vec_dot(DType t, const void* w, const void* x, int64_t n) {
  if (using_avx2() && detail::avx2_tile(t)) {
    const int64_t bs = dtype_info(t).block_size;
    IGNIS_CHECK(n >= 0 && n % bs == 0, "vec_dot: a row of ", n, " values is not a whole number of ", dtype_name(t),
                " blocks");
    return detail::avx2_vec_dot(t, w, x, n);
  }
  return vec_dot_ref(t, w, x, n);
}

namespace {

// Everything a matmul's tasks need. The tasks' lambdas capture only a pointer to it, so
// std::function keeps them inline (no allocation per call).
struct MatmulJob {
  DType wt, vt;
  int64_t M, N, K;
  bool avx2;
  const uint8_t* wp;
  size_t w_stride;
  const float* xf;
  uint8_t* xbuf;  // quantized activations (+ aux), or nullptr for f32
  const uint8_t* xq;
  size_t x_stride;
  int64_t nb, ld;  // activation blocks per row, aux layout [block][row] with row stride ld
  float* aux_d;    // written by quantize(), read through aux
  float* aux_s;
  detail::XAux aux;
  float* yp;
  detail::TileFn tile;
  const detail::PanelKernel* panel;
  int64_t tiles_per_chunk;

  void quantize(int64_t b, int64_t e) const {
    for (int64_t m = b; m < e; ++m) {
      uint8_t* row = xbuf + size_t(m) * x_stride;
      if (avx2)
        detail::avx2_quantize_row(vt, xf + m * K, row, K);
      else
        quantize_row(vt, xf + m * K, row, K);
      if (vt == DType::Q8_0)
        detail::fill_q8_0_aux(row, 0, 1, nb, aux_d + m, aux_s + m, ld);
    }
  }

  // 8 weight rows packed once, then every activation row against the panel.
  void panel_task(int64_t p) const {
    thread_local Scratch panel_scratch;
    uint8_t* buf = panel_scratch.get(panel->bytes(K));
    const int64_t n = p * 8;
    const int rows = int(std::min<int64_t>(8, N - n));
    panel->pack(wp + size_t(n) * w_stride, w_stride, rows, K, buf);
    for (int64_t m = 0; m < M; m += 4) {
      const int nc = int(std::min<int64_t>(4, M - m));
      const detail::XAux a{aux.d + m, aux.s + m, aux.ld};
      panel->compute(buf, xq + size_t(m) * x_stride, x_stride, a, yp + m * N + n, size_t(N), rows, nc, K);
    }
  }

  // A chunk of weight rows in tiles of 4 x 4; its rows stay in L1/L2 while all activation
  // rows pass by.
  void tile_task(int64_t chunk) const {
    const int64_t n0 = chunk * tiles_per_chunk * 4;
    const int64_t n1 = std::min(N, n0 + tiles_per_chunk * 4);
    for (int64_t m = 0; m < M; m += 4) {
      const int nc = int(std::min<int64_t>(4, M - m));
      for (int64_t n = n0; n < n1; n += 4) {
        const int nr = int(std::min<int64_t>(4, n1 - n));
        const void* wr = wp + size_t(n) * w_stride;
        const void* xr = xq + size_t(m) * x_stride;
        float* yr = yp + m * N + n;
        if (tile) {
          const detail::XAux a{aux.d ? aux.d + m : nullptr, aux.s ? aux.s + m : nullptr, aux.ld};
          tile(wr, w_stride, xr, x_stride, a, yr, size_t(N), nr, nc, K);
        } else {
          scalar_tile(wt, wr, w_stride, xr, x_stride, yr, size_t(N), nr, nc, K);
        }
      }
    }
  }
};

}  // namespace

void matmul(ThreadPool& pool, const Tensor& W, const Tensor& x, Tensor& y) {
  IGNIS_CHECK(W.device() == Device::CPU, "matmul: the weight must be on the CPU");
  check_f32_cpu(x, "the input x");
  check_f32_cpu(y, "the output y");
  MatmulJob job{};
  job.wt = W.dtype();
  job.N = W.rows();
  job.K = W.cols();
  job.M = x.rows();
  const int64_t M = job.M, N = job.N, K = job.K;
  IGNIS_CHECK(x.cols() == K, "matmul: x has ", x.cols(), " columns but the weight ", W.shape_str(), " has ", K);
  IGNIS_CHECK(y.rows() == M && y.cols() == N, "matmul: y is ", y.shape_str(), ", expected [", M, ", ", N, "]");
  if (M == 0 || N == 0) return;
  job.vt = vec_dot_type(job.wt);
  if (K == 0) {
    std::fill(y.ptr<float>(), y.ptr<float>() + M * N, 0.0f);
    return;
  }
  job.w_stride = W.row_bytes();
  job.wp = static_cast<const uint8_t*>(W.data());
  job.yp = y.ptr<float>();
  job.xf = x.ptr<float>();
  job.avx2 = using_avx2();
  job.tile = job.avx2 ? detail::avx2_tile(job.wt) : nullptr;

  // 1. activations in the weight's dot-product format (+ per-block side data for Q8_0).
  if (job.vt == DType::F32) {
    job.xq = reinterpret_cast<const uint8_t*>(job.xf);
    job.x_stride = size_t(K) * 4;
  } else {
    thread_local Scratch scratch;
    job.x_stride = row_bytes(job.vt, K);
    job.nb = K / dtype_info(job.vt).block_size;
    job.ld = M + 4;
    const size_t qbytes = (job.x_stride * size_t(M) + 63) / 64 * 64;
    const size_t aux_bytes = job.vt == DType::Q8_0 ? size_t(job.nb * job.ld) * 2 * sizeof(float) : 0;
    job.xbuf = scratch.get(qbytes + aux_bytes);
    job.xq = job.xbuf;
    if (job.vt == DType::Q8_0) {
      job.aux_d = reinterpret_cast<float*>(job.xbuf + qbytes);
      job.aux_s = job.aux_d + job.nb * job.ld;
      job.aux = detail::XAux{job.aux_d, job.aux_s, job.ld};
    }
    // Quantizing is cheap next to the product (K values vs N*K MACs a row): a parallel
    // region of its own only pays off for large inputs.
    if (M * K >= (int64_t(1) << 20))
      pool.parallel_for(M, 4, [&job](int64_t b, int64_t e) { job.quantize(b, e); });
    else
      job.quantize(0, M);
  }

  // 2a. many activation rows, 4/5-bit weights: packed panels of 8 weight rows, one task each.
  job.panel = job.avx2 && M >= kPanelMinRows ? detail::avx2_panel(job.wt) : nullptr;
  if (job.panel) {
    pool.run((N + 7) / 8, [&job](int64_t p, int) { job.panel_task(p); });
    return;
  }

  // 2b. tiles of 4 weight rows x 4 activation rows; tasks are chunks of weight rows:
  // enough chunks to balance the threads, few enough that each is worth a hand-off.
  const int64_t n_tiles = (N + 3) / 4;
  const int64_t want = int64_t(pool.size()) * (M == 1 ? 4 : 8);
  job.tiles_per_chunk = std::max<int64_t>(1, n_tiles / want);
  pool.run((n_tiles + job.tiles_per_chunk - 1) / job.tiles_per_chunk, [&job](int64_t c, int) { job.tile_task(c); });
}

void get_rows(const Tensor& table, const int32_t* ids, int64_t n, float* out) {
  IGNIS_CHECK(table.device() == Device::CPU, "get_rows: the table must be on the CPU");
  const int64_t rows = table.rows(), cols = table.cols();
  for (int64_t i = 0; i < n; ++i) {
    IGNIS_CHECK(ids[i] >= 0 && ids[i] < rows, "get_rows: id ", ids[i], " out of range for a table of ", rows,
                " rows");
    dequantize_row(table.dtype(), table.row<const uint8_t>(ids[i]), out + i * cols, cols);
  }
}

}  // namespace ignis::quant
