// config.json as transformers >= 5 writes it: rope settings under "rope_parameters"
// (found by tests/reference/hf_parity.py, where theta 500000 was read as the default 10000).
#include <gtest/gtest.h>

#include "io/model_source.h"

using namespace ignis;

TEST(HFConfig, ReadsTransformers5RopeParameters) {
  const std::string cfg = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
    "vocab_size": 50, "max_position_embeddings": 2048, "rms_norm_eps": 1e-06, "tie_word_embeddings": true,
    "rope_parameters": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
      "original_max_position_embeddings": 32, "rope_theta": 500000.0, "rope_type": "llama3"}})";
  LlamaConfig c = parse_hf_llama_config(cfg, "config.json");
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_scaling, RopeScaling::kLlama3);
  EXPECT_FLOAT_EQ(c.rope_factor, 8.0f);
  EXPECT_EQ(c.rope_original_max_pos, 32);
  const std::string plain = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 50,
    "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}})";
  c = parse_hf_llama_config(plain, "config.json");
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.rope_scaling, RopeScaling::kNone);
}
