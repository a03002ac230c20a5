// CudaEncoder (see bert_cuda.h): weights, activations, the per-bucket CUDA graphs, the heads.
// Host code only; the kernels are in encoder_*.cu, the GEMMs in encoder_gemm.cu.
#include "cuda/bert_cuda.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "cuda/common.h"
#include "cuda/device.h"
#include "cuda/encoder_gemm.h"
#include "cuda/encoder_kernels.h"

namespace ignis {
namespace {

using namespace cuda;
using Clock = std::chrono::steady_clock;

constexpr size_t kAlign = 256;  // cuBLASLt's default pointer alignment assumption
constexpr int kHeader = 8;      // ints before the tile list in the per-call input block

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::vector<float> to_float(const Tensor& t, const std::string& name) {
  IGNIS_CHECK(t.device() == Device::CPU, "encoder weight '", name, "' must be in host memory");
  const size_t n = size_t(t.numel());
  std::vector<float> v(n);
  switch (t.dtype()) {
    case DType::F32: std::memcpy(v.data(), t.data(), n * 4); break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) v[i] = f16_to_f32(t.ptr<const uint16_t>()[i]);
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(t.ptr<const uint16_t>()[i]);
      break;
    default: fail("encoder weight '", name, "': dtype ", dtype_name(t.dtype()), " is not supported (F32, F16, BF16)");
  }
  return v;
}

// Weights of one layer (device pointers into the weight pool).
// Split-K for the products before an add + LayerNorm at small buckets (launch-bound): FFN2 (and
// optionally the attention output projection) runs as `splits` fp32 k slices in one batched cuBLASLt
// call and the add + LayerNorm sums the slices with the bias (encoder_add_parts_layernorm): one kernel
// fewer per product than cuBLASLt's own split-K, whose reduction is a kernel of its own (~4 us at
// 1x128 on an H200). IGNIS_ENC_SPLITK=ffn2,wo,max_rows (e.g. "4,0,512"; 0 = off) for measurements.
struct SplitK {
  int ffn2 = 4, wo = 0, max_rows = 512;
};
const SplitK& split_k() {
  static const SplitK s = [] {
    SplitK k;
    if (const char* e = std::getenv("IGNIS_ENC_SPLITK")) {
      int v[3] = {k.ffn2, k.wo, k.max_rows};
      const char* p = e;
      for (int i = 0; i < 3 && *p; ++i) {
        char* end = nullptr;
        v[i] = int(std::strtol(p, &end, 10));
        if (end == p) break;
        p = *end == ',' ? end + 1 : end;
      }
      k.ffn2 = v[0], k.wo = v[1], k.max_rows = v[2];
    }
    return k;
  }();
  return s;
}

struct LayerW {
  const void *wqkv, *bqkv, *wo, *bo, *w1, *b1, *w2, *b2;
  const float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
};

class CudaEncoderImpl final : public CudaEncoder {
 public:
  CudaEncoderImpl(const EncoderSource& src, const EncoderCudaOptions& opt);
  ~CudaEncoderImpl() override;

  const EncoderConfig& config() const override { return cfg_; }
  Tensor forward(const EncoderBatch& batch) override;
  Tensor hidden_states(const EncoderBatch& batch) override;

  void run(const EncoderBatch& batch) override;
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  cudaStream_t stream() const override { return stream_; }
  DType dtype() const override { return dt_; }
  int max_tokens() const override { return opt_.max_tokens; }
  int bucket_of(int tokens) const override;
  int graph_count() const override { return int(graphs_.size()); }
  int launches_per_layer() const override { return launches_layer_; }
  int launches_per_pass() const override { return launches_pass_; }
  double last_capture_ms() const override { return last_capture_ms_; }
  size_t weight_bytes() const override { return weights_.size(); }
  double load_seconds() const override { return load_s_; }
  std::string describe() const override;

 private:
  // Where the inputs of a pass of bucket nb live in the device input block (int offsets).
  struct Layout {
    size_t tiles, ids, types, pos, offsets, total;
  };
  static Layout layout(int nb) {
    Layout l;
    l.tiles = kHeader;
    l.ids = l.tiles + size_t(2) * nb;
    l.types = l.ids + size_t(nb);
    l.pos = l.types + size_t(nb);
    l.offsets = l.pos + size_t(nb);
    l.total = l.offsets + size_t(nb) + 1;
    return l;
  }

  // Host copies of the weights in their device format, at their offsets in the pool.
  struct Staged {
    std::vector<std::pair<size_t, std::vector<uint8_t>>> blocks;
    size_t end = 0;
  };
  void upload_weights(const EncoderSource& src);
  const Tensor& weight(const EncoderSource& src, const std::string& name) const;
  // Converts the tensors `names` (each checked to be [rows, cols], or [cols] when rows == 1) to the
  // compute dtype (or F32), one after the other in one 256-byte aligned block; returns its offset.
  size_t put(const EncoderSource& src, const std::vector<std::string>& names, int64_t rows, int64_t cols, bool f32,
             Staged& staged);
  // Validates a batch (validate_batch), computes its position ids into pos_ and splits it into
  // passes of at most max_tokens tokens (whole sequences).
  std::vector<std::pair<int, int>> split(const EncoderBatch& batch);
  // Validates sequences [s0, s1) of the batch, fills the input block and copies it to the GPU;
  // returns the bucket.
  int stage(const EncoderBatch& batch, int s0, int s1);
  void run_layers(int nb);
  void enqueue_layers(int nb);
  // Runs sequences [s0, s1) up to the last hidden state; returns (tokens, bucket).
  std::pair<int, int> run_part(const EncoderBatch& batch, int s0, int s1);
  float* head_buffer(DeviceBuffer& b, size_t floats);

  EncoderConfig cfg_;
  EncoderCudaOptions opt_;
  DType dt_;
  size_t es_;  // bytes per activation element
  int H_, nh_, hd_, I_, L_, labels_ = 0;
  bool gelu_tanh_ = false, gelu_fused_ = false;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t input_copied_ = nullptr;
  EncoderGemm gemm_;

  DeviceBuffer weights_;
  const void *word_ = nullptr, *pos_tab_ = nullptr, *type_tab_ = nullptr;
  const float *emb_g_ = nullptr, *emb_b_ = nullptr;
  std::vector<LayerW> layers_;
  const void *head_w1_ = nullptr, *head_b1_ = nullptr, *head_w2_ = nullptr, *head_b2_ = nullptr;

  int cap_ = 0;  // rows of the activation buffers: bucket_of(max_tokens)
  DeviceBuffer x_, qkv_, ctx_, tmp_, ffn_, in_dev_, head_a_, head_b_;
  DeviceBuffer parts_;  // fp32 split-K slices (split_k), empty when no bucket splits
  // The slices of a product of depth K at bucket nb (split_k), 0 for the plain cuBLASLt product.
  int splits_for(int want, int nb, int K) const {
    if (!opt_.split_k || dt_ == DType::F32 || want < 2 || nb > split_k().max_rows || K % (8 * want) != 0) return 0;
    return want;
  }
  int32_t* in_host_ = nullptr;  // pinned, layout(cap_).total ints
  std::map<int, cudaGraphExec_t> graphs_;
  std::vector<int32_t> pos_;  // position ids of the batch being run
  int launches_layer_ = 0, launches_pass_ = 0;
  double last_capture_ms_ = 0, load_s_ = 0;
};

const Tensor& CudaEncoderImpl::weight(const EncoderSource& src, const std::string& name) const {
  auto it = src.weights.find(name);
  if (it == src.weights.end()) {
    // older BERT checkpoints name LayerNorm parameters gamma / beta
    std::string alt = name;
    if (alt.size() > 7 && alt.compare(alt.size() - 7, 7, ".weight") == 0 && alt.find("LayerNorm") != std::string::npos)
      alt = alt.substr(0, alt.size() - 7) + ".gamma";
    else if (alt.size() > 5 && alt.compare(alt.size() - 5, 5, ".bias") == 0 && alt.find("LayerNorm") != std::string::npos)
      alt = alt.substr(0, alt.size() - 5) + ".beta";
    it = src.weights.find(alt);
  }
  if (it == src.weights.end()) fail(src.path, ": the encoder weight '", name, "' is missing");
  return it->second;
}

size_t CudaEncoderImpl::put(const EncoderSource& src, const std::vector<std::string>& names, int64_t rows,
                            int64_t cols, bool f32, Staged& staged) {
  const DType to = f32 ? DType::F32 : dt_;
  const size_t esz = to == DType::F32 ? 4 : 2;
  std::vector<uint8_t> bytes;
  bytes.reserve(names.size() * size_t(rows) * size_t(cols) * esz);
  for (const std::string& name : names) {
    const Tensor& t = weight(src, name);
    const bool shape_ok = (t.ndim() == 2 && t.dim(0) == rows && t.dim(1) == cols) ||
                          (rows == 1 && t.ndim() == 1 && t.dim(0) == cols);
    if (!shape_ok)
      fail(src.path, ": encoder weight '", name, "' has shape ", t.shape_str(), ", expected ",
           rows == 1 ? "[" + std::to_string(cols) + "]"
                     : "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    const std::vector<float> v = to_float(t, name);
    const size_t at = bytes.size();
    bytes.resize(at + v.size() * esz);
    if (to == DType::F32) {
      std::memcpy(bytes.data() + at, v.data(), v.size() * 4);
    } else {
      uint16_t* h = reinterpret_cast<uint16_t*>(bytes.data() + at);
      for (size_t i = 0; i < v.size(); ++i) h[i] = to == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
    }
  }
  const size_t at = staged.end;
  staged.end = align_up(at + bytes.size());
  staged.blocks.emplace_back(at, std::move(bytes));
  return at;
}

void CudaEncoderImpl::upload_weights(const EncoderSource& src) {
  Staged st;
  const int64_t H = H_, I = I_;
  const std::string e = "embeddings.";
  // Offsets into the pool first, pointers once it is allocated.
  const size_t word = put(src, {e + "word_embeddings.weight"}, cfg_.vocab_size, H, false, st);
  const size_t pos = put(src, {e + "position_embeddings.weight"}, cfg_.max_positions, H, false, st);
  const size_t type = put(src, {e + "token_type_embeddings.weight"}, cfg_.type_vocab_size, H, false, st);
  const size_t emb_g = put(src, {e + "LayerNorm.weight"}, 1, H, true, st);
  const size_t emb_b = put(src, {e + "LayerNorm.bias"}, 1, H, true, st);
  struct LayerOff {
    size_t wqkv, bqkv, wo, bo, ln1_g, ln1_b, w1, b1, w2, b2, ln2_g, ln2_b;
  };
  std::vector<LayerOff> lo(static_cast<size_t>(L_));
  for (int l = 0; l < L_; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".", a = p + "attention.self.";
    LayerOff& o = lo[size_t(l)];
    // q, k, v fused: [3H, H] rows (query, key, value) and a [3H] bias
    o.wqkv = put(src, {a + "query.weight", a + "key.weight", a + "value.weight"}, H, H, false, st);
    o.bqkv = put(src, {a + "query.bias", a + "key.bias", a + "value.bias"}, 1, H, false, st);
    o.wo = put(src, {p + "attention.output.dense.weight"}, H, H, false, st);
    o.bo = put(src, {p + "attention.output.dense.bias"}, 1, H, false, st);
    o.ln1_g = put(src, {p + "attention.output.LayerNorm.weight"}, 1, H, true, st);
    o.ln1_b = put(src, {p + "attention.output.LayerNorm.bias"}, 1, H, true, st);
    o.w1 = put(src, {p + "intermediate.dense.weight"}, I, H, false, st);
    o.b1 = put(src, {p + "intermediate.dense.bias"}, 1, I, false, st);
    o.w2 = put(src, {p + "output.dense.weight"}, H, I, false, st);
    o.b2 = put(src, {p + "output.dense.bias"}, 1, H, false, st);
    o.ln2_g = put(src, {p + "output.LayerNorm.weight"}, 1, H, true, st);
    o.ln2_b = put(src, {p + "output.LayerNorm.bias"}, 1, H, true, st);
  }
  size_t hw1 = 0, hb1 = 0, hw2 = 0, hb2 = 0;
  if (cfg_.head != EncoderHead::Embedding) {
    const bool roberta = cfg_.family == EncoderFamily::Roberta;
    const bool seq = cfg_.head == EncoderHead::SequenceClassification;
    const std::string out_name = seq && roberta ? "classifier.out_proj" : "classifier";
    const Tensor& w = weight(src, out_name + ".weight");
    IGNIS_CHECK(w.ndim() == 2 && w.dim(0) > 0, src.path, ": the classifier weight '", out_name, ".weight' has shape ",
                w.shape_str());
    labels_ = int(w.dim(0));
    if (seq) {
      const std::string dense = roberta ? "classifier.dense" : "pooler.dense";
      hw1 = put(src, {dense + ".weight"}, H, H, false, st);
      hb1 = put(src, {dense + ".bias"}, 1, H, false, st);
    }
    hw2 = put(src, {out_name + ".weight"}, labels_, H, false, st);
    hb2 = put(src, {out_name + ".bias"}, 1, labels_, false, st);
  }
  weights_.alloc(std::max<size_t>(st.end, kAlign));
  char* base = weights_.as<char>();
  for (const auto& [at, bytes] : st.blocks)
    CUDA_CHECK(cudaMemcpyAsync(base + at, bytes.data(), bytes.size(), cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  auto ptr = [base](size_t off) { return static_cast<const void*>(base + off); };
  auto fptr = [base](size_t off) { return reinterpret_cast<const float*>(base + off); };
  word_ = ptr(word), pos_tab_ = ptr(pos), type_tab_ = ptr(type), emb_g_ = fptr(emb_g), emb_b_ = fptr(emb_b);
  layers_.resize(size_t(L_));
  for (int l = 0; l < L_; ++l) {
    const LayerOff& o = lo[size_t(l)];
    LayerW& w = layers_[size_t(l)];
    w.wqkv = ptr(o.wqkv), w.bqkv = ptr(o.bqkv), w.wo = ptr(o.wo), w.bo = ptr(o.bo);
    w.w1 = ptr(o.w1), w.b1 = ptr(o.b1), w.w2 = ptr(o.w2), w.b2 = ptr(o.b2);
    w.ln1_g = fptr(o.ln1_g), w.ln1_b = fptr(o.ln1_b), w.ln2_g = fptr(o.ln2_g), w.ln2_b = fptr(o.ln2_b);
  }
  if (cfg_.head != EncoderHead::Embedding) {
    if (cfg_.head == EncoderHead::SequenceClassification) head_w1_ = ptr(hw1), head_b1_ = ptr(hb1);
    head_w2_ = ptr(hw2), head_b2_ = ptr(hb2);
  }
}

CudaEncoderImpl::CudaEncoderImpl(const EncoderSource& src, const EncoderCudaOptions& opt)
    : cfg_(src.config), opt_(opt), dt_(opt.dtype) {
  const auto t0 = Clock::now();
  IGNIS_CHECK(dt_ == DType::F16 || dt_ == DType::BF16 || dt_ == DType::F32,
              "CUDA encoder: dtype must be f16, bf16 or f32, got ", dtype_name(dt_));
  IGNIS_CHECK(opt_.max_tokens >= 1, "CUDA encoder: max_tokens must be at least 1");
  es_ = dt_ == DType::F32 ? 4 : 2;
  H_ = cfg_.hidden, nh_ = cfg_.heads, I_ = cfg_.intermediate, L_ = cfg_.layers;
  IGNIS_CHECK(H_ > 0 && nh_ > 0 && I_ > 0 && L_ > 0 && cfg_.vocab_size > 0 && cfg_.max_positions > 0 &&
                  cfg_.type_vocab_size > 0,
              src.path, ": incomplete encoder config (hidden ", H_, ", heads ", nh_, ", intermediate ", I_, ", layers ",
              L_, ")");
  IGNIS_CHECK(H_ % nh_ == 0, src.path, ": hidden size ", H_, " is not a multiple of the head count ", nh_);
  hd_ = H_ / nh_;
  IGNIS_CHECK(H_ % 8 == 0 && I_ % 8 == 0 && H_ <= 16384, src.path, ": the CUDA encoder needs hidden and ",
              "intermediate sizes that are multiples of 8 (hidden ", H_, ", intermediate ", I_, ")");
  IGNIS_CHECK(encoder_flash_supported(dt_, hd_) || hd_ <= 256, src.path, ": head size ", hd_, " is not supported");
  const std::string& act = cfg_.activation;
  if (act == "gelu")
    gelu_tanh_ = false;
  else if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
    gelu_tanh_ = true;
  else
    fail(src.path, ": activation '", act, "' is not supported by the CUDA encoder (gelu, gelu_new, gelu_pytorch_tanh)");
  gelu_fused_ = dt_ != DType::F32 && (gelu_tanh_ || !opt_.exact_gelu);
  IGNIS_CHECK(cuda::device_count() > 0, "CUDA encoder: no CUDA GPU is visible");
  CUDA_CHECK(cudaSetDevice(opt_.device));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&input_copied_, cudaEventDisableTiming));

  upload_weights(src);

  cap_ = bucket_of(opt_.max_tokens);
  const size_t rows = size_t(cap_);
  x_.alloc(rows * H_ * es_);
  qkv_.alloc(rows * 3 * H_ * es_);
  ctx_.alloc(rows * H_ * es_);
  tmp_.alloc(rows * H_ * es_);
  ffn_.alloc(rows * I_ * es_);
  {
    const SplitK& sk = split_k();
    const int most = std::max(splits_for(sk.ffn2, 1, I_), splits_for(sk.wo, 1, H_));
    if (most > 0) parts_.alloc(size_t(most) * size_t(std::min(cap_, sk.max_rows)) * H_ * sizeof(float));
  }
  // Finite values everywhere: rows past the real tokens are multiplied by the GEMMs (and ignored).
  for (DeviceBuffer* b : {&x_, &qkv_, &ctx_, &tmp_, &ffn_}) CUDA_CHECK(cudaMemsetAsync(b->get(), 0, b->size(), stream_));
  const Layout lay = layout(cap_);
  in_dev_.alloc(lay.total * sizeof(int32_t));
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&in_host_), lay.total * sizeof(int32_t), cudaHostAllocDefault));
  std::memset(in_host_, 0, lay.total * sizeof(int32_t));
  CUDA_CHECK(cudaStreamSynchronize(stream_));

  // One warm pass of one token: loads the kernels, chooses the GEMM algorithms of the first
  // bucket and captures its graph.
  EncoderBatch warm;
  warm.add({cfg_.family == EncoderFamily::Roberta && cfg_.pad_token_id == 0 ? 1 : 0});
  run(warm);
  synchronize();
  load_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
}

CudaEncoderImpl::~CudaEncoderImpl() {
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [nb, g] : graphs_) cudaGraphExecDestroy(g);
  if (in_host_) cudaFreeHost(in_host_);
  if (input_copied_) cudaEventDestroy(input_copied_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaEncoderImpl::describe() const {
  std::ostringstream s;
  s << (cfg_.family == EncoderFamily::Roberta ? "roberta" : "bert") << ", " << L_ << " layers, hidden " << H_ << ", "
    << nh_ << " heads of " << hd_ << ", " << dtype_name(dt_) << ", "
    << (encoder_flash_supported(dt_, hd_) && !opt_.generic_attention ? "flash" : "generic") << " attention, "
    << (gelu_fused_ ? "GELU in the GEMM epilogue" : "GELU as a kernel") << (gelu_fused_ && !gelu_tanh_ ? " (tanh approximation)" : "")
    << ", CUDA graphs " << (opt_.cuda_graphs ? "on" : "off");
  return s.str();
}

int CudaEncoderImpl::bucket_of(int tokens) const {
  if (tokens <= 64) return 64;
  int p = 1;
  while (p * 2 <= tokens) p *= 2;
  const int g = std::max(64, p / 16);
  return (tokens + g - 1) / g * g;
}

std::vector<std::pair<int, int>> CudaEncoderImpl::split(const EncoderBatch& batch) {
  validate_batch(cfg_, batch);
  IGNIS_CHECK(batch.size() >= 1, "encoder batch: no sequences");
  pos_ = encoder_position_ids(cfg_, batch);
  const int B = batch.size();
  std::vector<std::pair<int, int>> parts;
  int s0 = 0, tokens = 0;
  for (int b = 0; b < B; ++b) {
    const int len = batch.length(b);
    IGNIS_CHECK(len <= opt_.max_tokens, "encoder batch: sequence ", b, " has ", len,
                " tokens, more than this CUDA encoder's max_tokens (", opt_.max_tokens, ")");
    if (tokens + len > opt_.max_tokens) {
      parts.emplace_back(s0, b);
      s0 = b, tokens = 0;
    }
    tokens += len;
  }
  parts.emplace_back(s0, B);
  return parts;
}

int CudaEncoderImpl::stage(const EncoderBatch& batch, int s0, int s1) {
  const int base = batch.offsets[size_t(s0)];
  const int n = batch.offsets[size_t(s1)] - base, B = s1 - s0;
  IGNIS_CHECK(n >= 1 && n <= opt_.max_tokens, "encoder pass of ", n, " tokens (max_tokens ", opt_.max_tokens, ")");
  const int nb = bucket_of(n);
  const Layout lay = layout(nb);
  // The previous pass's input copy must be done before the pinned block is rewritten.
  CUDA_CHECK(cudaEventSynchronize(input_copied_));
  int32_t* h = in_host_;
  int32_t* ids = h + lay.ids;
  int32_t* types = h + lay.types;
  int32_t* pos = h + lay.pos;
  int32_t* offs = h + lay.offsets;
  int32_t* tiles = h + lay.tiles;
  std::vector<std::pair<int, int>> by_len;  // (length, sequence) for the tile order
  by_len.reserve(size_t(B));
  for (int b = 0; b < B; ++b) {
    const int o0 = batch.offsets[size_t(s0 + b)], len = batch.offsets[size_t(s0 + b) + 1] - o0;
    offs[b] = o0 - base;
    by_len.emplace_back(len, b);
    for (int i = 0; i < len; ++i) {
      const size_t k = size_t(o0 + i);
      const int r = o0 - base + i;
      ids[r] = batch.ids[k], types[r] = batch.type_ids[k], pos[r] = pos_[k];
    }
  }
  offs[B] = n;
  std::stable_sort(by_len.begin(), by_len.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  int nt = 0;
  for (const auto& [len, b] : by_len)
    for (int q0 = 0; q0 < len; q0 += kEncoderAttnTile) tiles[2 * nt] = b, tiles[2 * nt + 1] = q0, ++nt;
  h[0] = n, h[1] = B, h[2] = nt;
  CUDA_CHECK(cudaMemcpyAsync(in_dev_.get(), h, lay.total * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaEventRecord(input_copied_, stream_));
  return nb;
}

void CudaEncoderImpl::enqueue_layers(int nb) {
  const Layout lay = layout(nb);
  const int32_t* in = in_dev_.as<int32_t>();
  RaggedDev rb;
  rb.counts = in;
  rb.offsets = in + lay.offsets;
  rb.tiles = in + lay.tiles;
  int launches = 0;

  EmbedLnArgs e;
  e.dtype = dt_;
  e.word = word_, e.pos_tab = pos_tab_, e.type_tab = type_tab_;
  e.gamma = emb_g_, e.beta = emb_b_;
  e.ids = in + lay.ids, e.types = in + lay.types, e.pos = in + lay.pos;
  e.n_dev = rb.counts;
  e.rows = nb, e.hidden = H_, e.vocab = cfg_.vocab_size, e.max_positions = cfg_.max_positions;
  e.type_vocab = cfg_.type_vocab_size, e.eps = cfg_.layer_norm_eps;
  e.out = x_.get();
  encoder_embed_layernorm(e, stream_);
  ++launches;

  EncAttnArgs at;
  at.dtype = dt_;
  at.qkv = qkv_.get(), at.out = ctx_.get();
  at.batch = rb;
  at.rows = nb, at.nh = nh_, at.hd = hd_;
  at.scale = 1.f / std::sqrt(float(hd_));
  at.impl = opt_.generic_attention ? EncAttnImpl::kGeneric : EncAttnImpl::kAuto;
  const float eps = cfg_.layer_norm_eps;
  int per_layer = 0;
  const int s_wo = splits_for(split_k().wo, nb, H_), s_f2 = splits_for(split_k().ffn2, nb, I_);
  float* parts = parts_.as<float>();
  // x = LayerNorm(x + in W^T + bias): the product plain, or in `splits` fp32 slices that the LayerNorm
  // sums (split_k). Returns the kernels enqueued.
  auto project_add_ln = [&](const void* W, const void* in, int K, const void* bias, const float* g, const float* b,
                            int splits) {
    int n = 0;
    if (splits) {
      n += gemm_.matmul_split(dt_, W, in, parts, nb, H_, K, splits, stream_);
      encoder_add_parts_layernorm(dt_, parts, splits, bias, x_.get(), g, b, nb, H_, eps, rb.counts, stream_);
    } else {
      n += gemm_.matmul(dt_, W, in, tmp_.get(), nb, H_, K, bias, GemmEpilogue::kBias, stream_);
      encoder_add_layernorm(dt_, tmp_.get(), x_.get(), g, b, nb, H_, eps, rb.counts, stream_);
    }
    return n + 1;
  };
  for (const LayerW& w : layers_) {
    int k = 0;
    k += gemm_.matmul(dt_, w.wqkv, x_.get(), qkv_.get(), nb, 3 * H_, H_, w.bqkv, GemmEpilogue::kBias, stream_);
    encoder_attention(at, stream_), ++k;
    k += project_add_ln(w.wo, ctx_.get(), H_, w.bo, w.ln1_g, w.ln1_b, s_wo);
    if (gelu_fused_) {
      k += gemm_.matmul(dt_, w.w1, x_.get(), ffn_.get(), nb, I_, H_, w.b1, GemmEpilogue::kBiasGelu, stream_);
    } else {
      k += gemm_.matmul(dt_, w.w1, x_.get(), ffn_.get(), nb, I_, H_, w.b1, GemmEpilogue::kBias, stream_);
      encoder_bias_act(dt_, ffn_.get(), nullptr, nb, I_, gelu_tanh_ ? EncAct::kGeluTanh : EncAct::kGeluErf, rb.counts,
                       stream_);
      ++k;
    }
    k += project_add_ln(w.w2, ffn_.get(), I_, w.b2, w.ln2_g, w.ln2_b, s_f2);
    per_layer = std::max(per_layer, k);
    launches += k;
  }
  launches_layer_ = per_layer;
  launches_pass_ = launches;
}

void CudaEncoderImpl::run_layers(int nb) {
  if (!opt_.cuda_graphs) return enqueue_layers(nb);
  auto it = graphs_.find(nb);
  if (it != graphs_.end()) {
    CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
    return;
  }
  // First pass of this bucket: eagerly (this call's result; the GEMM plans get made outside a
  // capture), then capture the same launches for the next passes.
  enqueue_layers(nb);
  const auto t0 = Clock::now();
  cudaGraph_t g = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue_layers(nb);
  } catch (...) {
    cudaStreamEndCapture(stream_, &g);
    if (g) cudaGraphDestroy(g);
    throw;
  }
  CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  CUDA_CHECK(err);
  graphs_[nb] = exec;
  last_capture_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::pair<int, int> CudaEncoderImpl::run_part(const EncoderBatch& batch, int s0, int s1) {
  const int nb = stage(batch, s0, s1);
  run_layers(nb);
  return {batch.offsets[size_t(s1)] - batch.offsets[size_t(s0)], nb};
}

void CudaEncoderImpl::run(const EncoderBatch& batch) {
  const auto parts = split(batch);
  IGNIS_CHECK(parts.size() == 1, "CudaEncoder::run: the batch has more than max_tokens (", opt_.max_tokens,
              ") tokens");
  run_part(batch, 0, batch.size());
}

float* CudaEncoderImpl::head_buffer(DeviceBuffer& b, size_t floats) {
  if (b.size() < floats * 4) b.alloc(std::max(floats * 4, size_t(1) << 16));
  return b.as<float>();
}

// Copies rows of T (or float) from the device into float rows of out.
static void download_rows(DType t, const void* src, size_t n, float* out, cudaStream_t stream) {
  if (t == DType::F32) {
    CUDA_CHECK(cudaMemcpyAsync(out, src, n * 4, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    return;
  }
  std::vector<uint16_t> h(n);
  CUDA_CHECK(cudaMemcpyAsync(h.data(), src, n * 2, cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < n; ++i) out[i] = t == DType::F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
}

Tensor CudaEncoderImpl::hidden_states(const EncoderBatch& batch) {
  const auto parts = split(batch);
  Tensor out = Tensor::empty({int64_t(batch.ids.size()), H_}, DType::F32);
  for (const auto& [s0, s1] : parts) {
    const auto [n, nb] = run_part(batch, s0, s1);
    (void)nb;
    download_rows(dt_, x_.get(), size_t(n) * H_, out.row<float>(batch.offsets[size_t(s0)]), stream_);
  }
  return out;
}

Tensor CudaEncoderImpl::forward(const EncoderBatch& batch) {
  const auto parts = split(batch);
  const int B = batch.size();
  const bool token_cls = cfg_.head == EncoderHead::TokenClassification;
  const int64_t cols = cfg_.head == EncoderHead::Embedding ? H_ : labels_;
  Tensor out = Tensor::empty({token_cls ? int64_t(batch.ids.size()) : int64_t(B), cols}, DType::F32);
  for (const auto& [s0, s1] : parts) {
    const auto [n, nb] = run_part(batch, s0, s1);
    const int Bp = s1 - s0;
    const int* offsets = in_dev_.as<int32_t>() + layout(nb).offsets;
    float* dst = out.row<float>(token_cls ? batch.offsets[size_t(s0)] : s0);
    size_t count = 0;
    float* res = nullptr;
    switch (cfg_.head) {
      case EncoderHead::Embedding:
        res = head_buffer(head_a_, size_t(Bp) * H_);
        encoder_pool(dt_, x_.get(), offsets, Bp, H_, cfg_.pooling == Pooling::Mean, cfg_.normalize, res, stream_);
        count = size_t(Bp) * H_;
        break;
      case EncoderHead::SequenceClassification: {
        float* pooled = head_buffer(head_a_, size_t(Bp) * H_);
        encoder_head_linear(dt_, dt_, x_.get(), offsets, Bp, head_w1_, head_b1_, H_, H_, EncAct::kTanh, pooled,
                            stream_);
        res = head_buffer(head_b_, size_t(Bp) * labels_);
        encoder_head_linear(dt_, DType::F32, pooled, nullptr, Bp, head_w2_, head_b2_, labels_, H_, EncAct::kNone, res,
                            stream_);
        count = size_t(Bp) * labels_;
        break;
      }
      case EncoderHead::TokenClassification:
        res = head_buffer(head_b_, size_t(n) * labels_);
        encoder_head_linear(dt_, dt_, x_.get(), nullptr, n, head_w2_, head_b2_, labels_, H_, EncAct::kNone, res,
                            stream_);
        count = size_t(n) * labels_;
        break;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, res, count * 4, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  return out;
}

}  // namespace

std::unique_ptr<CudaEncoder> make_cuda_encoder_model(const EncoderSource& src, const EncoderCudaOptions& opt) {
  return std::make_unique<CudaEncoderImpl>(src, opt);
}

std::unique_ptr<EncoderModel> make_cuda_encoder(const EncoderSource& src, const EncoderCudaOptions& opt) {
  return make_cuda_encoder_model(src, opt);
}

}  // namespace ignis
