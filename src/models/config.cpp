#include "models/config.h"

#include "core/error.h"

namespace ignis {

void LlamaConfig::validate(const std::string& src) const {
  auto positive = [&](int v, const char* what, int max) {
    if (v <= 0 || v > max) fail(src, ": ", what, " is ", v, " (expected 1 to ", max, ")");
  };
  positive(n_layers, "the number of layers", 1024);
  positive(dim, "the hidden size", 1 << 16);
  positive(n_heads, "the number of attention heads", 1024);
  positive(n_kv_heads, "the number of key/value heads", 1024);
  positive(head_dim, "the head size", 1024);
  positive(hidden_dim, "the MLP size", 1 << 18);
  positive(vocab_size, "the vocabulary size", 1 << 22);
  positive(max_seq_len, "the context length", 1 << 24);
  if (n_heads % n_kv_heads != 0)
    fail(src, ": ", n_heads, " attention heads cannot be shared among ", n_kv_heads, " key/value heads");
  if (rope_dim <= 0 || rope_dim > head_dim || rope_dim % 2 != 0)
    fail(src, ": the rotary dimension ", rope_dim, " must be even and at most the head size ", head_dim);
  if (!(norm_eps > 0 && norm_eps < 1)) fail(src, ": the norm epsilon ", norm_eps, " is out of range");
  if (!(rope_theta > 0)) fail(src, ": the rope theta ", rope_theta, " must be positive");
  if (!(rope_factor > 0)) fail(src, ": the rope scaling factor ", rope_factor, " must be positive");
}

}  // namespace ignis
