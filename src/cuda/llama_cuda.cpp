// CUDA Llama: weights upload / synthetic init, prefill (cuBLASLt + flash attention), decode
// (GEMV kernels replayed as one CUDA graph per batch size), GPU sampling. Host code only: the
// kernels are in the .cu files beside it (declared in kernels.h).
#include "cuda/llama_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/half.h"
#include "cuda/common.h"
#include "cuda/device.h"
#include "cuda/gemm.h"
#include "cuda/kernels.h"
#include "cuda/quant_kernels.h"
#include "cuda/ref.h"
#include "io/model_source.h"
#include "ops/quant.h"

namespace ignis {

// Whether batch-1 decode runs through the persistent chain kernel by default (CudaOptions::decode_chain).
constexpr bool kChainDefault = false;
// int4 weights in the tiled nibble order of the tensor-core GEMV (tile_int4_weights).
constexpr bool kInt4TiledDefault = true;  // H200 2026-12-02: int4 g128 b1 363 vs 349 tok/s, Q4_0 351 vs 340

namespace {

using namespace cuda;
using Clock = std::chrono::steady_clock;

constexpr int kMaxBatch = 8;
constexpr int kLogitRows = 64;  // rows of logits computed per GEMM in forward_all

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// Bytes of a row of K values of a GGUF block type.
// CudaOptions::quant names of the GGUF block types a synthetic model can be built in.
bool synthetic_gguf_type(const std::string& name, QType& t) {
  static const std::pair<const char*, QType> kNames[] = {{"q8_0", QType::kQ8_0}, {"q4_0", QType::kQ4_0},
                                                         {"q4_1", QType::kQ4_1}, {"q4_k", QType::kQ4_K},
                                                         {"q5_k", QType::kQ5_K}, {"q6_k", QType::kQ6_K}};
  for (const auto& [n, q] : kNames)
    if (name == n) return t = q, true;
  return false;
}

size_t qrow_bytes(QType t, int K) {
  switch (t) {
    case QType::kQ8_0: return size_t(K) / 32 * 34;
    case QType::kQ4_0: return size_t(K) / 32 * 18;
    case QType::kQ4_1: return size_t(K) / 32 * 20;
    case QType::kQ4_K: return size_t(K) / 256 * 144;
    case QType::kQ5_K: return size_t(K) / 256 * 176;
    case QType::kQ6_K: return size_t(K) / 256 * 210;
    default: fail("qrow_bytes: not a GGUF block type");
  }
}

// GGUF Q4_0 and Q4_K layers are repacked at load into int4 group 32 with f16 scales (repack_q4_0:
// the same values and bytes; repack_q4_k: f16 scales and mins per 32 values, 20 bytes per 32 against
// 18), so that the int4 tensor-core GEMV runs them. IGNIS_Q4_0_NATIVE=1 / IGNIS_Q4_K_NATIVE=1 keep
// the blocks and their CUDA-core kernels (A/B measurements).
bool repack_on(QType t) {
  auto native = [](const char* var) {
    const char* e = std::getenv(var);
    return e && std::strcmp(e, "1") == 0;
  };
  static const bool q40 = !native("IGNIS_Q4_0_NATIVE"), q4k = !native("IGNIS_Q4_K_NATIVE");
  return t == QType::kQ4_0 ? q40 : t == QType::kQ4_K ? q4k : false;
}
// Marks a planned weight whose mins carve_gguf_weights places (repacked Q4_K) until it does.
const char kMinsPlanned = 0;
// The device weight planned for a GGUF tensor of block type t, [N, K].
QWeight planned_gguf(QType t, int N, int K) {
  QWeight q;
  q.type = t, q.N = N, q.K = K;
  if (repack_on(t) && (t == QType::kQ4_0 || K % 128 == 0)) {
    q.type = QType::kInt4, q.group = 32, q.scale_dtype = DType::F16;
    if (t == QType::kQ4_K) q.mins = &kMinsPlanned;
  }
  return q;
}
// Device bytes of a planned GGUF weight: its blocks, or (repacked) nibbles + tiled f16 scales (+ mins).
size_t planned_bytes(const QWeight& q) {
  if (q.type != QType::kInt4) return align256(size_t(q.N) * qrow_bytes(q.type, q.K));
  const size_t meta = align256(qmeta_count(q.N, q.K / 32) * 2);
  return align256(size_t(q.N) * q.K / 2) + meta * (q.mins ? 2 : 1);
}

struct LayerW {
  float* attn_norm = nullptr;
  float* ffn_norm = nullptr;
  float* bqkv = nullptr;
  void* wqkv = nullptr;   // [(nh + 2 nkv) hd, dim]
  void* wo = nullptr;     // [dim, nh hd]
  void* wgu = nullptr;    // [2 hp, dim], 8-row blocks of gate / up
  void* wdown = nullptr;  // [dim, hp]
};

// Device-resident step inputs (one memcpy before each decode replay).
struct StepDev {
  int tokens[kMaxBatch];
  int pos[kMaxBatch];
  SamplingParamsDev sp;
  int sampled[kMaxBatch];
};

template <typename T>
struct PinnedBuf {
  T* p = nullptr;
  size_t n = 0;
  void alloc(size_t count) {
    reset();
    if (count == 0) return;
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p), count * sizeof(T)));
    n = count;
  }
  void reset() {
    if (p) cudaFreeHost(p);
    p = nullptr, n = 0;
  }
  ~PinnedBuf() { reset(); }
};

// Runs fn(begin, end) over [0, n) split across up to 8 threads (inline when small).
void parallel_rows(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  const int nt = int(std::min<int64_t>({8, std::max(1u, std::thread::hardware_concurrency()), std::max<int64_t>(1, n / 64)}));
  if (nt <= 1) return fn(0, n);
  std::vector<std::thread> th;
  std::exception_ptr err;
  std::mutex mu;
  for (int k = 0; k < nt; ++k)
    th.emplace_back([&, k] {
      try {
        fn(n * k / nt, n * (k + 1) / nt);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!err) err = std::current_exception();
      }
    });
  for (auto& t : th) t.join();
  if (err) std::rethrow_exception(err);
}

struct Staging {
  static constexpr size_t kBytes = size_t(64) << 20;
  PinnedBuf<uint8_t> host[2];
  DeviceBuffer dev[2];
  cudaEvent_t done[2] = {nullptr, nullptr};
  int next = 0;
  Staging() {
    for (int i = 0; i < 2; ++i) {
      host[i].alloc(kBytes);
      dev[i].alloc(kBytes);
      CUDA_CHECK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
  }
  ~Staging() {
    for (auto& e : done)
      if (e) cudaEventDestroy(e);
  }
};

class CudaLlamaImpl final : public CudaLlama {
 public:
  // src: the model whose GGUF block weights may stay quantized (nullptr: synthetic).
  CudaLlamaImpl(const LlamaConfig& cfg, const CudaOptions& opt, Clock::time_point t0, const ModelSource* src = nullptr);
  ~CudaLlamaImpl() override;

  void load_weights(const ModelSource& src);
  void init_random(uint64_t seed);
  // Every linear layer (and the output head) of a synthetic model in blocks of type t.
  void plan_synthetic_gguf(QType t);
  void finish_warmup();
  void tile_int4_weights();

  const LlamaConfig& config() const override { return cfg_; }
  int context_size() const override { return ctx_; }
  std::string backend() const override {
    return "cuda (" + device_description(opt_.device) + ", " + std::string(dtype_name(dt_)) + ")";
  }
  const float* forward(const int32_t* tokens, int n, int pos) override { return forward_slot(0, tokens, n, pos); }
  std::vector<float> forward_all(const int32_t* tokens, int n, int pos) override;
  const float* forward_slot(int slot, const int32_t* tokens, int n, int pos) override;
  int32_t prefill_sample(int slot, const int32_t* tokens, int n, int pos, const SamplingParams& sp) override;
  int32_t decode_sample(int32_t token, int pos, const SamplingParams& sp) override {
    int32_t out = 0;
    decode_batch_sample(&token, 1, pos, sp, &out);
    return out;
  }
  const float* decode_batch(const int32_t* tokens, int B, int pos) override;
  void decode_batch_sample(const int32_t* tokens, int B, int pos, const SamplingParams& sp, int32_t* out) override;
  double warmup_seconds() const override { return warmup_s_; }
  DType dtype() const override { return dt_; }
  int max_batch() const override { return opt_.max_batch; }
  size_t weight_bytes() const override { return weight_bytes_; }
  size_t weight_bytes_per_step() const override { return step_weight_bytes_; }
  size_t kv_cache_bytes() const override { return kv_k_.size() + kv_v_.size(); }
  int quantized_linear_weights() const override { return n_quant_weights_; }
  size_t kv_bytes_per_step(int pos) const override {
    return size_t(2) * cfg_.n_layers * nkv_ * size_t(pos + 1) * hd_ * esz_;
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  std::vector<std::pair<std::string, double>> profile_decode_step(int B, int pos) override;

 private:
  void carve_weights();
  void carve_quant_weights();
  void plan_gguf(const ModelSource& src);
  void carve_gguf_weights();
  void upload_blocks(const Tensor& t, const QWeight& q, int64_t rows, int64_t row_offset, bool interleave8);
  // Streams `rows` rows of bpr bytes through the two pinned staging buffers, in chunks of a multiple
  // of 8 rows: fill(hbuf, r0, a, b) writes rows r0 + a .. r0 + b into the pinned buffer (called from
  // several threads: one thread's memcpy is slower than the copy it feeds), then send(i, hbuf, r0, nr)
  // enqueues the chunk's device work on stream_; buffer i is reused once that work is done.
  template <typename Fill, typename Send>
  void staged_rows(int64_t rows, size_t bpr, Fill&& fill, Send&& send);
  void* layer_k(int l) const { return kv_k_.as<char>() + size_t(l) * kv_layer_bytes_; }
  void* layer_v(int l) const { return kv_v_.as<char>() + size_t(l) * kv_layer_bytes_; }
  void check_range(int slot, int n, int pos) const;
  void set_step(const int32_t* tokens, int B, int pos, const SamplingParams* sp);
  void enqueue_decode(int B, bool sample);
  void run_decode(int B, bool sample);
  void tick(const char* category);  // profiling mark after a kernel (no-op unless profiling)
  // Prefill of n tokens (already in pf_tokens_ at offset tok_off) of `slot`, position from
  // pf_pos_[pos_idx]. Leaves the final-norm input of the last token in x_ row n-1.
  void enqueue_prefill_chunk(int slot, int tok_off, int pos_idx, int n);
  void prefill(int slot, const int32_t* tokens, int n, int pos, std::vector<float>* all_logits);
  void last_logits(int row, int n_rows_in_x);
  void upload_matrix(const Tensor& t, void* dst, int64_t rows, int64_t cols, int64_t dst_ld, int64_t row_offset,
                     bool interleave8);
  void upload_vector(const Tensor& t, float* dst, int64_t n);
  void gemv(const void* W, const void* x, int B, int N, int K, GemvEpilogue epi, void* out,
            const float* norm_w = nullptr, const float* ss_in = nullptr, float* ss_out = nullptr) {
    GemvArgs a = gemv_args(W, x, B, N, K, epi, out);
    a.norm_w = norm_w, a.ss_in = ss_in, a.ss_out = ss_out;
    cuda::gemv(a, stream_);
  }
  // The decode products' arguments: the shared split-K workspace and counters, the norm's eps.
  GemvArgs gemv_args(const void* W, const void* x, int B, int N, int K, GemvEpilogue epi, void* out) {
    GemvArgs a;
    a.dtype = dt_, a.W = W, a.x = x, a.B = B, a.N = N, a.K = K, a.epi = epi, a.out = out;
    a.ws = gemv_ws_.as<float>(), a.ws_floats = gemv_ws_.size() / 4;
    a.counters = gemv_cnt_.as<unsigned>(), a.n_counters = int(gemv_cnt_.size() / 4);
    a.norm_eps = cfg_.norm_eps;
    return a;
  }
  QGemvArgs quant_args(const QWeight& Wq, const void* x, int B, GemvEpilogue epi, void* out, int ldo = 0) {
    QGemvArgs a;
    a.W = Wq, a.x = x, a.B = B, a.epi = epi, a.out = out, a.ldo = ldo;
    a.ws = gemv_ws_.as<float>(), a.ws_floats = gemv_ws_.size() / 4;
    a.counters = gemv_cnt_.as<unsigned>(), a.n_counters = int(gemv_cnt_.size() / 4);
    a.norm_eps = cfg_.norm_eps;
    return a;
  }
  // Decode: y = W . rmsnorm(x) * norm_w, fused into the GEMV when it can be (bf16), else the
  // rmsnorm kernel into h_ and then the GEMV. x_is_fresh: x was not written by a residual GEMV
  // (the embedding), so there are no partial sums of squares in ss_ to use.
  void norm_gemv(float* x, const float* norm_w, const void* W, const QWeight& Wq, int B, int N, GemvEpilogue epi,
                 void* out, bool x_is_fresh = false) {
    if (fuse_norm_ != FuseNorm::kOff && !Wq.w) {
      const bool partials = fuse_norm_ == FuseNorm::kPartials && !x_is_fresh && all_bf16();
      gemv(W, x, B, N, dim_, epi, out, norm_w, partials ? ss_.as<float>() : nullptr);
    } else {
      rmsnorm(dt_, x, nullptr, norm_w, h_.get(), B, dim_, cfg_.norm_eps, stream_);
      tick("rmsnorm");
      lin(W, Wq, h_.get(), B, N, dim_, epi, out);
    }
  }
  // No linear layer is quantized (the partial sums of squares need every residual GEMV to be bf16).
  bool all_bf16() const { return !quant_ && lq_.empty(); }
  // The residual-add products (Wo, down): x += W . in, leaving the partial sums of squares of the
  // new x in ss_ for the next norm_gemv.
  void residual_lin(const void* Wb, const QWeight& Wq, const void* in, int B, int K, float* x) {
    if (fuse_norm_ == FuseNorm::kPartials && all_bf16())
      return gemv(Wb, in, B, dim_, K, GemvEpilogue::kAddF32, x, nullptr, nullptr, ss_.as<float>());
    lin(Wb, Wq, in, B, dim_, K, GemvEpilogue::kAddF32, x);
  }
  // IGNIS_FUSED_NORM: 0 (default) = separate rmsnorm kernels, 1 = fused into the register GEMV,
  // each block summing x^2 itself, 2 = fused, sums of squares from the previous residual GEMV's
  // epilogue. On an H200 (Llama-2-7B, batch 1, 2026-12-01) 0: 187.5 tok/s, 1: 177, 2: 176.5: the
  // normalisation in the GEMV's inner loop costs more than the 65 launches it saves. The fused
  // modes use the register GEMV (gemv.cu), not the bulk-copy one. A third variant, fused at batch
  // 1 only into the CUDA-core GEMV (x^2 summed in its inner loop beside the product with the fp32
  // x * norm_w), was slower again on an H200 (2026-12-02, 244 vs 253 tok/s: four times the bytes
  // of x per weight from L1) and was not kept.
  enum class FuseNorm { kOff, kSelf, kPartials };
  // CudaOptions::norm_fold / IGNIS_NORM_FOLD: the folded RMSNorm at batch 1 (fold_ok): every linear
  // layer bf16 on the CUDA-core GEMV, or int8 / int4 on a kernel that folds (cuda::quant_fold_ok).
  bool fold_ = false;
  int fold_parts_ = 0;  // partial sums per row the last fold_residual wrote (its consumer's rms_parts)
  bool fold_ok(int B) const {
    if (!fold_ || B != 1 || fuse_norm_ != FuseNorm::kOff || chain_ok(B) || !gemv_fold_ok(B)) return false;
    auto ok = [&](const QWeight& q) { return !q.w || quant_fold_ok(q, B); };
    for (const LayerQ& q : lq_)
      if (q.qkv_part[0].w || !ok(q.qkv) || !ok(q.o) || !ok(q.gu) || !ok(q.down)) return false;
    return ok(q_out_);
  }
  // Folded norm, consumer: out = epi(W . h_ / rms(x)), h_ = x * norm_w from the last fold_residual.
  void fold_lin(const void* Wb, const QWeight& Wq, int B, int N, GemvEpilogue epi, void* out) {
    auto fold = [&](auto& a) { a.rms_ss = ss_.as<float>(), a.rms_parts = fold_parts_; };
    if (Wq.w) {
      QGemvArgs a = quant_args(Wq, h_.get(), B, epi, out);
      fold(a);
      gemv_quant(a, stream_);
    } else {
      GemvArgs a = gemv_args(Wb, h_.get(), B, N, dim_, epi, out);
      fold(a);
      cuda::gemv(a, stream_);
    }
  }
  // Folded norm, producer: x += W . in, then h_ = x * next_norm_w and the partial sums of x^2 in ss_.
  void fold_residual(const void* Wb, const QWeight& Wq, const void* in, int B, int K, float* x,
                     const float* next_norm_w) {
    auto fold = [&](auto& a) { a.next_norm_w = next_norm_w, a.next_h = h_.get(), a.next_ss = ss_.as<float>(); };
    if (Wq.w) {
      QGemvArgs a = quant_args(Wq, in, B, GemvEpilogue::kAddF32, x);
      fold(a);
      fold_parts_ = gemv_quant(a, stream_);
    } else {
      GemvArgs a = gemv_args(Wb, in, B, dim_, K, GemvEpilogue::kAddF32, x);
      fold(a);
      fold_parts_ = cuda::gemv(a, stream_);
    }
  }
  FuseNorm fuse_norm_ = FuseNorm::kOff;
  // CudaOptions::decode_chain / IGNIS_DECODE_CHAIN: batch-1 decode through cuda::decode_chain.
  bool chain_ = false;
  bool chain_ring_ = false;  // the ring engine (decode_chain = 2 / IGNIS_DECODE_CHAIN=ring), where the shapes fit
  float ring_tail_ = 0.f;    // IGNIS_RING_TAIL: ChainArgs::ring_tail (for A/B)
  DeviceBuffer ring_ctr_;    // ChainArgs::ring_ctr
  DeviceBuffer chain_bar_;  // the chain kernel's grid barrier (one 64-bit count)
  bool chain_ok(int B) const {
    return chain_ && B == 1 && dt_ == DType::BF16 && all_bf16() && !q_out_.w && dim_ % 8 == 0 && qdim_ % 8 == 0;
  }
  // A decode chain step: y = W . in (in: bf16 vector) or W . rmsnorm(x) * norm_w (norm_w set).
  static cuda::ChainStep chain_step(const void* W, int N, int K, GemvEpilogue epi, void* out, const void* in,
                                    const float* norm_w) {
    cuda::ChainStep s;
    s.W = W, s.N = N, s.K = K, s.epi = epi, s.out = out, s.in = in, s.norm_w = norm_w;
    return s;
  }
  void run_chain(std::initializer_list<cuda::ChainStep> steps) {
    cuda::ChainArgs a;
    for (const auto& st : steps) a.step[a.n_steps++] = st;
    a.max_k = std::max({dim_, qdim_, hp_}), a.norm_k = dim_, a.x = x_.as<float>(), a.eps = cfg_.norm_eps;
    a.barrier = chain_bar_.as<unsigned long long>();
    a.ring = chain_ring_;
    if (chain_ring_ && ring_tail_ > 0.f) a.ring_tail = ring_tail_, a.ring_ctr = ring_ctr_.as<unsigned>();
    cuda::decode_chain(a, stream_);
    tick("chain");
  }
  bool warp_attn_ = true;   // CudaOptions::warp_attention / IGNIS_ATTN_DECODE: the warp decode attention kernel
  bool fused_rope_ = true;  // CudaOptions::fused_rope / IGNIS_FUSED_ROPE: RoPE + KV write in the attention
  DeviceBuffer ss_;  // [ceil(dim / 16)][max_batch] partial sums of squares of x (FuseNorm::kPartials)

  // Quantized linear layers, where a QWeight's w is set (else the bf16 copy of LayerW is used):
  // synthetic int8 / int4 (CudaOptions::quant: packed weights + bf16 scales in qweights_) or GGUF
  // blocks of a model file (gguf_w_, see plan_gguf). Prefill dequantizes tiles into deq_scratch_.
  struct LayerQ {
    QWeight qkv, o, gu, down;
    QWeight qkv_part[3];  // q, k, v as three weights when their GGUF types differ (qkv unset then)
  };
  bool quant_ = false;    // synthetic quantized model
  std::vector<LayerQ> lq_;  // empty: no quantized layers
  const LayerQ no_q_{};
  QWeight q_out_;
  DeviceBuffer qweights_, gguf_w_, deq_scratch_;
  int n_quant_weights_ = 0;
  static constexpr int kDeqTileRows = 1024;
  // q/k/v products of a layer (decode: from x through the attention RMSNorm; prefill: from h_).
  void qkv_decode(float* x, const LayerW& w, const LayerQ& q, int B, bool x_is_fresh);
  void qkv_prefill(const LayerW& w, const LayerQ& q, int n);
  // Decode product through the bf16 GEMV or the quantized one.
  void lin(const void* Wb, const QWeight& Wq, const void* x, int B, int N, int K, GemvEpilogue epi, void* out,
           int ldo = 0) {
    if (!Wq.w) return gemv(Wb, x, B, N, K, epi, out);
    gemv_quant(quant_args(Wq, x, B, epi, out, ldo), stream_);
  }
  // Prefill product (cuBLASLt on bf16, or dequantized tiles of the quantized weight).
  void lin_prefill(const void* Wb, const QWeight& Wq, const void* x, int M, int N, int K, DType out_t, void* y,
                   float beta, int ldy = 0) {
    if (!Wq.w) return gemm_->matmul(dt_, Wb, x, out_t, y, M, N, K, beta, stream_, ldy);
    linear_prefill_quant(*gemm_, Wq, x, M, out_t, y, beta, deq_scratch_.get(), kDeqTileRows, stream_, ldy);
  }

  LlamaConfig cfg_;
  CudaOptions opt_;
  DType dt_;
  size_t esz_;
  int dim_, nh_, nkv_, hd_, rd_, qdim_, kvdim_, qkvdim_, hidden_, hp_, vocab_, ctx_, rows_;
  float scale_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<LtGemm> gemm_;

  DeviceBuffer weights_;
  std::vector<LayerW> layers_;
  void* tok_embd_ = nullptr;
  void* w_out_ = nullptr;
  float* out_norm_ = nullptr;
  size_t weight_bytes_ = 0, step_weight_bytes_ = 0;

  DeviceBuffer kv_k_, kv_v_;
  size_t kv_layer_bytes_ = 0;
  DeviceBuffer inv_freq_;
  DeviceBuffer x_, h_, qkv_, q_, att_, gu_, ff_, logits_, sample_scratch_, counters_, step_dev_, pf_tokens_, pf_pos_;
  DeviceBuffer gemv_ws_, gemv_cnt_, attn_ws_, attn_cnt_;
  PinnedBuf<StepDev> step_host_;
  PinnedBuf<float> logits_host_;
  PinnedBuf<int> pf_tokens_host_, pf_pos_host_;
  uint64_t last_seed_ = ~uint64_t(0);

  std::map<std::pair<int, bool>, cudaGraphExec_t> graphs_;
  std::unique_ptr<Staging> staging_;
  std::vector<std::pair<const char*, cudaEvent_t>>* prof_ = nullptr;
  Clock::time_point t0_;
  double warmup_s_ = 0;
};

CudaLlamaImpl::CudaLlamaImpl(const LlamaConfig& cfg, const CudaOptions& opt, Clock::time_point t0,
                             const ModelSource* src)
    : cfg_(cfg), opt_(opt), dt_(opt.dtype), t0_(t0) {
  IGNIS_CHECK(dt_ == DType::BF16 || dt_ == DType::F32, "CUDA backend: dtype must be bf16 or f32, got ",
              dtype_name(dt_));
  IGNIS_CHECK(opt_.max_batch >= 1 && opt_.max_batch <= kMaxBatch, "CUDA backend: max_batch must be 1..", kMaxBatch,
              ", got ", opt_.max_batch);
  IGNIS_CHECK(opt_.prefill_chunk >= 1, "CUDA backend: prefill_chunk must be >= 1");
  esz_ = dt_ == DType::BF16 ? 2 : 4;
  dim_ = cfg.dim, nh_ = cfg.n_heads, nkv_ = cfg.n_kv_heads;
  hd_ = cfg.head_dim ? cfg.head_dim : cfg.dim / cfg.n_heads;
  rd_ = cfg.rope_dim ? cfg.rope_dim : hd_;
  qdim_ = nh_ * hd_, kvdim_ = nkv_ * hd_, qkvdim_ = qdim_ + 2 * kvdim_;
  hidden_ = cfg.hidden_dim, hp_ = (hidden_ + 7) / 8 * 8, vocab_ = cfg.vocab_size;
  {  // IGNIS_FUSED_NORM (see FuseNorm).
    const char* e = std::getenv("IGNIS_FUSED_NORM");
    const int v = opt.fused_norm >= 0 ? opt.fused_norm : e && *e ? std::atoi(e) : 0;
    IGNIS_CHECK(v >= 0 && v <= 2, "IGNIS_FUSED_NORM / CudaOptions::fused_norm must be 0, 1 or 2, got ", v);
    fuse_norm_ = !gemv_fused_norm_ok(dt_, dim_) || v == 0 || qdim_ % 8 != 0 ? FuseNorm::kOff
                 : v == 1                                ? FuseNorm::kSelf
                                                         : FuseNorm::kPartials;
  }
  {
    const char* e = std::getenv("IGNIS_FUSED_ROPE");
    fused_rope_ = opt.fused_rope >= 0 ? opt.fused_rope != 0 : !(e && std::strcmp(e, "0") == 0);
  }
  {
    const char* e = std::getenv("IGNIS_DECODE_CHAIN");
    chain_ = opt.decode_chain >= 0 ? opt.decode_chain != 0 : e && *e ? std::strcmp(e, "0") != 0 : kChainDefault;
    const bool want_ring = opt.decode_chain >= 0 ? opt.decode_chain == 2 : e && std::strcmp(e, "ring") == 0;
    // a ring stage holds at least one row (a gate / up pair) of every chained product; sm_90 for bulk copies
    const int max_k = std::max({dim_, qdim_, hp_});
    chain_ring_ = chain_ && want_ring && 4 * size_t(dim_) <= size_t(cuda::kRingStageBytes) &&
                  2 * size_t(max_k) <= size_t(cuda::kRingStageBytes) && max_k <= cuda::kRingMaxK &&
                  cuda::device_has_bulk_copy();
    const char* t = std::getenv("IGNIS_RING_TAIL");
    const float want_tail = opt.ring_tail >= 0.f ? opt.ring_tail : t && *t ? float(std::atof(t)) : 0.f;
    ring_tail_ = std::max(0.f, std::min(0.5f, want_tail));
  }
  {
    const char* e = std::getenv("IGNIS_ATTN_DECODE");
    IGNIS_CHECK(!e || !*e || std::strcmp(e, "warp") == 0 || std::strcmp(e, "tile") == 0,
                "IGNIS_ATTN_DECODE must be warp or tile, got ", e);
    warp_attn_ = opt.warp_attention >= 0 ? opt.warp_attention != 0 : !(e && std::strcmp(e, "tile") == 0);
  }
  {
    const char* e = std::getenv("IGNIS_NORM_FOLD");
    fold_ = opt.norm_fold >= 0 ? opt.norm_fold != 0 : !(e && std::strcmp(e, "0") == 0);
  }
  ctx_ = opt.context > 0 ? opt.context : std::min(cfg.max_seq_len > 0 ? cfg.max_seq_len : 4096, 4096);
  rows_ = std::max(opt_.prefill_chunk, opt_.max_batch);
  scale_ = 1.f / std::sqrt(float(hd_));
  IGNIS_CHECK(nkv_ > 0 && nh_ % nkv_ == 0 && hd_ % 2 == 0 && rd_ <= hd_, "CUDA backend: unsupported head layout (",
              nh_, " heads, ", nkv_, " kv heads, head_dim ", hd_, ")");

  QType synth_gguf{};  // a synthetic model in GGUF blocks (CudaOptions::quant q8_0 ... q6_k)
  const bool gguf_synth = !src && synthetic_gguf_type(opt_.quant, synth_gguf);
  IGNIS_CHECK(opt_.quant.empty() || opt_.quant == "int8" || opt_.quant == "int4" || gguf_synth,
              "CUDA backend: --quant must be int8 or int4 (or, for a synthetic model, a GGUF block type: q8_0, q4_0, "
              "q4_1, q4_k, q5_k, q6_k), got '", opt_.quant, "'");
  IGNIS_CHECK(opt_.quant_group == 32 || opt_.quant_group == 64 || opt_.quant_group == 128,
              "CUDA backend: the int4 group size must be 32, 64 or 128, got ", opt_.quant_group);
  quant_ = !opt_.quant.empty() && !gguf_synth;
  IGNIS_CHECK(!gguf_synth || dt_ == DType::BF16, "CUDA backend: GGUF block weights need --dtype bf16");
  IGNIS_CHECK(!quant_ || dt_ == DType::BF16, "CUDA backend: quantized weights need --dtype bf16");
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  gemm_ = std::make_unique<LtGemm>();
  {
    const char* e = std::getenv("IGNIS_GPU_DEQUANT");
    const bool dequant = opt_.gguf_dequant || (e && std::strcmp(e, "1") == 0);
    if (src && !quant_ && !dequant && dt_ == DType::BF16) plan_gguf(*src);
  }
  if (gguf_synth) plan_synthetic_gguf(synth_gguf);
  carve_weights();

  kv_layer_bytes_ = size_t(opt_.max_batch) * nkv_ * size_t(ctx_) * hd_ * esz_;
  kv_k_.alloc(kv_layer_bytes_ * cfg_.n_layers);
  kv_v_.alloc(kv_layer_bytes_ * cfg_.n_layers);
  CUDA_CHECK(cudaMemsetAsync(kv_k_.get(), 0, kv_k_.size(), stream_));
  CUDA_CHECK(cudaMemsetAsync(kv_v_.get(), 0, kv_v_.size(), stream_));

  const std::vector<float> inv = ref::rope_inv_freq(cfg_);
  inv_freq_.alloc(std::max<size_t>(1, inv.size()) * 4);
  CUDA_CHECK(cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));

  const size_t R = size_t(rows_);
  x_.alloc(R * dim_ * 4);
  h_.alloc(R * dim_ * esz_);
  qkv_.alloc(R * qkvdim_ * esz_);
  q_.alloc(R * qdim_ * esz_);
  att_.alloc(R * qdim_ * esz_);
  gu_.alloc(size_t(opt_.prefill_chunk) * 2 * hp_ * esz_);
  ff_.alloc(R * hp_ * esz_);
  const size_t lrows = size_t(std::max(kLogitRows, opt_.max_batch));
  logits_.alloc(lrows * vocab_ * 4);
  logits_host_.alloc(lrows * vocab_);
  sample_scratch_.alloc(size_t(kMaxBatch) * vocab_ * 4);
  counters_.alloc(kMaxBatch * 4);
  CUDA_CHECK(cudaMemsetAsync(counters_.get(), 0, counters_.size(), stream_));
  step_dev_.alloc(sizeof(StepDev));
  step_host_.alloc(1);
  std::memset(step_host_.p, 0, sizeof(StepDev));
  pf_tokens_.alloc(size_t(ctx_) * 4);
  pf_pos_.alloc(size_t(ctx_) * 4);
  pf_tokens_host_.alloc(size_t(ctx_));
  pf_pos_host_.alloc(size_t(ctx_));

  const int maxN = std::max({qkvdim_, dim_, 2 * hp_, vocab_});
  gemv_ws_.alloc(size_t(16) * opt_.max_batch * std::max({qkvdim_, dim_, 2 * hp_}) * 4);
  gemv_cnt_.alloc(size_t(ceil_div(maxN, 16)) * 4);
  // (the folded norm's producers write at most one partial per 4 rows: gemv_fold_parts)
  ss_.alloc(size_t(std::max(ceil_div(dim_, 16), gemv_fold_parts(dim_))) * opt_.max_batch * 4);
  CUDA_CHECK(cudaMemsetAsync(gemv_cnt_.get(), 0, gemv_cnt_.size(), stream_));
  const int max_splits = attn_decode_splits(1, nkv_, ctx_);
  attn_ws_.alloc(std::max<size_t>(4, attn_ws_floats(opt_.max_batch, nh_, hd_, max_splits) * 4));
  attn_cnt_.alloc(size_t(opt_.max_batch) * nkv_ * 4);  // decode: the last split block combines
  CUDA_CHECK(cudaMemsetAsync(attn_cnt_.get(), 0, attn_cnt_.size(), stream_));
  chain_bar_.alloc(sizeof(unsigned long long));
  ring_ctr_.alloc(cuda::kRingCounterWords * sizeof(unsigned));
  CUDA_CHECK(cudaMemsetAsync(ring_ctr_.get(), 0, ring_ctr_.size(), stream_));
  cuda::decode_chain_barrier_init(chain_bar_.as<unsigned long long>(), stream_);
}

CudaLlamaImpl::~CudaLlamaImpl() {
  for (auto& [k, g] : graphs_) cudaGraphExecDestroy(g);
  if (stream_) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

void CudaLlamaImpl::carve_weights() {
  const size_t L = size_t(cfg_.n_layers), d = size_t(dim_);
  std::vector<size_t> sizes;
  size_t total = 0;
  auto add = [&](size_t bytes) {
    const size_t off = total;
    total += align256(bytes);
    return off;
  };
  // Quantized layers live in qweights_ (carve_quant_weights) or gguf_w_ (carve_gguf_weights);
  // only the others get a bf16 / f32 copy here. step: bytes of those read by a decode step.
  constexpr size_t kNone = ~size_t(0);
  size_t step = 0;
  auto add_lin = [&](const QWeight& q, size_t n, size_t k) {
    if (quant_ || q.N > 0) return kNone;
    step += n * k * esz_;
    return add(n * k * esz_);
  };
  struct Off { size_t an, fn, b, qkv, o, gu, down; };
  std::vector<Off> offs(L);
  for (size_t l = 0; l < L; ++l) {
    const LayerQ& q = lq_.empty() ? no_q_ : lq_[l];
    offs[l].an = add(d * 4);
    offs[l].fn = add(d * 4);
    offs[l].b = cfg_.qkv_bias ? add(size_t(qkvdim_) * 4) : 0;
    offs[l].qkv = add_lin(q.qkv.N > 0 ? q.qkv : q.qkv_part[0], size_t(qkvdim_), d);
    offs[l].o = add_lin(q.o, d, size_t(qdim_));
    offs[l].gu = add_lin(q.gu, size_t(2) * hp_, d);
    offs[l].down = add_lin(q.down, d, size_t(hp_));
  }
  const size_t emb = add(size_t(vocab_) * d * esz_);
  const size_t onorm = add(d * 4);
  const bool head_is_emb = cfg_.tied_embeddings || quant_ || q_out_.N > 0;
  const size_t wout = head_is_emb ? emb : add(size_t(vocab_) * d * esz_);
  if (!quant_ && q_out_.N == 0) step += size_t(vocab_) * d * esz_;
  weights_.alloc(total);
  if (hp_ != hidden_) CUDA_CHECK(cudaMemsetAsync(weights_.get(), 0, total, stream_));  // zero padding
  char* base = weights_.as<char>();
  layers_.resize(L);
  for (size_t l = 0; l < L; ++l) {
    LayerW& w = layers_[l];
    w.attn_norm = reinterpret_cast<float*>(base + offs[l].an);
    w.ffn_norm = reinterpret_cast<float*>(base + offs[l].fn);
    w.bqkv = cfg_.qkv_bias ? reinterpret_cast<float*>(base + offs[l].b) : nullptr;
    auto at = [&](size_t off) -> void* { return off == kNone ? nullptr : base + off; };
    w.wqkv = at(offs[l].qkv);
    w.wo = at(offs[l].o);
    w.wgu = at(offs[l].gu);
    w.wdown = at(offs[l].down);
  }
  tok_embd_ = base + emb;
  out_norm_ = reinterpret_cast<float*>(base + onorm);
  w_out_ = base + wout;
  weight_bytes_ = total;
  step_weight_bytes_ = step;
  if (quant_) carve_quant_weights();
  if (!lq_.empty() && !quant_) carve_gguf_weights();
}

// Packed weights and bf16 scales of every quantized linear layer in one buffer. Bytes per
// [N, K] layer: int8 N K + 2 N; int4 N K / 2 + 2 N K / group.
void CudaLlamaImpl::carve_quant_weights() {
  const bool int8 = opt_.quant == "int8";
  const int group = opt_.quant_group;
  size_t total = 0;
  struct Pending { QWeight* q; size_t w, s; };
  std::vector<Pending> pend;
  auto plan = [&](QWeight& q, int N, int K) {
    IGNIS_CHECK(int8 ? K % 32 == 0 : K % group == 0, "--quant ", opt_.quant, ": a layer's input size ", K,
                int8 ? " is not a multiple of 32" : " is not a multiple of the group size " + std::to_string(group));
    q.type = int8 ? QType::kInt8 : QType::kInt4;
    q.scale_dtype = DType::BF16, q.zeros = nullptr, q.group = group, q.N = N, q.K = K;
    const size_t wb = int8 ? size_t(N) * K : size_t(N) * K / 2;
    const size_t sb = int8 ? size_t(N) * 2 : qmeta_count(N, K / group) * 2;  // int4: tiled, padded to 16 rows
    pend.push_back({&q, total, total + align256(wb)});
    total += align256(wb) + align256(sb);
  };
  lq_.resize(size_t(cfg_.n_layers));
  for (auto& q : lq_) {
    plan(q.qkv, qkvdim_, dim_);
    plan(q.o, dim_, qdim_);
    plan(q.gu, 2 * hp_, dim_);
    plan(q.down, dim_, hp_);
  }
  plan(q_out_, vocab_, dim_);
  qweights_.alloc(total);
  for (auto& p : pend) {
    p.q->w = qweights_.as<char>() + p.w;
    p.q->scales = qweights_.as<char>() + p.s;
  }
  deq_scratch_.alloc(size_t(kDeqTileRows) * std::max({dim_, qdim_, hp_}) * 2);
  step_weight_bytes_ = total;  // every packed layer and its scales, read once per decode step
  weight_bytes_ += total;
  n_quant_weights_ = 7 * cfg_.n_layers + 1;
}

// Which linear weights of a model file stay in their GGUF blocks: every one whose type has a
// kernel (gguf_qtype), with two constraints of the fused layouts. q/k/v of one type are one
// [q; k; v] weight; of different types (Q4_K_M files keep attn_v in Q6_K) three weights whose
// products write side by side into the qkv buffer. gate/up must share a type for the fused SwiGLU
// layout (padding rows up to hp: zero bytes, which are zero values in every block type); otherwise
// that layer's gate/up are dequantized to bf16, with a note.
// The output head stays quantized unless it is the (tied) embedding table.
void CudaLlamaImpl::plan_gguf(const ModelSource& src) {
  std::map<std::string, int> other_types;  // quantized types without a kernel -> tensors (dequantized)
  auto type_of = [&](const std::string& name, QType& t) {
    auto it = src.weights.find(name);
    if (it == src.weights.end() || it->second.ndim() != 2) return false;
    if (gguf_qtype(it->second.dtype(), t)) return true;
    if (is_quantized(it->second.dtype())) ++other_types[std::string(dtype_name(it->second.dtype()))];
    return false;
  };
  auto set = [](QWeight& q, QType t, int N, int K) { q = planned_gguf(t, N, K); };
  std::vector<LayerQ> lq(size_t(cfg_.n_layers));
  int any = 0, gu_mixed = 0;
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerQ& q = lq[size_t(l)];
    QType tq{}, tk{}, tv{}, to{}, tg{}, tu{}, td{};
    const bool hq = type_of(p + "attn_q.weight", tq), hk = type_of(p + "attn_k.weight", tk),
               hv = type_of(p + "attn_v.weight", tv);
    if (hq && hk && hv) {
      if (tq == tk && tk == tv) {
        set(q.qkv, tq, qkvdim_, dim_);
      } else {
        set(q.qkv_part[0], tq, qdim_, dim_);
        set(q.qkv_part[1], tk, kvdim_, dim_);
        set(q.qkv_part[2], tv, kvdim_, dim_);
      }
      any += 3;
    }
    if (type_of(p + "attn_output.weight", to)) set(q.o, to, dim_, qdim_), ++any;
    const bool hg = type_of(p + "ffn_gate.weight", tg), hu = type_of(p + "ffn_up.weight", tu);
    if (hg && hu && tg == tu) {
      set(q.gu, tg, 2 * hp_, dim_);
      any += 2;
    } else if (hg || hu) {
      ++gu_mixed;
    }
    if (type_of(p + "ffn_down.weight", td)) set(q.down, td, dim_, hp_), ++any;
  }
  QType tout{};
  if (!cfg_.tied_embeddings && type_of("output.weight", tout)) set(q_out_, tout, vocab_, dim_), ++any;
  if (gu_mixed)
    std::fprintf(stderr, "note: %s: %d layer(s) with ffn_gate / ffn_up of different or unsupported types: their "
                 "gate/up dequantized to bf16 on the GPU\n", src.path.c_str(), gu_mixed);
  if (!other_types.empty()) {
    std::string list;
    for (const auto& [name, n] : other_types) list += (list.empty() ? "" : ", ") + name + " x" + std::to_string(n);
    std::fprintf(stderr, "note: %s: tensors of types without GPU kernels dequantized to bf16 (%s)\n", src.path.c_str(),
                 list.c_str());
  }
  if (any) lq_ = std::move(lq);
  n_quant_weights_ = any;
}

void CudaLlamaImpl::plan_synthetic_gguf(QType t) {
  const int kb = t == QType::kQ4_K || t == QType::kQ5_K || t == QType::kQ6_K ? 256 : 32;
  IGNIS_CHECK(dim_ % kb == 0 && qdim_ % kb == 0 && hp_ % kb == 0, "synthetic model in ", opt_.quant,
              " blocks: the layer input sizes (", dim_, ", ", qdim_, ", ", hp_, ") must be multiples of ", kb);
  auto set = [t](QWeight& q, int N, int K) { q = planned_gguf(t, N, K); };
  lq_.assign(size_t(cfg_.n_layers), LayerQ{});
  for (LayerQ& q : lq_) {
    set(q.qkv, qkvdim_, dim_);
    set(q.o, dim_, qdim_);
    set(q.gu, 2 * hp_, dim_);
    set(q.down, dim_, hp_);
  }
  if (!cfg_.tied_embeddings) set(q_out_, vocab_, dim_);
  n_quant_weights_ = 7 * cfg_.n_layers + (cfg_.tied_embeddings ? 0 : 1);
}

// One buffer for all GGUF block weights kept quantized (each 256-byte aligned); deq_scratch_ for
// the prefill tiles. Their bytes are read once per decode step.
void CudaLlamaImpl::carve_gguf_weights() {
  size_t total = 0;
  std::vector<std::pair<QWeight*, size_t>> pend;
  auto plan = [&](QWeight& q) {
    if (q.N == 0) return;
    pend.emplace_back(&q, total);
    total += planned_bytes(q);
  };
  for (auto& q : lq_) {
    plan(q.qkv);
    for (auto& part : q.qkv_part) plan(part);
    plan(q.o);
    plan(q.gu);
    plan(q.down);
  }
  plan(q_out_);
  gguf_w_.alloc(std::max<size_t>(total, 256));
  // zero: the padding rows of a fused gate/up (none when hidden % 8 == 0) and alignment gaps
  CUDA_CHECK(cudaMemsetAsync(gguf_w_.get(), 0, gguf_w_.size(), stream_));
  for (auto& [q, off] : pend) {
    q->w = gguf_w_.as<char>() + off;
    if (q->type == QType::kInt4) {
      const size_t wb = align256(size_t(q->N) * q->K / 2), meta = align256(qmeta_count(q->N, q->K / 32) * 2);
      q->scales = gguf_w_.as<char>() + off + wb;
      if (q->mins) q->mins = gguf_w_.as<char>() + off + wb + meta;
    }
  }
  deq_scratch_.alloc(size_t(kDeqTileRows) * std::max({dim_, qdim_, hp_}) * 2);
  weight_bytes_ += total;
  step_weight_bytes_ += total;
}

// ---- weights ---------------------------------------------------------------------------------------

void CudaLlamaImpl::upload_vector(const Tensor& t, float* dst, int64_t n) {
  IGNIS_CHECK(t.numel() == n, "tensor of shape ", t.shape_str(), ": expected ", n, " values");
  std::vector<float> v(static_cast<size_t>(n));
  if (t.dtype() == DType::F32) {
    std::memcpy(v.data(), t.data(), size_t(n) * 4);
  } else if (t.dtype() == DType::F16) {
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = f16_to_f32(t.ptr<uint16_t>()[i]);
  } else if (t.dtype() == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = bf16_to_f32(t.ptr<uint16_t>()[i]);
  } else {
    quant::dequantize_row(t.dtype(), t.data(), v.data(), n);
  }
  CUDA_CHECK(cudaMemcpyAsync(dst, v.data(), size_t(n) * 4, cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}


template <typename Fill, typename Send>
void CudaLlamaImpl::staged_rows(int64_t rows, size_t bpr, Fill&& fill, Send&& send) {
  if (!staging_) staging_ = std::make_unique<Staging>();  // freed at the end of load_weights
  Staging* staging = staging_.get();
  IGNIS_CHECK(bpr * 8 <= Staging::kBytes, "tensor rows too large for the upload staging buffer");
  const int64_t chunk = int64_t(Staging::kBytes / bpr) / 8 * 8;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t nr = std::min(chunk, rows - r0);
    const int i = staging->next;
    staging->next ^= 1;
    CUDA_CHECK(cudaEventSynchronize(staging->done[i]));
    uint8_t* hbuf = staging->host[i].p;
    parallel_rows(nr, [&](int64_t a, int64_t b) { fill(hbuf, r0, a, b); });
    send(i, hbuf, r0, nr);
    CUDA_CHECK(cudaEventRecord(staging->done[i], stream_));
  }
}

void CudaLlamaImpl::upload_matrix(const Tensor& t, void* dst, int64_t rows, int64_t cols, int64_t dst_ld,
                                  int64_t row_offset, bool interleave8) {
  IGNIS_CHECK(t.ndim() == 2 && t.dim(0) == rows && t.dim(1) == cols, "tensor of shape ", t.shape_str(),
              ": expected [", rows, ", ", cols, "]");
  const bool plain = t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16;
  const DType stage_type = plain ? t.dtype() : DType::F32;
  const size_t bpr = plain ? t.row_bytes() : size_t(cols) * 4;
  staged_rows(
      rows, bpr,
      [&](uint8_t* hbuf, int64_t r0, int64_t a, int64_t b) {
        if (plain) {
          std::memcpy(hbuf + size_t(a) * bpr, t.row<uint8_t>(r0 + a), size_t(b - a) * bpr);
        } else {
          for (int64_t r = a; r < b; ++r)
            quant::dequantize_row(t.dtype(), t.row<uint8_t>(r0 + r), reinterpret_cast<float*>(hbuf) + r * cols, cols);
        }
      },
      [&](int i, const uint8_t* hbuf, int64_t r0, int64_t nr) {
        CUDA_CHECK(
            cudaMemcpyAsync(staging_->dev[i].get(), hbuf, size_t(nr) * bpr, cudaMemcpyHostToDevice, stream_));
        convert_matrix(stage_type, staging_->dev[i].get(), dt_, dst, nr, cols, dst_ld,
                       row_offset + (interleave8 ? 2 * r0 : r0), interleave8, stream_);
      });
}

// The rows of a GGUF block tensor copied as they are (row r to row row_offset + r of q, or to
// row_offset + swiglu_row_of_gate(r) for the fused gate/up layout), through the pinned staging
// buffers (the interleaved layout: a contiguous chunk, then one strided device copy of 8-row runs).
void CudaLlamaImpl::upload_blocks(const Tensor& t, const QWeight& q, int64_t rows, int64_t row_offset,
                                  bool interleave8) {
  QType tt{};
  IGNIS_CHECK(t.ndim() == 2 && t.dim(0) == rows && t.dim(1) == q.K, "tensor of shape ", t.shape_str(),
              ": expected [", rows, ", ", q.K, "]");
  const bool repack = q.type == QType::kInt4;  // Q4_0 / Q4_K repacked into int4 group 32 (planned_gguf)
  const QType want = !repack ? q.type : q.mins ? QType::kQ4_K : QType::kQ4_0;
  IGNIS_CHECK(gguf_qtype(t.dtype(), tt) && tt == want, "tensor of type ",
              dtype_name(t.dtype()), ": not the block type planned for it");
  const size_t rb = t.row_bytes();
  IGNIS_CHECK(rb == qrow_bytes(tt, q.K), "GGUF block rows of ", rb, " bytes: expected ", qrow_bytes(tt, q.K));
  char* dst = static_cast<char*>(const_cast<void*>(q.w));
  staged_rows(
      rows, rb,
      [&](uint8_t* hbuf, int64_t r0, int64_t a, int64_t b) {
        std::memcpy(hbuf + size_t(a) * rb, t.row<uint8_t>(r0 + a), size_t(b - a) * rb);
      },
      [&](int i, const uint8_t* hbuf, int64_t r0, int64_t nr) {
        if (repack) {
          CUDA_CHECK(cudaMemcpyAsync(staging_->dev[i].get(), hbuf, size_t(nr) * rb, cudaMemcpyHostToDevice, stream_));
          (q.mins ? repack_q4_k : repack_q4_0)(staging_->dev[i].get(), int(nr), r0, row_offset, interleave8, q,
                                               stream_);
          return;
        }
        if (!interleave8) {
          CUDA_CHECK(cudaMemcpyAsync(dst + size_t(row_offset + r0) * rb, hbuf, size_t(nr) * rb,
                                     cudaMemcpyHostToDevice, stream_));
          return;
        }
        // source rows r0 + 8t .. +7 -> rows row_offset + 2 r0 + 16t .. +7 (chunk % 8 == 0)
        char* sd = staging_->dev[i].as<char>();
        CUDA_CHECK(cudaMemcpyAsync(sd, hbuf, size_t(nr) * rb, cudaMemcpyHostToDevice, stream_));
        const int64_t groups = nr / 8, tail = nr % 8;  // a last group of < 8 rows (hidden % 8 != 0)
        if (groups)
          CUDA_CHECK(cudaMemcpy2DAsync(dst + size_t(row_offset + 2 * r0) * rb, 16 * rb, sd, 8 * rb, 8 * rb,
                                       size_t(groups), cudaMemcpyDeviceToDevice, stream_));
        if (tail)
          CUDA_CHECK(cudaMemcpyAsync(dst + size_t(row_offset + 2 * (r0 + 8 * groups)) * rb,
                                     sd + size_t(8 * groups) * rb, size_t(tail) * rb, cudaMemcpyDeviceToDevice,
                                     stream_));
      });
}

void CudaLlamaImpl::qkv_decode(float* x, const LayerW& w, const LayerQ& q, int B, bool x_is_fresh) {
  if (!q.qkv_part[0].w)
    return norm_gemv(x, w.attn_norm, w.wqkv, q.qkv, B, qkvdim_, GemvEpilogue::kStore, qkv_.get(), x_is_fresh);
  rmsnorm(dt_, x, nullptr, w.attn_norm, h_.get(), B, dim_, cfg_.norm_eps, stream_);
  tick("rmsnorm");
  const int col[3] = {0, qdim_, qdim_ + kvdim_};
  for (int i = 0; i < 3; ++i) {
    if (i) tick("gemv");
    lin(nullptr, q.qkv_part[i], h_.get(), B, q.qkv_part[i].N, dim_, GemvEpilogue::kStore,
        qkv_.as<char>() + size_t(col[i]) * esz_, qkvdim_);
  }
}

void CudaLlamaImpl::qkv_prefill(const LayerW& w, const LayerQ& q, int n) {
  if (!q.qkv_part[0].w) return lin_prefill(w.wqkv, q.qkv, h_.get(), n, qkvdim_, dim_, dt_, qkv_.get(), 0.f);
  const int col[3] = {0, qdim_, qdim_ + kvdim_};
  for (int i = 0; i < 3; ++i)
    lin_prefill(nullptr, q.qkv_part[i], h_.get(), n, q.qkv_part[i].N, dim_, dt_,
                qkv_.as<char>() + size_t(col[i]) * esz_, 0.f, qkvdim_);
}

void CudaLlamaImpl::load_weights(const ModelSource& src) {
  IGNIS_CHECK(!quant_, "CudaOptions::quant applies to synthetic models; quantize a model file at load time with ",
              "quant::open_model_for_inference (the CLI's --quant): its Q8_0 / Q4_0 blocks then run in place");
  auto get = [&](const std::string& name) -> const Tensor& {
    auto it = src.weights.find(name);
    if (it == src.weights.end()) fail(src.path, ": missing tensor '", name, "'");
    return it->second;
  };
  auto has = [&](const std::string& name) { return src.weights.count(name) > 0; };
  const int64_t d = dim_;
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerW& w = layers_[size_t(l)];
    upload_vector(get(p + "attn_norm.weight"), w.attn_norm, d);
    upload_vector(get(p + "ffn_norm.weight"), w.ffn_norm, d);
    const LayerQ& q = lq_.empty() ? no_q_ : lq_[size_t(l)];
    if (q.qkv.w) {
      upload_blocks(get(p + "attn_q.weight"), q.qkv, qdim_, 0, false);
      upload_blocks(get(p + "attn_k.weight"), q.qkv, kvdim_, qdim_, false);
      upload_blocks(get(p + "attn_v.weight"), q.qkv, kvdim_, qdim_ + kvdim_, false);
    } else if (q.qkv_part[0].w) {
      upload_blocks(get(p + "attn_q.weight"), q.qkv_part[0], qdim_, 0, false);
      upload_blocks(get(p + "attn_k.weight"), q.qkv_part[1], kvdim_, 0, false);
      upload_blocks(get(p + "attn_v.weight"), q.qkv_part[2], kvdim_, 0, false);
    } else {
      upload_matrix(get(p + "attn_q.weight"), w.wqkv, qdim_, d, d, 0, false);
      upload_matrix(get(p + "attn_k.weight"), w.wqkv, kvdim_, d, d, qdim_, false);
      upload_matrix(get(p + "attn_v.weight"), w.wqkv, kvdim_, d, d, qdim_ + kvdim_, false);
    }
    if (w.bqkv) {
      upload_vector(get(p + "attn_q.bias"), w.bqkv, qdim_);
      upload_vector(get(p + "attn_k.bias"), w.bqkv + qdim_, kvdim_);
      upload_vector(get(p + "attn_v.bias"), w.bqkv + qdim_ + kvdim_, kvdim_);
    }
    if (q.o.w)
      upload_blocks(get(p + "attn_output.weight"), q.o, d, 0, false);
    else
      upload_matrix(get(p + "attn_output.weight"), w.wo, d, qdim_, qdim_, 0, false);
    if (q.gu.w) {
      upload_blocks(get(p + "ffn_gate.weight"), q.gu, hidden_, 0, true);
      upload_blocks(get(p + "ffn_up.weight"), q.gu, hidden_, 8, true);
    } else {
      upload_matrix(get(p + "ffn_gate.weight"), w.wgu, hidden_, d, d, 0, true);
      upload_matrix(get(p + "ffn_up.weight"), w.wgu, hidden_, d, d, 8, true);
    }
    if (q.down.w)
      upload_blocks(get(p + "ffn_down.weight"), q.down, d, 0, false);
    else
      upload_matrix(get(p + "ffn_down.weight"), w.wdown, d, hidden_, hp_, 0, false);
  }
  upload_matrix(get("token_embd.weight"), tok_embd_, vocab_, d, d, 0, false);
  upload_vector(get("output_norm.weight"), out_norm_, d);
  if (q_out_.w) {
    upload_blocks(get("output.weight"), q_out_, vocab_, 0, false);
  } else if (!cfg_.tied_embeddings) {
    if (has("output.weight"))
      upload_matrix(get("output.weight"), w_out_, vocab_, d, d, 0, false);
    else  // a file without an output head uses the embedding (tied), although the config did not say so
      CUDA_CHECK(cudaMemcpyAsync(w_out_, tok_embd_, size_t(vocab_) * d * esz_, cudaMemcpyDeviceToDevice, stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  staging_.reset();
}

void CudaLlamaImpl::init_random(uint64_t seed) {
  uint64_t s = seed * 1000003ull;
  auto mat = [&](void* p, size_t rows, size_t cols) {
    fill_random(dt_, p, rows * cols, ++s, std::sqrt(3.f / float(cols)), 0.f, stream_);
  };
  auto norm = [&](float* p, size_t n) { fill_random(DType::F32, p, n, ++s, 0.1f, 1.f, stream_); };
  const size_t d = size_t(dim_);
  for (auto& w : layers_) {
    norm(w.attn_norm, d);
    norm(w.ffn_norm, d);
    if (w.bqkv) fill_random(DType::F32, w.bqkv, size_t(qkvdim_), ++s, 0.02f, 0.f, stream_);
    if (quant_) continue;
    // (null where the layer lives in GGUF blocks: filled below)
    if (w.wqkv) mat(w.wqkv, size_t(qkvdim_), d);
    if (w.wo) mat(w.wo, d, size_t(qdim_));
    if (w.wgu) mat(w.wgu, size_t(2) * hp_, d);
    if (w.wdown) mat(w.wdown, d, size_t(hp_));
  }
  fill_random(dt_, tok_embd_, size_t(vocab_) * d, ++s, 1.f, 0.f, stream_);
  norm(out_norm_, d);
  if (!cfg_.tied_embeddings && !quant_ && q_out_.N == 0) mat(w_out_, size_t(vocab_), d);
  if (!quant_ && !lq_.empty()) {  // synthetic GGUF blocks: random bytes, scales of the bf16 model's size
    DeviceBuffer raw;  // repacked Q4_0 / Q4_K: random blocks here first, then repacked (as a model file's)
    auto bmat = [&](const QWeight& q) {
      if (q.N == 0) return;
      if (q.type != QType::kInt4) return fill_random_blocks(q, ++s, std::sqrt(3.f / float(q.K)), stream_);
      QWeight blocks = q;
      blocks.type = q.mins ? QType::kQ4_K : QType::kQ4_0;
      const size_t bytes = size_t(q.N) * qrow_bytes(blocks.type, q.K);
      if (raw.size() < bytes) {
        CUDA_CHECK(cudaStreamSynchronize(stream_));
        raw.alloc(bytes);
      }
      blocks.w = raw.get();
      fill_random_blocks(blocks, ++s, std::sqrt(3.f / float(q.K)), stream_);
      (q.mins ? repack_q4_k : repack_q4_0)(raw.get(), q.N, 0, 0, false, q, stream_);
    };
    for (const auto& q : lq_) {
      bmat(q.qkv);
      for (const auto& part : q.qkv_part) bmat(part);
      bmat(q.o);
      bmat(q.gu);
      bmat(q.down);
    }
    bmat(q_out_);
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // raw is freed here
  }
  if (quant_) {
    // random packed values (any byte is a valid int8 pair of nibbles) and positive scales of
    // the size that gives the bf16 model's weight range
    auto qmat = [&](const QWeight& q) {
      const bool int8 = q.type == QType::kInt8;
      const size_t wbytes = int8 ? size_t(q.N) * q.K : size_t(q.N) * q.K / 2;
      fill_random(DType::F32, const_cast<void*>(q.w), wbytes / 4, ++s, 1.f, 0.f, stream_);
      const size_t ns = int8 ? size_t(q.N) : qmeta_count(q.N, q.K / q.group);
      const float sc = std::sqrt(3.f / float(q.K)) / (int8 ? 127.f : 8.f);
      fill_random(DType::BF16, const_cast<void*>(q.scales), ns, ++s, 0.5f * sc, sc, stream_);
    };
    for (const auto& q : lq_) {
      qmat(q.qkv);
      qmat(q.o);
      qmat(q.gu);
      qmat(q.down);
    }
    qmat(q_out_);
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// int4 layers (of any origin: --quant, GPTQ checkpoints, repacked GGUF Q4_0 / Q4_K) into the tiled
// nibble order of the tensor-core GEMV (tile_int4), once every weight is in place.
// IGNIS_INT4_TILED=0|1 (A/B measurements; on by default).
void CudaLlamaImpl::tile_int4_weights() {
  static const bool on = [] {
    const char* e = std::getenv("IGNIS_INT4_TILED");
    return e ? *e == '1' : kInt4TiledDefault;
  }();
  if (!on) return;
  std::vector<QWeight*> ws;
  auto add = [&](QWeight& q) {
    if (q.w && q.type == QType::kInt4 && !q.tiled && q.N % 16 == 0 && cuda::int4_tc_supported(q))  // (K % 128 too)
      ws.push_back(&q);
  };
  for (auto& q : lq_) add(q.qkv), add(q.o), add(q.gu), add(q.down);
  add(q_out_);
  if (ws.empty()) return;
  // the scratch: the largest weight, at most 64 MiB (tile_int4 reorders in chunks of whole 16-row tiles), at
  // least one tile of the widest weight
  size_t need = 0, tile = 0;
  for (const QWeight* q : ws) need = std::max(need, size_t(q->N) * q->K / 2), tile = std::max(tile, size_t(8) * q->K);
  need = std::max(tile, std::min<size_t>(need, size_t(64) << 20));
  DeviceBuffer scratch;
  try {
    scratch.alloc(need);
  } catch (const Error&) {  // the row-major layout is correct too, only slower
    std::fprintf(stderr, "note: no GPU memory left for the %.0f MiB scratch that reorders the int4 weights for "
                 "faster decoding: they stay row-major\n", double(need) / (1 << 20));
    return;
  }
  for (QWeight* q : ws) cuda::tile_int4(*q, scratch.get(), scratch.size(), stream_);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaLlamaImpl::finish_warmup() {
  tile_int4_weights();
  // One eager step (sets kernel attributes, loads modules), then capture the batch-1 graphs.
  const int32_t tok = 0;
  SamplingParams sp;
  set_step(&tok, 1, 0, &sp);
  enqueue_decode(1, true);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (opt_.cuda_graphs) {
    run_decode(1, false);
    run_decode(1, true);
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  warmup_s_ = std::chrono::duration<double>(Clock::now() - t0_).count();
}

// ---- decode --------------------------------------------------------------------------------------

void CudaLlamaImpl::check_range(int slot, int n, int pos) const {
  IGNIS_CHECK(slot >= 0 && slot < opt_.max_batch, "sequence slot ", slot, " out of range (max_batch ",
              opt_.max_batch, ")");
  IGNIS_CHECK(n >= 1, "no tokens to process");
  IGNIS_CHECK(pos >= 0 && int64_t(pos) + n <= ctx_, "positions [", pos, ", ", int64_t(pos) + n,
              ") exceed the context of ", ctx_, " tokens");
}

void CudaLlamaImpl::set_step(const int32_t* tokens, int B, int pos, const SamplingParams* sp) {
  StepDev& s = *step_host_.p;
  for (int b = 0; b < B; ++b) {
    IGNIS_CHECK(tokens[b] >= 0 && tokens[b] < vocab_, "token id ", tokens[b], " out of range [0, ", vocab_, ")");
    s.tokens[b] = tokens[b];
    s.pos[b] = pos;
  }
  if (sp) {
    s.sp.temperature = sp->temperature;
    s.sp.top_k = sp->top_k;
    s.sp.top_p = sp->top_p;
    s.sp.seed_lo = uint32_t(sp->seed);
    s.sp.seed_hi = uint32_t(sp->seed >> 32);
    if (sp->seed != last_seed_) {
      CUDA_CHECK(cudaMemsetAsync(counters_.get(), 0, counters_.size(), stream_));
      last_seed_ = sp->seed;
    }
  }
  CUDA_CHECK(cudaMemcpyAsync(step_dev_.get(), step_host_.p, offsetof(StepDev, sampled), cudaMemcpyHostToDevice,
                             stream_));
}

void CudaLlamaImpl::enqueue_decode(int B, bool sample) {
  StepDev* sd = step_dev_.as<StepDev>();
  float* x = x_.as<float>();
  embed(dt_, tok_embd_, sd->tokens, B, dim_, vocab_, x, stream_);
  tick("embed");
  const int splits = attn_decode_splits(B, nkv_, ctx_);
  const bool chain = chain_ok(B);
  const bool fold = fold_ok(B);  // layer 0's norm runs as a kernel (x comes from the embedding), the others fold
  const int L = cfg_.n_layers;
  if (chain) run_chain({chain_step(layers_[0].wqkv, qkvdim_, dim_, GemvEpilogue::kStore, qkv_.get(), nullptr,
                                   layers_[0].attn_norm)});
  for (int l = 0; l < L; ++l) {
    const LayerW& w = layers_[size_t(l)];
    const LayerQ& q = lq_.empty() ? no_q_ : lq_[size_t(l)];
    if (!chain) {
      if (fold && l > 0)
        fold_lin(w.wqkv, q.qkv, B, qkvdim_, GemvEpilogue::kStore, qkv_.get());
      else
        qkv_decode(x, w, q, B, l == 0);
      tick("gemv");
    }
    if (!fused_rope_) {
      RopeArgs r;
      r.dtype = dt_, r.qkv = qkv_.get(), r.bias = w.bqkv, r.q_out = q_.get();
      r.k_cache = layer_k(l), r.v_cache = layer_v(l), r.pos = sd->pos, r.n = B, r.q_per_seq = 1, r.slot0 = 0;
      r.nh = nh_, r.nkv = nkv_, r.hd = hd_, r.ctx = ctx_, r.rope_dim = rd_, r.style = cfg_.rope_style;
      r.inv_freq = inv_freq_.as<float>();
      rope_kv(r, stream_);
      tick("rope+kv");
    }
    AttnArgs a;
    a.dtype = dt_, a.q = q_.get(), a.k_cache = layer_k(l), a.v_cache = layer_v(l), a.out = att_.get();
    a.pos = sd->pos, a.n = B, a.q_per_seq = 1, a.slot0 = 0, a.nh = nh_, a.nkv = nkv_, a.hd = hd_, a.ctx = ctx_;
    a.scale = scale_, a.n_splits = splits, a.ws = attn_ws_.as<float>(), a.ws_floats = attn_ws_.size() / 4;
    a.counters = attn_cnt_.as<unsigned>();
    a.impl = warp_attn_ && attn_warp_supported(a) ? AttnImpl::kWarp : AttnImpl::kGeneric;
    if (fused_rope_) {
      a.rope_qkv = qkv_.get(), a.rope_bias = w.bqkv, a.inv_freq = inv_freq_.as<float>();
      a.rope_dim = rd_, a.style = cfg_.rope_style;
    }
    attention(a, stream_);
    tick("attention");
    if (chain) {  // o, gate/up, down, then the next layer's q/k/v or the output head: one kernel
      const cuda::ChainStep next =
          l + 1 < L ? chain_step(layers_[size_t(l) + 1].wqkv, qkvdim_, dim_, GemvEpilogue::kStore, qkv_.get(), nullptr,
                                 layers_[size_t(l) + 1].attn_norm)
                    : chain_step(w_out_, vocab_, dim_, GemvEpilogue::kStoreF32, logits_.get(), nullptr, out_norm_);
      run_chain({chain_step(w.wo, dim_, qdim_, GemvEpilogue::kAddF32, x, att_.get(), nullptr),
                 chain_step(w.wgu, 2 * hp_, dim_, GemvEpilogue::kSwiGLU, ff_.get(), nullptr, w.ffn_norm),
                 chain_step(w.wdown, dim_, hp_, GemvEpilogue::kAddF32, x, ff_.get(), nullptr), next});
      continue;
    }
    if (fold) {
      fold_residual(w.wo, q.o, att_.get(), B, qdim_, x, w.ffn_norm);
      tick("gemv");
      fold_lin(w.wgu, q.gu, B, 2 * hp_, GemvEpilogue::kSwiGLU, ff_.get());
      tick("gemv");
      fold_residual(w.wdown, q.down, ff_.get(), B, hp_, x, l + 1 < L ? layers_[size_t(l) + 1].attn_norm : out_norm_);
      tick("gemv");
      continue;
    }
    residual_lin(w.wo, q.o, att_.get(), B, qdim_, x);
    tick("gemv");
    norm_gemv(x, w.ffn_norm, w.wgu, q.gu, B, 2 * hp_, GemvEpilogue::kSwiGLU, ff_.get());
    tick("gemv");
    residual_lin(w.wdown, q.down, ff_.get(), B, hp_, x);
    tick("gemv");
  }
  if (fold) {
    fold_lin(w_out_, q_out_, B, vocab_, GemvEpilogue::kStoreF32, logits_.get());
    tick("gemv");
  } else if (!chain) {
    norm_gemv(x, out_norm_, w_out_, q_out_, B, vocab_, GemvEpilogue::kStoreF32, logits_.get());
    tick("gemv");
  }
  if (sample)
    cuda::sample(logits_.as<float>(), B, vocab_, vocab_, &sd->sp, counters_.as<uint32_t>(),
                 sample_scratch_.as<float>(), sd->sampled, stream_);
}

void CudaLlamaImpl::tick(const char* category) {
  if (!prof_) return;
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreate(&e));
  prof_->emplace_back(category, e);
  CUDA_CHECK(cudaEventRecord(e, stream_));
}

std::vector<std::pair<std::string, double>> CudaLlamaImpl::profile_decode_step(int B, int pos) {
  IGNIS_CHECK(B >= 1 && B <= opt_.max_batch, "batch of ", B, " sequences exceeds max_batch ", opt_.max_batch);
  check_range(0, 1, pos);
  std::vector<int32_t> toks(static_cast<size_t>(B), 0);
  set_step(toks.data(), B, pos, nullptr);
  std::vector<std::pair<const char*, cudaEvent_t>> marks;
  cudaEvent_t start;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventRecord(start, stream_));
  prof_ = &marks;
  std::exception_ptr err;
  try {
    enqueue_decode(B, false);
  } catch (...) {
    err = std::current_exception();
  }
  prof_ = nullptr;
  cudaStreamSynchronize(stream_);
  std::vector<std::pair<std::string, double>> out;
  cudaEvent_t prev = start;
  double total = 0;
  for (auto& mark : marks) {
    const auto& cat = mark.first;  // not a structured binding: clang 14 cannot capture those
    auto& e = mark.second;
    float ms = 0;
    if (!err) CUDA_CHECK(cudaEventElapsedTime(&ms, prev, e));
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == cat; });
    if (it == out.end()) out.emplace_back(cat, ms); else it->second += ms;
    total += ms;
    if (prev != start) cudaEventDestroy(prev);
    prev = e;
  }
  if (prev != start) cudaEventDestroy(prev);
  cudaEventDestroy(start);
  if (err) std::rethrow_exception(err);
  out.emplace_back("total (kernels one by one)", total);
  return out;
}

void CudaLlamaImpl::run_decode(int B, bool sample) {
  if (!opt_.cuda_graphs) return enqueue_decode(B, sample);
  auto& exec = graphs_[{B, sample}];
  if (!exec) {
    cudaGraph_t g = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_decode(B, sample);
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      graphs_.erase({B, sample});
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
      graphs_.erase({B, sample});
      CUDA_CHECK(e);
    }
  }
  CUDA_CHECK(cudaGraphLaunch(exec, stream_));
}

const float* CudaLlamaImpl::decode_batch(const int32_t* tokens, int B, int pos) {
  IGNIS_CHECK(B >= 1 && B <= opt_.max_batch, "batch of ", B, " sequences exceeds max_batch ", opt_.max_batch);
  check_range(0, 1, pos);
  set_step(tokens, B, pos, nullptr);
  run_decode(B, false);
  CUDA_CHECK(cudaMemcpyAsync(logits_host_.p, logits_.get(), size_t(B) * vocab_ * 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return logits_host_.p;
}

void CudaLlamaImpl::decode_batch_sample(const int32_t* tokens, int B, int pos, const SamplingParams& sp,
                                        int32_t* out) {
  IGNIS_CHECK(B >= 1 && B <= opt_.max_batch, "batch of ", B, " sequences exceeds max_batch ", opt_.max_batch);
  check_range(0, 1, pos);
  set_step(tokens, B, pos, &sp);
  run_decode(B, true);
  StepDev* sd = step_dev_.as<StepDev>();
  CUDA_CHECK(cudaMemcpyAsync(step_host_.p->sampled, sd->sampled, size_t(B) * 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::memcpy(out, step_host_.p->sampled, size_t(B) * 4);
}

// ---- prefill ---------------------------------------------------------------------------------------

void CudaLlamaImpl::enqueue_prefill_chunk(int slot, int tok_off, int pos_idx, int n) {
  float* x = x_.as<float>();
  const int* pos = pf_pos_.as<int>() + pos_idx;
  embed(dt_, tok_embd_, pf_tokens_.as<int>() + tok_off, n, dim_, vocab_, x, stream_);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const LayerW& w = layers_[size_t(l)];
    rmsnorm(dt_, x, nullptr, w.attn_norm, h_.get(), n, dim_, cfg_.norm_eps, stream_);
    const LayerQ& q = lq_.empty() ? no_q_ : lq_[size_t(l)];
    qkv_prefill(w, q, n);
    RopeArgs r;
    r.dtype = dt_, r.qkv = qkv_.get(), r.bias = w.bqkv, r.q_out = q_.get();
    r.k_cache = layer_k(l), r.v_cache = layer_v(l), r.pos = pos, r.n = n, r.q_per_seq = n, r.slot0 = slot;
    r.nh = nh_, r.nkv = nkv_, r.hd = hd_, r.ctx = ctx_, r.rope_dim = rd_, r.style = cfg_.rope_style;
    r.inv_freq = inv_freq_.as<float>();
    rope_kv(r, stream_);
    AttnArgs a;
    a.dtype = dt_, a.q = q_.get(), a.k_cache = layer_k(l), a.v_cache = layer_v(l), a.out = att_.get();
    a.pos = pos, a.n = n, a.q_per_seq = n, a.slot0 = slot, a.nh = nh_, a.nkv = nkv_, a.hd = hd_, a.ctx = ctx_;
    a.scale = scale_, a.n_splits = 1;
    attention(a, stream_);
    lin_prefill(w.wo, q.o, att_.get(), n, dim_, qdim_, DType::F32, x, 1.f);
    rmsnorm(dt_, x, nullptr, w.ffn_norm, h_.get(), n, dim_, cfg_.norm_eps, stream_);
    lin_prefill(w.wgu, q.gu, h_.get(), n, 2 * hp_, dim_, dt_, gu_.get(), 0.f);
    swiglu(dt_, gu_.get(), ff_.get(), n, hp_, stream_);
    lin_prefill(w.wdown, q.down, ff_.get(), n, dim_, hp_, DType::F32, x, 1.f);
  }
}

void CudaLlamaImpl::last_logits(int row, int) {
  rmsnorm(dt_, x_.as<float>() + size_t(row) * dim_, nullptr, out_norm_, h_.get(), 1, dim_, cfg_.norm_eps, stream_);
  lin(w_out_, q_out_, h_.get(), 1, vocab_, dim_, GemvEpilogue::kStoreF32, logits_.get());
}

void CudaLlamaImpl::prefill(int slot, const int32_t* tokens, int n, int pos, std::vector<float>* all_logits) {
  check_range(slot, n, pos);
  for (int i = 0; i < n; ++i) {
    IGNIS_CHECK(tokens[i] >= 0 && tokens[i] < vocab_, "token id ", tokens[i], " out of range [0, ", vocab_, ")");
    pf_tokens_host_.p[i] = tokens[i];
  }
  const int chunk = opt_.prefill_chunk;
  const int n_chunks = ceil_div(n, chunk);
  for (int c = 0; c < n_chunks; ++c) pf_pos_host_.p[c] = pos + c * chunk;
  CUDA_CHECK(cudaMemcpyAsync(pf_tokens_.get(), pf_tokens_host_.p, size_t(n) * 4, cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(pf_pos_.get(), pf_pos_host_.p, size_t(n_chunks) * 4, cudaMemcpyHostToDevice, stream_));
  if (all_logits) all_logits->assign(size_t(n) * vocab_, 0.f);
  for (int c = 0; c < n_chunks; ++c) {
    const int m = std::min(chunk, n - c * chunk);
    enqueue_prefill_chunk(slot, c * chunk, c, m);
    if (all_logits) {
      rmsnorm(dt_, x_.as<float>(), nullptr, out_norm_, h_.get(), m, dim_, cfg_.norm_eps, stream_);
      for (int r0 = 0; r0 < m; r0 += kLogitRows) {
        const int rr = std::min(kLogitRows, m - r0);
        lin_prefill(w_out_, q_out_, h_.as<char>() + size_t(r0) * dim_ * esz_, rr, vocab_, dim_, DType::F32,
                    logits_.get(), 0.f);
        CUDA_CHECK(cudaMemcpyAsync(all_logits->data() + (size_t(c) * chunk + r0) * vocab_, logits_.get(),
                                   size_t(rr) * vocab_ * 4, cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
      }
    } else if (c == n_chunks - 1) {
      last_logits(m - 1, m);
    }
  }
}

const float* CudaLlamaImpl::forward_slot(int slot, const int32_t* tokens, int n, int pos) {
  if (n == 1 && slot == 0) return decode_batch(tokens, 1, pos);
  prefill(slot, tokens, n, pos, nullptr);
  CUDA_CHECK(cudaMemcpyAsync(logits_host_.p, logits_.get(), size_t(vocab_) * 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return logits_host_.p;
}

std::vector<float> CudaLlamaImpl::forward_all(const int32_t* tokens, int n, int pos) {
  std::vector<float> out;
  prefill(0, tokens, n, pos, &out);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return out;
}

int32_t CudaLlamaImpl::prefill_sample(int slot, const int32_t* tokens, int n, int pos, const SamplingParams& sp) {
  prefill(slot, tokens, n, pos, nullptr);
  // sampling parameters only (tokens / positions of the decode step are left alone)
  StepDev& s = *step_host_.p;
  s.sp.temperature = sp.temperature, s.sp.top_k = sp.top_k, s.sp.top_p = sp.top_p;
  s.sp.seed_lo = uint32_t(sp.seed), s.sp.seed_hi = uint32_t(sp.seed >> 32);
  if (sp.seed != last_seed_) {
    CUDA_CHECK(cudaMemsetAsync(counters_.get(), 0, counters_.size(), stream_));
    last_seed_ = sp.seed;
  }
  StepDev* sd = step_dev_.as<StepDev>();
  CUDA_CHECK(cudaMemcpyAsync(&sd->sp, &s.sp, sizeof(SamplingParamsDev), cudaMemcpyHostToDevice, stream_));
  cuda::sample(logits_.as<float>(), 1, vocab_, vocab_, &sd->sp, counters_.as<uint32_t>() + slot,
               sample_scratch_.as<float>(), sd->sampled + slot, stream_);
  CUDA_CHECK(cudaMemcpyAsync(&s.sampled[slot], sd->sampled + slot, 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return s.sampled[slot];
}

void init_device(int device) {
  IGNIS_CHECK(device_count() > 0, "no CUDA GPU found (the CUDA backend needs one)");
  IGNIS_CHECK(device >= 0 && device < device_count(), "CUDA device ", device, " does not exist (", device_count(),
              " found)");
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaFree(nullptr));  // create the context now, outside the warm-up time
}

}  // namespace

LlamaConfig synthetic_llama_config(const std::string& shape) {
  LlamaConfig c;
  c.name = shape + " (synthetic)";
  c.rope_style = RopeStyle::kHalfSplit;
  c.norm_eps = 1e-5f;
  auto set = [&](int dim, int layers, int heads, int kv, int hidden, int vocab, float theta, int max_seq) {
    c.dim = dim, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv, c.hidden_dim = hidden;
    c.vocab_size = vocab, c.rope_theta = theta, c.max_seq_len = max_seq;
    c.head_dim = dim / heads, c.rope_dim = c.head_dim;
  };
  if (shape == "llama-2-7b") {
    set(4096, 32, 32, 32, 11008, 32000, 10000.f, 4096);
  } else if (shape == "llama-3-8b") {
    set(4096, 32, 32, 8, 14336, 128256, 500000.f, 8192);
  } else if (shape == "llama-2-13b") {
    set(5120, 40, 40, 40, 13824, 32000, 10000.f, 4096);
  } else if (shape == "smollm2-135m") {
    set(576, 30, 9, 3, 1536, 49152, 100000.f, 8192);
    c.tied_embeddings = true;
  } else {
    fail("unknown synthetic model shape '", shape, "' (known: llama-2-7b, llama-3-8b, llama-2-13b, smollm2-135m)");
  }
  return c;
}

std::unique_ptr<CudaLlama> make_cuda_llama(const ModelSource& src, const CudaOptions& opt) {
  init_device(opt.device);
  src.config.validate(src.path);
  const auto t0 = Clock::now();
  auto m = std::make_unique<CudaLlamaImpl>(src.config, opt, t0, &src);
  m->load_weights(src);
  m->finish_warmup();
  return m;
}

std::unique_ptr<CudaLlama> make_synthetic_cuda_llama(const std::string& shape, const CudaOptions& opt, uint64_t seed) {
  const LlamaConfig cfg = synthetic_llama_config(shape);
  init_device(opt.device);
  const auto t0 = Clock::now();
  auto m = std::make_unique<CudaLlamaImpl>(cfg, opt, t0);
  m->init_random(seed);
  m->finish_warmup();
  return m;
}

}  // namespace ignis
