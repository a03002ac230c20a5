// The CPU encoder (BERT / RoBERTa / MiniLM), read top to bottom like the diagram in bert.h.
//
// A batch is ragged: the sequences' tokens are packed one after the other ([n_tokens, hidden],
// no padding) and only attention looks at sequence boundaries, so a short text costs only its own
// tokens and its output does not depend on what else is in the batch.
//
// Matrix products go to OpenBLAS (multi-threaded sgemm, weights converted to f32 at load, q/k/v
// fused into one [3H, H] matrix). The elementwise work is fused into passes over the GEMM output:
//   - bias + GELU on the intermediate activations (one pass),
//   - bias + residual + LayerNorm after the attention output and the FFN (one pass per row),
//   - the three embedding lookups + LayerNorm (one pass per row).
// Attention runs per (sequence, head) on the thread pool: K of the head is transposed into a
// [d, L] scratch so the scores of a query are an axpy over keys, then softmax, then an axpy of
// value rows; the L x L matrix is never stored.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "core/threadpool.h"
#include "models/bert.h"
#include "ops/ops.h"

namespace ignis {
namespace bert_avx2 {  // bert_cpu_avx2.cpp
void bias_gelu(float* x, const float* b, int n, bool erf);
void axpy(float a, const float* x, float* y, int n);
}  // namespace bert_avx2

namespace {

const bool kAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");

void bias_gelu(float* x, const float* b, int n, bool erf) {
  if (kAvx2) return bert_avx2::bias_gelu(x, b, n, erf);
  for (int i = 0; i < n; ++i) {
    const float v = x[i] + b[i];
    x[i] = erf ? 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f))
               : 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  }
}

void axpy(float a, const float* x, float* y, int n) {
  if (kAvx2) return bert_avx2::axpy(a, x, y, n);
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

std::vector<float> to_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  switch (t.dtype()) {
    case DType::F32: std::memcpy(out.data(), t.data(), out.size() * 4); break;
    case DType::F16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = f16_to_f32(t.ptr<uint16_t>()[i]);
      break;
    case DType::BF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_f32(t.ptr<uint16_t>()[i]);
      break;
    default: fail("encoder weight of type ", dtype_name(t.dtype()), " (expected F32, F16 or BF16)");
  }
  return out;
}

struct Linear {  // y = x W^T + b, W: [out, in]
  std::vector<float> w, b;
  int out = 0, in = 0;
};

struct Norm {
  std::vector<float> g, b;
};

struct Layer {
  Linear qkv, attn_out, ffn_up, ffn_down;
  Norm attn_norm, ffn_norm;
};

// y[n, out] = x[n, in] W^T (+ b when add_bias).
void matmul(const float* x, int n, const Linear& l, float* y, bool add_bias) {
  if (n == 0) return;
  if (add_bias)
    for (int r = 0; r < n; ++r) std::memcpy(y + size_t(r) * l.out, l.b.data(), size_t(l.out) * 4);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l.out, l.in, 1.0f, x, l.in, l.w.data(), l.in,
              add_bias ? 1.0f : 0.0f, y, l.out);
}

// x = LayerNorm(x + y + bias) over rows of h (fused residual + bias + LayerNorm); y may be null.
void add_layernorm_row(float* x, const float* y, const float* bias, const Norm& nrm, int h, float eps) {
  double mean = 0;
  for (int i = 0; i < h; ++i) {
    if (y) x[i] += y[i] + bias[i];
    mean += x[i];
  }
  mean /= h;
  double var = 0;
  for (int i = 0; i < h; ++i) {
    const double d = x[i] - mean;
    var += d * d;
  }
  const float inv = float(1.0 / std::sqrt(var / h + eps));
  const float m = float(mean);
  for (int i = 0; i < h; ++i) x[i] = (x[i] - m) * inv * nrm.g[size_t(i)] + nrm.b[size_t(i)];
}


class CpuEncoder final : public EncoderModel {
 public:
  CpuEncoder(const EncoderSource& src, int threads) : c_(src.config), pool_(threads) {
    if (threads > 0) openblas_set_num_threads(threads);
    auto W = [&](const std::string& n) {
      auto it = src.weights.find(n);
      if (it == src.weights.end()) fail(src.path, ": weight '", n, "' is missing");
      return to_f32(it->second);
    };
    auto lin = [&](const std::string& p) {
      Linear l;
      l.w = W(p + ".weight");
      l.b = W(p + ".bias");
      l.out = int(l.b.size());
      l.in = int(l.w.size() / l.b.size());
      return l;
    };
    auto norm = [&](const std::string& p) { return Norm{W(p + ".weight"), W(p + ".bias")}; };
    word_ = W("embeddings.word_embeddings.weight");
    pos_ = W("embeddings.position_embeddings.weight");
    type_ = W("embeddings.token_type_embeddings.weight");
    emb_norm_ = norm("embeddings.LayerNorm");
    for (int l = 0; l < c_.layers; ++l) {
      const std::string p = "encoder.layer." + std::to_string(l) + ".";
      Layer L;
      // q, k, v stacked into one [3H, H] product: one GEMM instead of three.
      Linear q = lin(p + "attention.self.query"), k = lin(p + "attention.self.key"), v = lin(p + "attention.self.value");
      L.qkv.in = c_.hidden;
      L.qkv.out = 3 * c_.hidden;
      for (Linear* x : {&q, &k, &v}) {
        L.qkv.w.insert(L.qkv.w.end(), x->w.begin(), x->w.end());
        L.qkv.b.insert(L.qkv.b.end(), x->b.begin(), x->b.end());
      }
      L.attn_out = lin(p + "attention.output.dense");
      L.attn_norm = norm(p + "attention.output.LayerNorm");
      L.ffn_up = lin(p + "intermediate.dense");
      L.ffn_down = lin(p + "output.dense");
      L.ffn_norm = norm(p + "output.LayerNorm");
      layers_.push_back(std::move(L));
    }
    if (c_.head == EncoderHead::SequenceClassification) {
      if (c_.family == EncoderFamily::Bert) {
        pre_ = lin("pooler.dense");
        cls_ = lin("classifier");
      } else {
        pre_ = lin("classifier.dense");
        cls_ = lin("classifier.out_proj");
      }
    } else if (c_.head == EncoderHead::TokenClassification) {
      cls_ = lin("classifier");
    }
  }

  const EncoderConfig& config() const override { return c_; }

  Tensor hidden_states(const EncoderBatch& batch) override {
    validate_batch(c_, batch);
    const int n = batch.total_tokens();
    Tensor x = Tensor::empty({n, c_.hidden});
    encode(batch, x.ptr<float>());
    return x;
  }

  Tensor forward(const EncoderBatch& batch) override {
    Tensor x = hidden_states(batch);
    const int H = c_.hidden, B = batch.size();
    const float* h = x.ptr<float>();
    switch (c_.head) {
      case EncoderHead::Embedding: {
        // Pooling over each sequence's tokens (CLS: the first one), then L2 normalisation
        // (sentence-transformers' Normalize: x / max(|x|, 1e-12)).
        Tensor out = Tensor::empty({B, H});
        for (int s = 0; s < B; ++s) {
          float* o = out.row<float>(s);
          const int begin = batch.offsets[size_t(s)], len = batch.length(s);
          if (c_.pooling == Pooling::Cls) {
            std::memcpy(o, h + size_t(begin) * H, size_t(H) * 4);
          } else {
            std::vector<double> acc(size_t(H), 0.0);
            for (int t = 0; t < len; ++t)
              for (int i = 0; i < H; ++i) acc[size_t(i)] += h[size_t(begin + t) * H + i];
            for (int i = 0; i < H; ++i) o[i] = float(acc[size_t(i)] / len);
          }
          if (c_.normalize) {
            double ss = 0;
            for (int i = 0; i < H; ++i) ss += double(o[i]) * o[i];
            const float inv = float(1.0 / std::max(std::sqrt(ss), 1e-12));
            for (int i = 0; i < H; ++i) o[i] *= inv;
          }
        }
        return out;
      }
      case EncoderHead::SequenceClassification: {
        // The first token of each sequence ([CLS] / <s>) -> tanh(dense) -> classifier.
        std::vector<float> first(size_t(B) * H), pooled(size_t(B) * H);
        for (int s = 0; s < B; ++s)
          std::memcpy(&first[size_t(s) * H], h + size_t(batch.offsets[size_t(s)]) * H, size_t(H) * 4);
        matmul(first.data(), B, pre_, pooled.data(), true);
        for (float& v : pooled) v = std::tanh(v);
        Tensor out = Tensor::empty({B, cls_.out});
        matmul(pooled.data(), B, cls_, out.ptr<float>(), true);
        return out;
      }
      case EncoderHead::TokenClassification: {
        Tensor out = Tensor::empty({batch.total_tokens(), cls_.out});
        matmul(h, batch.total_tokens(), cls_, out.ptr<float>(), true);
        return out;
      }
    }
    fail("unknown encoder head");
  }

 private:
  // x[n, H] <- the last layer's hidden states of the batch.
  void encode(const EncoderBatch& batch, float* x) {
    const int n = batch.total_tokens(), H = c_.hidden, I = c_.intermediate;
    if (n == 0) return;
    const std::vector<int32_t> pos = encoder_position_ids(c_, batch);
    // Embeddings: word + position + token type, then LayerNorm (one pass per token).
    pool_.parallel_for(n, 64, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        float* r = x + t * H;
        const float* w = &word_[size_t(batch.ids[size_t(t)]) * H];
        const float* p = &pos_[size_t(pos[size_t(t)]) * H];
        const float* ty = &type_[size_t(batch.type_ids[size_t(t)]) * H];
        for (int i = 0; i < H; ++i) r[i] = w[i] + p[i] + ty[i];
        add_layernorm_row(r, nullptr, nullptr, emb_norm_, H, c_.layer_norm_eps);
      }
    });
    std::vector<float> qkv(size_t(n) * 3 * H), ctx(size_t(n) * H), tmp(size_t(n) * H), ffn(size_t(n) * I);
    for (const Layer& L : layers_) {
      // x = LayerNorm(x + Wo . Attention(Wq x, Wk x, Wv x) + bo)
      matmul(x, n, L.qkv, qkv.data(), true);
      attention(batch, qkv.data(), ctx.data());
      matmul(ctx.data(), n, L.attn_out, tmp.data(), false);
      residual_norm(x, tmp.data(), L.attn_out.b.data(), L.attn_norm, n);
      // x = LayerNorm(x + W2 . GELU(W1 x + b1) + b2)
      matmul(x, n, L.ffn_up, ffn.data(), false);
      const bool erf = c_.activation == "gelu";
      const float* b1 = L.ffn_up.b.data();
      pool_.parallel_for(n, 16, [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) bias_gelu(&ffn[size_t(t) * I], b1, I, erf);
      });
      matmul(ffn.data(), n, L.ffn_down, tmp.data(), false);
      residual_norm(x, tmp.data(), L.ffn_down.b.data(), L.ffn_norm, n);
    }
  }

  void residual_norm(float* x, const float* y, const float* bias, const Norm& nrm, int n) {
    const int H = c_.hidden;
    pool_.parallel_for(n, 32, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) add_layernorm_row(x + t * H, y + t * H, bias, nrm, H, c_.layer_norm_eps);
    });
  }

  // ctx[t, h*d .. (h+1)*d) = softmax(q_t . K_s^T / sqrt(d)) V_s for every token t of sequence s and
  // head h, with K_s, V_s the keys and values of that sequence only (the padding mask, exactly).
  void attention(const EncoderBatch& batch, const float* qkv, float* ctx) {
    const int H = c_.hidden, nh = c_.heads, d = H / nh, B = batch.size();
    const float scale = 1.0f / std::sqrt(float(d));
    int max_len = 0;
    for (int s = 0; s < B; ++s) max_len = std::max(max_len, batch.length(s));
    scratch_.resize(size_t(pool_.size()) * (size_t(d) * max_len + max_len));
    pool_.run(int64_t(B) * nh, [&](int64_t task, int thread) {
      const int s = int(task / nh), h = int(task % nh);
      const int begin = batch.offsets[size_t(s)], L = batch.length(s);
      float* kt = &scratch_[size_t(thread) * (size_t(d) * max_len + max_len)];
      float* p = kt + size_t(d) * max_len;
      const size_t stride = size_t(3) * H;
      const float* q0 = qkv + size_t(begin) * stride + size_t(h) * d;
      const float* k0 = q0 + H;
      const float* v0 = q0 + 2 * H;
      for (int j = 0; j < L; ++j)
        for (int i = 0; i < d; ++i) kt[size_t(i) * L + j] = k0[size_t(j) * stride + i];
      for (int t = 0; t < L; ++t) {
        const float* q = q0 + size_t(t) * stride;
        for (int j = 0; j < L; ++j) p[j] = 0.0f;
        for (int i = 0; i < d; ++i) axpy(q[i] * scale, kt + size_t(i) * L, p, L);
        ops::softmax(p, L);
        float* o = ctx + size_t(begin + t) * H + size_t(h) * d;
        for (int i = 0; i < d; ++i) o[i] = 0.0f;
        for (int j = 0; j < L; ++j) axpy(p[j], v0 + size_t(j) * stride, o, d);
      }
    });
  }

  EncoderConfig c_;
  ThreadPool pool_;
  std::vector<float> word_, pos_, type_;
  Norm emb_norm_;
  std::vector<Layer> layers_;
  Linear pre_, cls_;  // classification heads
  std::vector<float> scratch_;
};

}  // namespace

std::unique_ptr<EncoderModel> make_cpu_encoder(const EncoderSource& src, int threads) {
  return std::make_unique<CpuEncoder>(src, threads);
}

}  // namespace ignis
