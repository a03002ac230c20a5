// The CPU backend of the Llama-family decoder (see llama.h for the block diagram).
// Weights stay as they are in the file (quantized blocks are multiplied directly);
// activations, norms and the KV cache are f32.
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/error.h"
#include "io/model_source.h"
#include "models/llama.h"
#include "ops/ops.h"
#include "ops/quant.h"

namespace ignis {
namespace {

// Small 1-D weights (norms, biases) are converted to f32 once at load.
std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  quant::dequantize_row(t.dtype(), t.data(), out.data(), t.numel());
  return out;
}

struct Layer {
  std::vector<float> attn_norm, ffn_norm;
  Tensor wq, wk, wv, wo, w_gate, w_up, w_down;
  std::vector<float> bq, bk, bv;  // qwen2 only
};

class CpuLlama final : public LlamaModel {
 public:
  CpuLlama(const ModelSource& src, const CpuOptions& opt)
      : cfg_(src.config),
        pool_(opt.threads),
        rope_(src.config),
        act_(opt.f32_activations ? quant::Activations::kF32 : quant::Activations::kQuantized) {
    cfg_.validate(src.path);
    if (opt.threads > 0) openblas_set_num_threads(opt.threads);  // f32 prompt products go through SGEMM
    auto get = [&](const std::string& name) -> const Tensor& {
      auto it = src.weights.find(name);
      if (it == src.weights.end()) fail(src.path, ": weight '", name, "' is missing");
      return it->second;
    };
    auto expect = [&](const Tensor& t, int64_t rows, int64_t cols, const std::string& name) {
      if (t.ndim() != 2 || t.dim(0) != rows || t.dim(1) != cols)
        fail(src.path, ": weight '", name, "' has shape ", t.shape_str(), ", expected [", rows, ", ", cols, "]");
    };
    const int64_t q_dim = int64_t(cfg_.n_heads) * cfg_.head_dim, kv_dim = int64_t(cfg_.n_kv_heads) * cfg_.head_dim;
    tok_embd_ = get("token_embd.weight");
    expect(tok_embd_, cfg_.vocab_size, cfg_.dim, "token_embd.weight");
    output_ = src.weights.count("output.weight") ? get("output.weight") : tok_embd_;
    expect(output_, cfg_.vocab_size, cfg_.dim, "output.weight");
    output_norm_ = to_f32(get("output_norm.weight"));
    // The head may be the embedding table itself: the lookup keeps the file's rows, the
    // product gets its own copy when it is repacked.
    output_ = quant::prepare_cpu_weight(output_, &pool_);
    for (int l = 0; l < cfg_.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      Layer L;
      L.attn_norm = to_f32(get(p + "attn_norm.weight"));
      L.ffn_norm = to_f32(get(p + "ffn_norm.weight"));
      L.wq = get(p + "attn_q.weight");
      L.wk = get(p + "attn_k.weight");
      L.wv = get(p + "attn_v.weight");
      L.wo = get(p + "attn_output.weight");
      L.w_gate = get(p + "ffn_gate.weight");
      L.w_up = get(p + "ffn_up.weight");
      L.w_down = get(p + "ffn_down.weight");
      expect(L.wq, q_dim, cfg_.dim, p + "attn_q.weight");
      expect(L.wk, kv_dim, cfg_.dim, p + "attn_k.weight");
      expect(L.wv, kv_dim, cfg_.dim, p + "attn_v.weight");
      expect(L.wo, cfg_.dim, q_dim, p + "attn_output.weight");
      expect(L.w_gate, cfg_.hidden_dim, cfg_.dim, p + "ffn_gate.weight");
      expect(L.w_up, cfg_.hidden_dim, cfg_.dim, p + "ffn_up.weight");
      expect(L.w_down, cfg_.dim, cfg_.hidden_dim, p + "ffn_down.weight");
      if (int64_t(L.attn_norm.size()) != cfg_.dim || int64_t(L.ffn_norm.size()) != cfg_.dim)
        fail(src.path, ": layer ", l, " norm weights do not have ", cfg_.dim, " values");
      // The products' weights in the layout the CPU kernels run fastest (quant.h, x8).
      for (Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
        *w = quant::prepare_cpu_weight(*w, &pool_);
      if (cfg_.qkv_bias) {
        L.bq = to_f32(get(p + "attn_q.bias"));
        L.bk = to_f32(get(p + "attn_k.bias"));
        L.bv = to_f32(get(p + "attn_v.bias"));
      }
      layers_.push_back(std::move(L));
    }
    context_ = opt.context > 0 ? opt.context : std::min(cfg_.max_seq_len, 4096);
    const size_t cache = size_t(cfg_.n_layers) * size_t(context_) * size_t(kv_dim);
    try {
      kcache_.resize(cache);
      vcache_.resize(cache);
    } catch (const std::bad_alloc&) {
      fail("out of memory allocating a KV cache of ", 2 * cache * 4 / (1 << 20), " MiB for ", context_,
           " positions; use a smaller --ctx");
    }
    logits_.resize(size_t(cfg_.vocab_size));
  }

  const LlamaConfig& config() const override { return cfg_; }
  int context_size() const override { return context_; }
  std::string backend() const override {
    std::ostringstream os;
    os << "cpu (" << pool_.size() << (pool_.size() == 1 ? " thread)" : " threads)");
    return os.str();
  }

  const float* forward(const int32_t* tokens, int n, int pos) override {
    run(tokens, n, pos, /*all_logits=*/false);
    return logits_.data();
  }

  std::vector<float> forward_all(const int32_t* tokens, int n, int pos) override {
    run(tokens, n, pos, /*all_logits=*/true);
    return std::move(all_logits_);
  }

 private:
  // Processes n tokens; leaves the last token's logits in logits_ (or all in all_logits_).
  void run(const int32_t* tokens, int n, int pos, bool all_logits) {
    IGNIS_CHECK(n > 0, "forward needs at least one token");
    IGNIS_CHECK(pos >= 0 && int64_t(pos) + n <= context_, "the sequence needs ", int64_t(pos) + n,
                " positions but the context holds ", context_, " (use a larger --ctx or a shorter prompt)");
    for (int i = 0; i < n; ++i)
      IGNIS_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size, "token id ", tokens[i], " is outside the vocabulary (",
                  cfg_.vocab_size, " tokens)");
    const int dim = cfg_.dim, hd = cfg_.head_dim;
    const int q_dim = cfg_.n_heads * hd, kv_dim = cfg_.n_kv_heads * hd;
    Tensor x = Tensor::empty({n, dim}), h = Tensor::empty({n, dim});
    Tensor q = Tensor::empty({n, q_dim}), k = Tensor::empty({n, kv_dim}), v = Tensor::empty({n, kv_dim});
    Tensor att = Tensor::empty({n, q_dim}), o = Tensor::empty({n, dim});
    Tensor g = Tensor::empty({n, cfg_.hidden_dim}), u = Tensor::empty({n, cfg_.hidden_dim});

    // x = token_embd[tokens]
    quant::get_rows(tok_embd_, tokens, n, x.ptr<float>());

    for (int l = 0; l < cfg_.n_layers; ++l) {
      const Layer& L = layers_[size_t(l)];
      float* kc = kcache_.data() + size_t(l) * size_t(context_) * kv_dim;
      float* vc = vcache_.data() + size_t(l) * size_t(context_) * kv_dim;

      // attention block: h = rmsnorm(x); q, k, v = h W; rope; cache; attend; x += att Wo
      for (int i = 0; i < n; ++i) ops::rmsnorm(x.row<float>(i), L.attn_norm.data(), h.row<float>(i), dim, cfg_.norm_eps);
      {  // one parallel region for the three products of h
        const Tensor* ws[] = {&L.wq, &L.wk, &L.wv};
        Tensor* ys[] = {&q, &k, &v};
        quant::matmul_multi(pool_, ws, ys, 3, h, act_);
      }
      for (int i = 0; i < n; ++i) {
        if (cfg_.qkv_bias) {
          add_bias(q.row<float>(i), L.bq);
          add_bias(k.row<float>(i), L.bk);
          add_bias(v.row<float>(i), L.bv);
        }
        rope_.apply(q.row<float>(i), cfg_.n_heads, hd, pos + i);
        rope_.apply(k.row<float>(i), cfg_.n_kv_heads, hd, pos + i);
        std::memcpy(kc + size_t(pos + i) * kv_dim, k.row<float>(i), size_t(kv_dim) * 4);
        std::memcpy(vc + size_t(pos + i) * kv_dim, v.row<float>(i), size_t(kv_dim) * 4);
      }
      ops::attention(pool_, q.ptr<float>(), kc, vc, att.ptr<float>(), n, pos, cfg_.n_heads, cfg_.n_kv_heads, hd,
                     kv_dim, scratch_);
      quant::matmul(pool_, L.wo, att, o, act_);
      add_into(x, o);

      // MLP block: h = rmsnorm(x); x += (silu(h Wgate) * (h Wup)) Wdown
      for (int i = 0; i < n; ++i) ops::rmsnorm(x.row<float>(i), L.ffn_norm.data(), h.row<float>(i), dim, cfg_.norm_eps);
      {
        const Tensor* ws[] = {&L.w_gate, &L.w_up};
        Tensor* ys[] = {&g, &u};
        quant::matmul_multi(pool_, ws, ys, 2, h, act_);
      }
      ops::silu_mul(g.ptr<float>(), u.ptr<float>(), g.ptr<float>(), g.numel());
      quant::matmul(pool_, L.w_down, g, o, act_);
      add_into(x, o);
    }

    // logits = rmsnorm(x) Woutput, for the last row only unless all are asked for
    const int first = all_logits ? 0 : n - 1;
    const int rows = n - first;
    Tensor hn = Tensor::empty({rows, dim});
    for (int i = 0; i < rows; ++i)
      ops::rmsnorm(x.row<float>(first + i), output_norm_.data(), hn.row<float>(i), dim, cfg_.norm_eps);
    if (all_logits) {
      all_logits_.assign(size_t(rows) * cfg_.vocab_size, 0.0f);
      Tensor out = Tensor::view(all_logits_.data(), std::array<int64_t, 2>{rows, cfg_.vocab_size}.data(), 2,
                                DType::F32, nullptr);
      quant::matmul(pool_, output_, hn, out, act_);
      std::memcpy(logits_.data(), all_logits_.data() + size_t(rows - 1) * cfg_.vocab_size, logits_.size() * 4);
    } else {
      Tensor out = Tensor::view(logits_.data(), std::array<int64_t, 2>{1, cfg_.vocab_size}.data(), 2, DType::F32,
                                nullptr);
      quant::matmul(pool_, output_, hn, out, act_);
    }
  }

  static void add_bias(float* x, const std::vector<float>& b) {
    for (size_t i = 0; i < b.size(); ++i) x[i] += b[i];
  }
  static void add_into(Tensor& x, const Tensor& y) {
    float* a = x.ptr<float>();
    const float* b = y.ptr<float>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) a[i] += b[i];
  }

  LlamaConfig cfg_;
  ThreadPool pool_;
  ops::Rope rope_;
  quant::Activations act_;
  Tensor tok_embd_, output_;
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  int context_ = 0;
  std::vector<float> kcache_, vcache_, logits_, all_logits_, scratch_;
};

}  // namespace

std::unique_ptr<LlamaModel> make_cpu_llama(const ModelSource& src, const CpuOptions& opt) {
  return std::make_unique<CpuLlama>(src, opt);
}

}  // namespace ignis
