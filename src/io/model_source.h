// Opens a model from any of the supported containers and presents its weights under
// GGUF names (token_embd.weight, blk.N.attn_q.weight, ..., output_norm.weight, output.weight)
// with a filled LlamaConfig:
//  - GGUF file;
//  - Hugging Face folder: config.json + *.safetensors (+ tokenizer.json);
//  - llama2.c checkpoint (.bin), with tokenizer.bin beside it or given explicitly.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "models/config.h"

namespace ignis {

class GGUFFile;
class Tokenizer;

struct ModelSource {
  std::string path;
  std::string format;                      // "gguf", "hf", "llama2c"
  LlamaConfig config;
  std::map<std::string, Tensor> weights;   // GGUF names -> views into the file (or converted copies)
  std::shared_ptr<GGUFFile> gguf;          // set for GGUF files (for `ignis info`)
  std::unique_ptr<Tokenizer> tokenizer;
  // generation_config.json / GGUF defaults, when present
  float default_temperature = -1, default_top_p = -1;
  int default_top_k = -1;
};

// Detects the format from the path and loads it. tokenizer_path overrides where the
// tokenizer is read from (needed for llama2.c checkpoints not next to their tokenizer.bin).
// Throws ignis::Error with an actionable message on any problem.
ModelSource open_model(const std::string& path, const std::string& tokenizer_path = "");

// Individual loaders (used by open_model and the tests).
ModelSource load_gguf_model(const std::string& path);
ModelSource load_hf_model(const std::string& folder);
ModelSource load_llama2c_model(const std::string& path, const std::string& tokenizer_path);
// Parses a HF config.json text into a LlamaConfig (throws for architectures ignis does not run).
LlamaConfig parse_hf_llama_config(const std::string& json_text, const std::string& what);
// Parses a llama2.c checkpoint from memory (header of 7 int32, then f32 weights) into
// GGUF-named f32 tensors owned by `keep` (views into data). Used by the loader and the fuzzer.
void parse_llama2c(const uint8_t* data, size_t size, const std::string& what, std::shared_ptr<void> keep,
                   LlamaConfig& config, std::map<std::string, Tensor>& weights);

}  // namespace ignis
