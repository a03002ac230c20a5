// GPTQ calibration: a small float32 reference forward pass of the Llama block, run layer by layer
// over the calibration samples, so each linear layer's Hessian H = 2/n sum x x^T is built from the
// inputs it sees in the partly quantized model ("true sequential" GPTQ):
//
//   for each layer l (the samples' hidden states x_s entering it are kept, [T, dim] each):
//     h_s = rmsnorm(x_s) * attn_norm           -> H_qkv;  quantize q, k, v
//     a_s = attention(rope(h Wq), rope(h Wk), h Wv)  (with the quantized q/k/v) -> H_o; quantize o
//     x_s += a_s Wo;  h2_s = rmsnorm(x_s) * ffn_norm  -> H_gu; quantize gate, up
//     m_s = silu(h2 Wg) * (h2 Wu)               -> H_down; quantize down
//     x_s += m_s Wd                              (the input of layer l + 1)
//
// The LlamaModel interface has no hooks for per-layer inputs, hence this forward of its own, built
// from src/ops (rmsnorm, Rope, attention, silu_mul) and quant::matmul; it follows the block diagram
// in models/llama.h (and the model must be in HF convention: half-split RoPE, to_hf_convention).
// Memory: the samples' hidden states (tokens x dim floats) plus one sample's intermediates.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "quant/model_quant.h"

namespace ignis::quant {

namespace {

std::vector<float> vec_f32(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  for (int64_t r = 0; r < t.rows(); ++r) quant::dequantize_row(t.dtype(), t.row<void>(r), v.data() + r * t.cols(), t.cols());
  return v;
}

Tensor view2(float* p, int64_t rows, int64_t cols) {
  const int64_t shape[2] = {rows, cols};
  return Tensor::view(p, shape, 2, DType::F32, nullptr);
}

// y[T, N] = x[T, K] W^T (+ bias)
void linear(ThreadPool& pool, const Tensor& W, float* x, int64_t T, float* y, const std::vector<float>* bias) {
  Tensor xt = view2(x, T, W.dim(1)), yt = view2(y, T, W.dim(0));
  quant::matmul(pool, W, xt, yt);
  if (bias && !bias->empty())
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < W.dim(0); ++n) y[t * W.dim(0) + n] += (*bias)[size_t(n)];
}

Tensor deq_tensor(const QuantLinear& q) {
  Tensor t = Tensor::empty({q.N, q.K}, DType::F32);
  const std::vector<float> w = dequantize(q);
  std::memcpy(t.data(), w.data(), w.size() * 4);
  return t;
}

}  // namespace

std::vector<int64_t> gptq_sample_lengths(const LlamaConfig& c, const std::vector<int32_t>& tokens, int seq_len) {
  if (c.rope_style != RopeStyle::kHalfSplit) fail("GPTQ calibration: the model must be in HF convention");
  IGNIS_CHECK(seq_len >= 2, "GPTQ calibration: samples need at least 2 tokens");
  IGNIS_CHECK(tokens.size() >= 2, "GPTQ calibration needs calibration text (got ", tokens.size(), " tokens)");
  for (int32_t t : tokens) IGNIS_CHECK(t >= 0 && t < c.vocab_size, "GPTQ calibration: token id ", t, " out of range");
  std::vector<int64_t> lengths;
  for (size_t i = 0; i < tokens.size(); i += size_t(seq_len)) {
    const size_t n = std::min(tokens.size() - i, size_t(seq_len));
    if (n >= 2 || lengths.empty()) lengths.push_back(int64_t(n));
  }
  return lengths;
}

std::map<std::string, QuantLinear> gptq_quantize_model(ThreadPool& pool, const ModelSource& src,
                                                       const std::vector<int32_t>& tokens, int seq_len,
                                                       const QuantSpec& spec, const GptqOptions& gopt,
                                                       const Progress& progress) {
  const LlamaConfig& c = src.config;
  const std::vector<int64_t> lengths = gptq_sample_lengths(c, tokens, seq_len);
  const int64_t D = c.dim, Hd = c.hidden_dim, nh = c.n_heads, nkv = c.n_kv_heads, hd = c.head_dim;
  const int64_t qdim = nh * hd, kvdim = nkv * hd;

  // Samples: consecutive windows of seq_len tokens (the last one may be shorter).
  std::vector<std::vector<int32_t>> samples;
  int64_t start = 0;
  for (const int64_t n : lengths) {
    samples.emplace_back(tokens.begin() + start, tokens.begin() + start + n);
    start += n;
  }
  const size_t S = samples.size();
  std::vector<std::vector<float>> X(S);
  for (size_t s = 0; s < S; ++s) {
    X[s].resize(samples[s].size() * size_t(D));
    quant::get_rows(src.weights.at("token_embd.weight"), samples[s].data(), int64_t(samples[s].size()), X[s].data());
  }

  const ops::Rope rope(c);
  std::map<std::string, QuantLinear> out;
  std::vector<float> scratch;
  const int total_steps = c.n_layers * 4;
  int step = 0;
  auto report = [&](const std::string& what) {
    ++step;
    if (progress) progress(double(step) / total_steps, what);
  };
  auto quantize = [&](const std::string& name, HessianAccumulator& acc) {
    const Tensor& w = src.weights.at(name);
    const std::vector<float> wf = vec_f32(w);
    if (!quantizable(spec, w.dim(0), w.dim(1))) {  // stays in float (model_quant.h: quantizable)
      Tensor t = Tensor::empty({w.dim(0), w.dim(1)}, DType::F32);
      std::memcpy(t.data(), wf.data(), wf.size() * 4);
      return t;
    }
    out[name] = quantize_gptq(pool, wf.data(), w.dim(0), w.dim(1), acc.hessian(), spec, gopt);
    return deq_tensor(out[name]);
  };

  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const std::vector<float> attn_norm = vec_f32(src.weights.at(b + "attn_norm.weight"));
    const std::vector<float> ffn_norm = vec_f32(src.weights.at(b + "ffn_norm.weight"));
    std::vector<float> bq, bk, bv;
    if (c.qkv_bias) {
      bq = vec_f32(src.weights.at(b + "attn_q.bias"));
      bk = vec_f32(src.weights.at(b + "attn_k.bias"));
      bv = vec_f32(src.weights.at(b + "attn_v.bias"));
    }
    auto norm_rows = [&](const std::vector<float>& x, const std::vector<float>& w, std::vector<float>& h, int64_t T) {
      h.resize(size_t(T * D));
      for (int64_t t = 0; t < T; ++t) ops::rmsnorm(x.data() + t * D, w.data(), h.data() + t * D, int(D), c.norm_eps);
    };
    std::vector<float> h, q, k, v, a, g, u;

    // 1. q, k, v from h = rmsnorm(x)
    HessianAccumulator Hqkv(D);
    for (size_t s = 0; s < S; ++s) {
      const int64_t T = int64_t(samples[s].size());
      norm_rows(X[s], attn_norm, h, T);
      Hqkv.add(pool, h.data(), T);
    }
    const Tensor Wq = quantize(b + "attn_q.weight", Hqkv), Wk = quantize(b + "attn_k.weight", Hqkv),
                 Wv = quantize(b + "attn_v.weight", Hqkv);
    report("layer " + std::to_string(l) + " q/k/v");

    // 2. o from the attention output (with the quantized q/k/v); keep the outputs for step 3
    HessianAccumulator Ho(qdim);
    std::vector<std::vector<float>> A(S);
    for (size_t s = 0; s < S; ++s) {
      const int64_t T = int64_t(samples[s].size());
      norm_rows(X[s], attn_norm, h, T);
      q.resize(size_t(T * qdim));
      k.resize(size_t(T * kvdim));
      v.resize(size_t(T * kvdim));
      linear(pool, Wq, h.data(), T, q.data(), &bq);
      linear(pool, Wk, h.data(), T, k.data(), &bk);
      linear(pool, Wv, h.data(), T, v.data(), &bv);
      for (int64_t t = 0; t < T; ++t) {
        rope.apply(q.data() + t * qdim, int(nh), int(hd), int(t));
        rope.apply(k.data() + t * kvdim, int(nkv), int(hd), int(t));
      }
      A[s].resize(size_t(T * qdim));
      scratch.assign(size_t(pool.size()) * size_t(T), 0.f);
      ops::attention(pool, q.data(), k.data(), v.data(), A[s].data(), int(T), 0, int(nh), int(nkv), int(hd), int(kvdim),
                     scratch);
      Ho.add(pool, A[s].data(), T);
    }
    const Tensor Wo = quantize(b + "attn_output.weight", Ho);
    report("layer " + std::to_string(l) + " o");

    // 3. x += a Wo; gate/up from h2 = rmsnorm(x)
    HessianAccumulator Hgu(D);
    for (size_t s = 0; s < S; ++s) {
      const int64_t T = int64_t(samples[s].size());
      std::vector<float> o(size_t(T * D));
      linear(pool, Wo, A[s].data(), T, o.data(), nullptr);
      for (size_t i = 0; i < o.size(); ++i) X[s][i] += o[i];
      std::vector<float>().swap(A[s]);
      norm_rows(X[s], ffn_norm, h, T);
      Hgu.add(pool, h.data(), T);
    }
    const Tensor Wg = quantize(b + "ffn_gate.weight", Hgu), Wu = quantize(b + "ffn_up.weight", Hgu);
    report("layer " + std::to_string(l) + " gate/up");

    // 4. down from m = silu(h2 Wg) * (h2 Wu); then x += m Wd with the quantized Wd
    HessianAccumulator Hdown(Hd);
    auto mlp_in = [&](size_t s, int64_t T) {
      norm_rows(X[s], ffn_norm, h, T);
      g.resize(size_t(T * Hd));
      u.resize(size_t(T * Hd));
      linear(pool, Wg, h.data(), T, g.data(), nullptr);
      linear(pool, Wu, h.data(), T, u.data(), nullptr);
      ops::silu_mul(g.data(), u.data(), g.data(), T * Hd);
    };
    for (size_t s = 0; s < S; ++s) {
      const int64_t T = int64_t(samples[s].size());
      mlp_in(s, T);
      Hdown.add(pool, g.data(), T);
    }
    const Tensor Wd = quantize(b + "ffn_down.weight", Hdown);
    for (size_t s = 0; s < S; ++s) {
      const int64_t T = int64_t(samples[s].size());
      mlp_in(s, T);
      std::vector<float> o(size_t(T * D));
      linear(pool, Wd, g.data(), T, o.data(), nullptr);
      for (size_t i = 0; i < o.size(); ++i) X[s][i] += o[i];
    }
    report("layer " + std::to_string(l) + " down");
  }
  return out;
}

}  // namespace ignis::quant
