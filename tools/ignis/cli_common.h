// Pieces of the CLI shared by the subcommands (kept out of main.cpp to keep it short).
#pragma once
#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <string>

#include "io/model_source.h"
#include "models/llama.h"
#include "quant/model_quant.h"

namespace ignis::cli {

// ~/.cache/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf (XDG_CACHE_HOME respected).
std::string default_model_path();
// An empty path means the default model, with a clear error if it has not been fetched.
std::string resolve_model_path(const std::string& path);

int cmd_info(const ModelSource& src);

struct BenchArgs {
  int prompt_tokens = 0, gen_tokens = 0, reps = 3, batch = 1;  // 0: the mode's default
  std::string synthetic;  // shape name for a random-weight model on the GPU
  std::string quant;      // synthetic GPU model: "", "int8" or "int4" weights
  int quant_group = 128;
  bool json = false;
  void add(CLI::App* app);
};
int cmd_bench(const BenchArgs& a, const std::string& model_path, const std::string& tokenizer, const std::string& device,
              int threads, int ctx);

// Registers the hidden `bench-encoder` subcommand (cli_bench_encoder.cpp; runs from its callback).
void add_bench_encoder(CLI::App& app);

// `ignis embed` and `ignis classify` (cli_encoder.cpp): adds the subcommands, which run from their callbacks.
void add_encoder_commands(CLI::App& app);
// `ignis quantize` and `ignis perplexity` (cli_quant.cpp), run from their callbacks.
void add_quant_commands(CLI::App& app);

// The CUDA backend, or a clear error when this build or machine has none.
std::unique_ptr<LlamaModel> make_cuda_model(const ModelSource& src, int ctx, bool f32 = false);
// Whether this build has the CUDA backend and the machine a GPU.
bool cuda_usable();
// A clear error (as for --device cuda) unless this build has the CUDA backend and the machine a GPU.
void require_cuda_gpu();
// GPTQ of the whole model with the calibration forward, the Hessians and the solves on the GPU in
// float32 (cuda/gptq_calib_cuda.h; opt.method must be "gptq"), or a clear error without a GPU. src
// must be in HF convention, as for quant::quantize_model.
std::map<std::string, quant::QuantLinear> cuda_gptq_quantize_model(const ModelSource& src,
                                                                   const quant::ModelQuantOptions& opt);

}  // namespace ignis::cli
