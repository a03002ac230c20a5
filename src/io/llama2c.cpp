// llama2.c checkpoints (Karpathy's run.c format): a header of 7 int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (< 0: separate classifier), seq_len
// then f32 arrays, each layer's matrices stacked over layers, in the order
//   token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
//   wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
//   w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim],
//   freq_cis_real [seq_len, head_size/2], freq_cis_imag [seq_len, head_size/2] (unused),
//   wcls [vocab, dim] (only when vocab_size < 0).
// Matrices are [out, in] row-major, as ignis wants them, so every weight is a view.
// The file must be exactly as long as the header implies.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/model_source.h"
#include "io/reader.h"

namespace ignis {

void parse_llama2c(const uint8_t* data, size_t size, const std::string& what, std::shared_ptr<void> keep,
                   LlamaConfig& config, std::map<std::string, Tensor>& weights) {
  ByteReader r(data, size, what);
  if (size < 28) fail(what, ": too small for a llama2.c checkpoint (", size, " bytes; the header alone is 28)");
  const int32_t dim = r.read<int32_t>("dim");
  const int32_t hidden = r.read<int32_t>("hidden_dim");
  const int32_t n_layers = r.read<int32_t>("n_layers");
  const int32_t n_heads = r.read<int32_t>("n_heads");
  const int32_t n_kv_heads = r.read<int32_t>("n_kv_heads");
  const int32_t vocab_raw = r.read<int32_t>("vocab_size");
  const int32_t seq_len = r.read<int32_t>("seq_len");

  auto check = [&](int32_t v, const char* name, int32_t max) {
    if (v <= 0 || v > max)
      fail(what, ": llama2.c header field ", name, " is ", v, " (expected 1 to ", max,
           "); is this a llama2.c checkpoint?");
  };
  check(dim, "dim", 1 << 16);
  check(hidden, "hidden_dim", 1 << 18);
  check(n_layers, "n_layers", 1024);
  check(n_heads, "n_heads", 1024);
  check(n_kv_heads, "n_kv_heads", 1024);
  if (vocab_raw == 0 || vocab_raw < -(1 << 22) || vocab_raw > (1 << 22))
    fail(what, ": llama2.c header field vocab_size is ", vocab_raw, " (expected 1 to ", 1 << 22, ", or negative)");
  check(seq_len, "seq_len", 1 << 24);
  if (dim % n_heads != 0) fail(what, ": dim ", dim, " is not a multiple of n_heads ", n_heads);
  if (n_heads % n_kv_heads != 0)
    fail(what, ": n_heads ", n_heads, " is not a multiple of n_kv_heads ", n_kv_heads);
  const bool shared = vocab_raw > 0;
  const int64_t vocab = shared ? vocab_raw : -int64_t(vocab_raw);
  const int64_t head = dim / n_heads;
  if (head % 2 != 0) fail(what, ": the head size ", head, " is odd; rotary embeddings need an even one");
  const int64_t kv_dim = head * n_kv_heads;
  const int64_t D = dim, H = hidden, L = n_layers;

  // Element counts of every array, in file order. With the limits above each fits in 2^45.
  const uint64_t counts[] = {
      uint64_t(vocab * D),                        // token_embedding
      uint64_t(L * D),                            // rms_att
      uint64_t(L * D * D),                        // wq
      uint64_t(L * kv_dim * D),                   // wk
      uint64_t(L * kv_dim * D),                   // wv
      uint64_t(L * D * D),                        // wo
      uint64_t(L * D),                            // rms_ffn
      uint64_t(L * H * D),                        // w1
      uint64_t(L * D * H),                        // w2
      uint64_t(L * H * D),                        // w3
      uint64_t(D),                                // rms_final
      uint64_t(int64_t(seq_len) * (head / 2)),    // freq_cis_real
      uint64_t(int64_t(seq_len) * (head / 2)),    // freq_cis_imag
      shared ? 0 : uint64_t(vocab * D),           // wcls
  };
  uint64_t total = 0;
  for (uint64_t n : counts) total += n;
  const uint64_t expect = 28 + 4 * total;
  if (expect != uint64_t(size))
    fail(what, ": a llama2.c checkpoint with dim ", dim, ", hidden_dim ", hidden, ", ", n_layers, " layers, ", n_heads,
         " heads, ", n_kv_heads, " kv heads, vocab ", vocab, (shared ? "" : " (separate classifier)"), ", seq_len ",
         seq_len, " takes ", expect, " bytes, but the file has ", size,
         (uint64_t(size) < expect ? "; it is truncated" : "; it has trailing bytes or a different header"));

  // Weights are f32 views; if the buffer is not 4-byte aligned (never for a memory map), copy it.
  const uint8_t* base = data;
  if (reinterpret_cast<uintptr_t>(data) % alignof(float) != 0) {
    auto copy = std::shared_ptr<float[]>(new float[(size + 3) / 4]);
    std::memcpy(copy.get(), data, size);
    base = reinterpret_cast<const uint8_t*>(copy.get());
    keep = copy;
  }
  const float* p = reinterpret_cast<const float*>(base + 28);

  LlamaConfig c;
  c.arch = "llama";
  c.name = "llama2.c";
  c.n_layers = n_layers;
  c.dim = dim;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.head_dim = int(head);
  c.hidden_dim = hidden;
  c.vocab_size = int(vocab);
  c.max_seq_len = seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_dim = int(head);
  c.rope_style = RopeStyle::kInterleaved;
  c.tied_embeddings = shared;
  c.validate(what);

  std::map<std::string, Tensor> w;
  auto take = [&](uint64_t count) {
    const float* q = p;
    p += count;
    return const_cast<float*>(q);
  };
  auto put = [&](const std::string& name, float* at, std::initializer_list<int64_t> shape) {
    w[name] = Tensor::view(at, shape.begin(), int(shape.size()), DType::F32, keep);
  };
  // Stacked per-layer arrays: layer l of an array of `per` floats per layer starts at base + l * per.
  auto put_layers = [&](const char* name, uint64_t per, std::initializer_list<int64_t> shape) {
    float* at = take(per * uint64_t(L));
    for (int64_t l = 0; l < L; ++l) put("blk." + std::to_string(l) + "." + name, at + l * int64_t(per), shape);
  };
  put("token_embd.weight", take(uint64_t(vocab * D)), {vocab, D});
  put_layers("attn_norm.weight", uint64_t(D), {D});
  put_layers("attn_q.weight", uint64_t(D * D), {D, D});
  put_layers("attn_k.weight", uint64_t(kv_dim * D), {kv_dim, D});
  put_layers("attn_v.weight", uint64_t(kv_dim * D), {kv_dim, D});
  put_layers("attn_output.weight", uint64_t(D * D), {D, D});
  put_layers("ffn_norm.weight", uint64_t(D), {D});
  put_layers("ffn_gate.weight", uint64_t(H * D), {H, D});   // w1
  put_layers("ffn_down.weight", uint64_t(D * H), {D, H});   // w2
  put_layers("ffn_up.weight", uint64_t(H * D), {H, D});     // w3
  put("output_norm.weight", take(uint64_t(D)), {D});
  take(2 * uint64_t(seq_len) * uint64_t(head / 2));          // freq_cis_real / imag: RoPE is recomputed
  if (!shared) put("output.weight", take(uint64_t(vocab * D)), {vocab, D});

  config = std::move(c);
  weights = std::move(w);
}

}  // namespace ignis
