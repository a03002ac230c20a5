// matmul / get_rows / vec_dot dispatch (see quant.h).
//
// matmul: y[M, N] = x[M, K] . W[N, K]^T.
//   1. x is converted once to vec_dot_type(W) (Q8_0 / Q8_K blocks, or left in f32) into a
//      scratch buffer that lives as long as the calling thread (no malloc per token), with
//      per-block f32 scales and scale*sums beside it for the Q8_0 kernels.
//   2. M >= 4 and 4/5-bit 32-value weights (Q4_0, Q4_1, Q5_0, Q5_1, and Q8_0 with VNNI):
//      one task per 8 weight rows packs them into an interleaved panel (quant_avx2.cpp)
//      that stays in L1 while every activation row passes by. Compute-bound; measured
//      ~2.5x the plain tiles below.
//   3. Otherwise the N weight rows are cut into chunks handed out over the thread pool;
//      within a chunk, tiles of 4 weight rows x 4 activation rows call a tile kernel, so
//      each weight block is unpacked once per 4 activation rows. Decode (M = 1) streams
//      the weights once: traffic = W bytes + K bytes of x + N*4 bytes of y; on this kind of
//      machine it is bound by memory bandwidth, not by the kernel.
//   4. M < 4 with Q4_0 / Q4_1 / Q8_0 weights on a CPU with AVX-512 VNNI: x is quantized
//      into the vpdpbusd layout of quant_avx512.cpp and chunks of weight rows run there
//      (about 2.5x fewer instructions per block than the AVX2 tiles).
//   5. Weights in an x8 layout (prepare_cpu_weight packs Q4_0 / Q4_1 / Q8_0 at load on AVX2
//      CPUs without VNNI): tasks are whole groups of 8 rows; M < 4 (and Q8_0x8 at any M)
//      runs the x8 kernels of quant_x8_avx2.cpp, about half the instructions of the tiles;
//      M >= 4 with 4-bit weights packs the step-2 panels straight from the groups.
//   6. f32 weights with M >= 16: OpenBLAS SGEMM (a Debian package the encoders use too).
//   7. Activations::kF32 with quantized weights: chunks of weight rows, each row dequantized
//      to f32 (x8 groups unpacked first) and dotted with every f32 activation row.
// matmul_multi runs several weights that share x (q/k/v, gate/up) as one job: x is
// quantized once and the pool is woken once, which matters when a token runs ~200
// products of a few hundred microseconds or less.
// Kernels are AVX2 when the CPU has it (quant_avx2.cpp), else the scalar reference.
#include <cblas.h>

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
// From this many rows on, f32 weights go to OpenBLAS' SGEMM.
constexpr int64_t kBlasMinRows = 16;

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

static bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool ok = [] {
    __builtin_cpu_init();
    const char* off = std::getenv("IGNIS_NO_AVX512");
    if (off && *off && std::strcmp(off, "0") != 0) return false;
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }();
  return ok;
#else
  return false;
#endif
}

static std::atomic<bool> g_disable_avx512{false};

void set_force_scalar(bool force) { g_force_scalar.store(force, std::memory_order_relaxed); }
void set_disable_avx512(bool disable) { g_disable_avx512.store(disable, std::memory_order_relaxed); }
bool using_avx512_vnni() {
  return using_avx2() && !g_disable_avx512.load(std::memory_order_relaxed) && cpu_has_avx512_vnni();
}
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

constexpr int kMaxMulti = 4;

// Everything a matmul's tasks need. The tasks' lambdas capture only a pointer to it, so
// std::function keeps them inline (no allocation per call). A job holds 1 to kMaxMulti
// weights that share the input x; tasks are numbered across them (task_base[i] is the
// first task of weight i).
struct MatmulJob {
  DType wt, vt;
  int64_t M, K;
  bool avx2;
  int n_w = 1;
  const uint8_t* wp[kMaxMulti];
  const Tensor* Wt[kMaxMulti];
  size_t w_stride[kMaxMulti];
  int64_t N[kMaxMulti];
  float* yp[kMaxMulti];
  int64_t task_base[kMaxMulti + 1];
  int64_t rows_per_task[kMaxMulti];
  const float* xf;
  uint8_t* xbuf;  // quantized activations (+ aux), or nullptr for f32
  const uint8_t* xq;
  size_t x_stride;
  int64_t nb, ld;  // activation blocks per row, aux layout [block][row] with row stride ld
  float* aux_d;    // written by quantize(), read through aux
  float* aux_s;
  detail::XAux aux;
  detail::TileFn tile;
  const detail::PanelKernel* panel;
  const detail::RowKernel* rowk;  // AVX-512 VNNI decode path (x prepared by rowk->prepare)
  bool packed;                    // x8 layout (groups of 8 rows, quant.h)
  detail::X8Fn x8;                // its AVX2 kernel, or nullptr for the scalar fallback

  void quantize(int64_t b, int64_t e) const {
    for (int64_t m = b; m < e; ++m) {
      uint8_t* row = xbuf + size_t(m) * x_stride;
      if (rowk)
        rowk->prepare(xf + m * K, K, row);
      else if (avx2)
        detail::avx2_quantize_row(vt, xf + m * K, row, K);
      else
        quantize_row(vt, xf + m * K, row, K);
      if (!rowk && vt == DType::Q8_0) detail::fill_q8_0_aux(row, 0, 1, nb, aux_d + m, aux_s + m, ld);
    }
  }

  void task(int64_t t) const {
    int i = 0;
    while (t >= task_base[i + 1]) ++i;
    const int64_t n0 = (t - task_base[i]) * rows_per_task[i];
    const int64_t n1 = std::min(N[i], n0 + rows_per_task[i]);
    if (panel)
      panel_task(i, n0, n1);
    else if (packed)
      x8_task(i, n0, n1);
    else if (rowk)
      row_task(i, n0, n1);
    else
      tile_task(i, n0, n1);
  }

  // Weight rows [n0, n1) against each activation row, AVX-512 VNNI.
  void row_task(int i, int64_t n0, int64_t n1) const {
    for (int64_t m = 0; m < M; ++m)
      rowk->rows(wp[i] + size_t(n0) * w_stride[i], w_stride[i], int(n1 - n0), xq + size_t(m) * x_stride, K,
                 yp[i] + m * N[i] + n0);
  }

  // Groups of 8 packed weight rows [n0, n1) (n0 a multiple of 8) against each activation
  // row, 4 at a time. Without AVX2 a group is unpacked to the plain layout and run through
  // the scalar reference.
  void x8_task(int i, int64_t n0, int64_t n1) const {
    thread_local Scratch plain_scratch;
    for (int64_t n = n0; n < n1; n += 8) {
      const int rows = int(std::min<int64_t>(8, N[i] - n));
      const uint8_t* grp = wp[i] + size_t(n) * w_stride[i];
      const uint8_t* plain = nullptr;
      if (!x8) {
        uint8_t* buf = plain_scratch.get(8 * w_stride[i]);
        unpack_x8_group(*Wt[i], n / 8, buf);
        plain = buf;
      }
      for (int64_t m = 0; m < M; m += 4) {
        const int nc = int(std::min<int64_t>(4, M - m));
        const uint8_t* xr = xq + size_t(m) * x_stride;
        float* yr = yp[i] + m * N[i] + n;
        if (x8) {
          const detail::XAux a{aux.d + m, aux.s + m, aux.ld};
          x8(grp, xr, x_stride, a, yr, size_t(N[i]), rows, nc, K);
        } else {
          for (int r = 0; r < rows; r += 4)
            scalar_tile(unpacked_type(wt), plain + size_t(r) * w_stride[i], w_stride[i], xr, x_stride,
                        yr + r, size_t(N[i]), std::min(4, rows - r), nc, K);
        }
      }
    }
  }

  // A panel of weight rows packed once, then every activation row against it.
  void panel_task(int i, int64_t n, int64_t) const {
    thread_local Scratch panel_scratch;
    uint8_t* buf = panel_scratch.get(panel->bytes(K));
    const int rows = int(std::min<int64_t>(panel->rows, N[i] - n));
    panel->pack(wp[i] + size_t(n) * w_stride[i], w_stride[i], rows, K, buf);
    for (int64_t m = 0; m < M; m += 4) {
      const int nc = int(std::min<int64_t>(4, M - m));
      const detail::XAux a{aux.d + m, aux.s + m, aux.ld};
      panel->compute(buf, xq + size_t(m) * x_stride, x_stride, a, yp[i] + m * N[i] + n, size_t(N[i]), rows, nc, K);
    }
  }

  // A chunk of weight rows in tiles of 4 x 4; its rows stay in L1/L2 while all activation
  // rows pass by.
  void tile_task(int i, int64_t n0, int64_t n1) const {
    for (int64_t m = 0; m < M; m += 4) {
      const int nc = int(std::min<int64_t>(4, M - m));
      for (int64_t n = n0; n < n1; n += 4) {
        const int nr = int(std::min<int64_t>(4, n1 - n));
        const void* wr = wp[i] + size_t(n) * w_stride[i];
        const void* xr = xq + size_t(m) * x_stride;
        float* yr = yp[i] + m * N[i] + n;
        if (tile) {
          const detail::XAux a{aux.d ? aux.d + m : nullptr, aux.s ? aux.s + m : nullptr, aux.ld};
          tile(wr, w_stride[i], xr, x_stride, a, yr, size_t(N[i]), nr, nc, K);
        } else {
          scalar_tile(wt, wr, w_stride[i], xr, x_stride, yr, size_t(N[i]), nr, nc, K);
        }
      }
    }
  }
};

void check_product(const Tensor& W, const Tensor& x, const Tensor& y) {
  IGNIS_CHECK(W.device() == Device::CPU, "matmul: the weight must be on the CPU");
  check_f32_cpu(x, "the input x");
  check_f32_cpu(y, "the output y");
  IGNIS_CHECK(x.cols() == W.cols(), "matmul: x has ", x.cols(), " columns but the weight ", W.shape_str(), " has ",
              W.cols());
  IGNIS_CHECK(y.rows() == x.rows() && y.cols() == W.rows(), "matmul: y is ", y.shape_str(), ", expected [", x.rows(),
              ", ", W.rows(), "]");
}

// Activations::kF32 for one quantized weight: tasks of 8 rows (an x8 group when packed), each
// row dequantized to f32 in a per-thread buffer and dotted in float with every row of x.
void run_float_activations(ThreadPool& pool, const Tensor& W, Tensor& y, const Tensor& x) {
  const int64_t M = x.rows(), N = W.rows(), K = W.cols();
  const bool packed = is_packed(W.dtype());
  const DType plain = packed ? unpacked_type(W.dtype()) : W.dtype();
  const size_t rb = W.row_bytes();
  const float* xf = x.ptr<float>();
  float* yp = y.ptr<float>();
  pool.run((N + 7) / 8, [&](int64_t t, int) {
    thread_local Scratch rows_scratch, f_scratch;
    const int64_t n0 = t * 8;
    const int rows = int(std::min<int64_t>(8, N - n0));
    const uint8_t* src = static_cast<const uint8_t*>(W.data()) + size_t(n0) * rb;
    if (packed) {
      uint8_t* buf = rows_scratch.get(8 * rb);
      unpack_x8_group(W, n0 / 8, buf);
      src = buf;
    }
    float* wf = reinterpret_cast<float*>(f_scratch.get(size_t(K) * sizeof(float)));
    for (int r = 0; r < rows; ++r) {
      dequantize_row(plain, src + size_t(r) * rb, wf, K);
      for (int64_t m = 0; m < M; ++m) yp[m * N + n0 + r] = vec_dot(DType::F32, wf, xf + m * K, K);
    }
  });
}

// The product(s) of one job; weights already checked to share K and the dtype.
void run_job(ThreadPool& pool, const Tensor* const* W, Tensor* const* y, int n, const Tensor& x) {
  MatmulJob job{};
  job.n_w = n;
  job.wt = W[0]->dtype();
  job.K = W[0]->cols();
  job.M = x.rows();
  const int64_t M = job.M, K = job.K;
  int64_t total_n = 0;
  for (int i = 0; i < n; ++i) {
    job.N[i] = W[i]->rows();
    job.w_stride[i] = W[i]->row_bytes();
    job.wp[i] = static_cast<const uint8_t*>(W[i]->data());
    job.Wt[i] = W[i];
    job.yp[i] = y[i]->ptr<float>();
    total_n += job.N[i];
  }
  if (M == 0 || total_n == 0) return;
  job.vt = vec_dot_type(job.wt);
  if (K == 0) {
    for (int i = 0; i < n; ++i) std::fill(job.yp[i], job.yp[i] + M * job.N[i], 0.0f);
    return;
  }
  job.xf = x.ptr<float>();
  // f32 weights and many activation rows (prompts of f32 models, GPTQ calibration): a plain
  // SGEMM, which OpenBLAS does several times faster than the float tiles below.
  if (job.wt == DType::F32 && M >= kBlasMinRows && !force_scalar()) {
    for (int i = 0; i < n; ++i)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(M), blasint(job.N[i]), blasint(K), 1.0f, job.xf,
                  blasint(K), reinterpret_cast<const float*>(job.wp[i]), blasint(K), 0.0f, job.yp[i],
                  blasint(job.N[i]));
    return;
  }
  job.avx2 = using_avx2();
  job.tile = job.avx2 ? detail::avx2_tile(job.wt) : nullptr;
  job.packed = is_packed(job.wt);
  job.x8 = job.packed && job.avx2 ? detail::avx2_x8(job.wt) : nullptr;
  // Decode-sized products of the 32-value formats: AVX-512 VNNI rows when the CPU has them.
  job.rowk = M < kPanelMinRows && !job.packed && using_avx512_vnni() ? detail::avx512_rows(job.wt) : nullptr;

  // 1. activations in the weight's dot-product format (+ per-block side data for Q8_0).
  if (job.vt == DType::F32) {
    job.xq = reinterpret_cast<const uint8_t*>(job.xf);
    job.x_stride = size_t(K) * 4;
  } else {
    thread_local Scratch scratch;
    job.x_stride = job.rowk ? (job.rowk->bytes(K) + 63) / 64 * 64 : row_bytes(job.vt, K);
    job.nb = K / dtype_info(job.vt).block_size;
    job.ld = M + 4;
    const size_t qbytes = (job.x_stride * size_t(M) + 63) / 64 * 64;
    const bool aux = job.vt == DType::Q8_0 && !job.rowk;
    const size_t aux_bytes = aux ? size_t(job.nb * job.ld) * 2 * sizeof(float) : 0;
    job.xbuf = scratch.get(qbytes + aux_bytes);
    job.xq = job.xbuf;
    if (aux) {
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

  // 2. Tasks are chunks of weight rows:
  //  a. many activation rows, 4/5-bit weights: packed panels of 8 weight rows, one task each;
  //  b. otherwise chunks of whole 4-row tiles (or VNNI row groups): enough chunks to
  //     balance the threads, few enough that each is worth a hand-off.
  job.panel = nullptr;
  if (M >= kPanelMinRows && !job.packed && using_avx512_vnni()) job.panel = detail::avx512_panel(job.wt);
  if (M >= kPanelMinRows && job.avx2 && !job.panel) job.panel = detail::avx2_panel(job.wt);
  const int64_t want = int64_t(pool.size()) * (M == 1 ? 4 : 8);
  job.task_base[0] = 0;
  for (int i = 0; i < n; ++i) {
    if (job.panel) {
      job.rows_per_task[i] = job.panel->rows;
    } else if (job.packed) {  // whole groups of 8 rows
      const int64_t groups = (job.N[i] + 7) / 8;
      const int64_t chunks = std::max<int64_t>(1, want * job.N[i] / total_n);
      job.rows_per_task[i] = 8 * std::max<int64_t>(1, groups / chunks);
    } else {
      // this weight's share of the chunks, in proportion to its rows
      const int64_t tiles = (job.N[i] + 3) / 4;
      const int64_t chunks = std::max<int64_t>(1, want * job.N[i] / total_n);
      job.rows_per_task[i] = 4 * std::max<int64_t>(1, tiles / chunks);
    }
    job.task_base[i + 1] = job.task_base[i] + (job.N[i] + job.rows_per_task[i] - 1) / job.rows_per_task[i];
  }
  pool.run(job.task_base[n], [&job](int64_t t, int) { job.task(t); });
}

}  // namespace

void matmul(ThreadPool& pool, const Tensor& W, const Tensor& x, Tensor& y, Activations act) {
  const Tensor* w = &W;
  Tensor* out = &y;
  matmul_multi(pool, &w, &out, 1, x, act);
}

void matmul_multi(ThreadPool& pool, const Tensor* const* W, Tensor* const* y, int n, const Tensor& x,
                  Activations act) {
  IGNIS_CHECK(n >= 1, "matmul_multi: no weights");
  for (int i = 0; i < n; ++i) check_product(*W[i], x, *y[i]);
  if (act == Activations::kF32 && x.rows() > 0 && x.cols() > 0) {
    bool all_float = true;  // f32 / f16 / bf16 weights: the usual path is already float
    for (int i = 0; i < n; ++i) all_float = all_float && vec_dot_type(W[i]->dtype()) == DType::F32;
    if (!all_float) {
      for (int i = 0; i < n; ++i) {
        if (vec_dot_type(W[i]->dtype()) == DType::F32)
          run_job(pool, W + i, y + i, 1, x);
        else
          run_float_activations(pool, *W[i], *y[i], x);
      }
      return;
    }
  }
  bool shared = n <= kMaxMulti;
  for (int i = 1; i < n; ++i) shared = shared && W[i]->dtype() == W[0]->dtype();
  if (shared) return run_job(pool, W, y, n, x);
  for (int i = 0; i < n; ++i) run_job(pool, W + i, y + i, 1, x);
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
