// Hyper-parameters of a Llama-family decoder, filled by the loaders (GGUF metadata,
// HF config.json, llama2.c header). Weights are always named as in GGUF files
// (token_embd.weight, blk.N.attn_q.weight, ...), whatever file they came from.
#pragma once
#include <cstdint>
#include <string>

namespace ignis {

// How rotary embeddings pair up the dimensions of a head:
//  kInterleaved: pairs (2i, 2i+1) -- GGUF llama files (q/k permuted by the converter), llama2.c;
//  kHalfSplit:   pairs (i, i + d/2) -- Hugging Face checkpoints ("rotate_half"), GGUF qwen2/gpt-neox.
enum class RopeStyle : uint8_t { kInterleaved, kHalfSplit };

enum class RopeScaling : uint8_t { kNone, kLinear, kLlama3 };

struct LlamaConfig {
  std::string arch = "llama";   // llama, mistral, qwen2, ...
  std::string name;             // human-readable model name, if the file has one
  int n_layers = 0;
  int dim = 0;                  // hidden size
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;             // usually dim / n_heads
  int hidden_dim = 0;           // MLP intermediate size
  int vocab_size = 0;
  int max_seq_len = 0;          // context length the model was trained for
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int rope_dim = 0;             // dimensions rotated per head (== head_dim for Llama)
  RopeStyle rope_style = RopeStyle::kInterleaved;
  RopeScaling rope_scaling = RopeScaling::kNone;
  float rope_factor = 1.0f;               // linear / llama3 scaling factor
  float rope_low_freq_factor = 1.0f;      // llama3
  float rope_high_freq_factor = 4.0f;     // llama3
  int rope_original_max_pos = 8192;       // llama3
  bool tied_embeddings = false;           // output head shares token_embd.weight
  bool qkv_bias = false;                  // qwen2 has biases on q, k, v

  // Throws ignis::Error naming the first inconsistent field (zero sizes, heads not dividing dim, ...).
  void validate(const std::string& source) const;
};

}  // namespace ignis
