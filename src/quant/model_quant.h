// Whole-model quantization of a Llama-family ModelSource, and quantized checkpoints on disk.
//
// Which layers: the 7 linear layers of every block (attn_q, attn_k, attn_v, attn_output,
// ffn_gate, ffn_up, ffn_down). Embeddings, norms and the output head stay as they are (GPTQ
// tooling does the same).
//
// Checkpoints are Hugging Face folders: config.json (+ "quantization_config"), model.safetensors
// with the GPTQ layout of formats.h for the quantized layers (int4: bits 4; int8: bits 8,
// group_size -1) and the other tensors under their HF names, and the tokenizer files. HF Llama
// checkpoints rotate dimension pairs (i, i + d/2) ("rotate_half"); models from llama2.c / GGUF
// rotate pairs (2i, 2i+1), so for those the rows of attn_q / attn_k are permuted in each head
// (new row i = old row 2i, new row d/2 + i = old row 2i + 1, the inverse of what HF -> GGUF
// converters do) before quantizing: to_hf_convention. llama2.c's tokenizer.bin is copied as is
// (HF tooling cannot read it, ignis can); GGUF-embedded tokenizers cannot be written (a warning).
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/threadpool.h"
#include "io/model_source.h"
#include "quant/formats.h"
#include "quant/quantize.h"

namespace ignis::quant {

// GGUF names of the linear layers quantized, for a config.
std::vector<std::string> linear_weight_names(const LlamaConfig& c);
// Whether a [N, K] layer fits the format and the GPTQ packing: int4 needs K % group == 0,
// int8 K % 4 == 0. Layers that do not fit stay unquantized (e.g.
// stories260K's ffn_down, K = 172, for int4); they are saved as plain `.weight` tensors and listed
// in quantization_config "modules_to_not_convert".
bool quantizable(const QuantSpec& spec, int64_t N, int64_t K);

// Replaces the linear weights by owned f32 copies (dequantizing block types), permutes the q/k
// rows of interleaved-RoPE models and switches config.rope_style to kHalfSplit. Logits unchanged.
void to_hf_convention(ModelSource& src);

using Progress = std::function<void(double fraction, const std::string& what)>;

struct ModelQuantOptions {
  QuantSpec spec;
  std::string method = "rtn";         // rtn | gptq
  GptqOptions gptq;
  std::vector<int32_t> calib_tokens;  // gptq: the calibration text, tokenized
  int calib_seq_len = 512;            // gptq: tokens per calibration sample
  Progress progress;                  // optional
};

// Quantizes every (quantizable) linear layer of src (which must be in HF convention: to_hf_convention).
// GPTQ runs the model layer by layer on the calibration tokens (calibrate.cpp), quantizing in
// the "true sequential" order q/k/v -> o -> gate/up -> down, each from inputs computed with the
// layers already quantized.
std::map<std::string, QuantLinear> quantize_model(ThreadPool& pool, const ModelSource& src,
                                                  const ModelQuantOptions& opt);

// GPTQ calibration samples (calibrate.cpp; the GPU calibration, cuda/gptq_calib_cuda.cu, takes the
// same): checks the model (HF convention) and the input (seq_len >= 2, at least 2 tokens, every id
// in the vocabulary), then cuts tokens into consecutive windows of seq_len tokens, the last one
// shorter (dropped when it is a single token after others). Returns the windows' lengths.
std::vector<int64_t> gptq_sample_lengths(const LlamaConfig& c, const std::vector<int32_t>& tokens, int seq_len);

// GPTQ of all linear layers (calibrate.cpp). tokens are split into samples of seq_len tokens.
std::map<std::string, QuantLinear> gptq_quantize_model(ThreadPool& pool, const ModelSource& src,
                                                       const std::vector<int32_t>& tokens, int seq_len,
                                                       const QuantSpec& spec, const GptqOptions& gopt,
                                                       const Progress& progress);

// Load-time quantization for the CPU model (`--quant int8|int4`): each linear weight is replaced
// by the f32 dequantization of its RTN quantization ("simulated" quantization: the logits are
// those of the quantized model; the speed is the f32 model's). Running the CPU model on the
// packed weights needs the CPU Llama to accept QuantLinear weights (matmul_cpu.h's qmatmul) —
// int8 per channel is not GGUF Q8_0 (one scale per row vs per 32 values) and GPTQ int4 with a
// zero point per 128 values is not Q4_0/Q4_1, so no GGUF block type can hold them exactly.
// Returns the names of the layers left unquantized (see quantizable).
std::vector<std::string> quantize_weights_in_place(ModelSource& src, const QuantSpec& spec, ThreadPool* pool = nullptr);

// The float baseline of a quantized file (`ignis perplexity --weights f32|bf16`): every
// quantized (or f16/bf16) tensor dequantized to f32, or rounded on to bf16 (to_dtype BF16).
// Embeddings and head included, so that it compares like for like with a GPTQ folder written
// by save_quantized_checkpoint (whose plain tensors are f32).
void dequantize_weights_in_place(ModelSource& src, DType to_dtype);

// Replaces the linear weights of src by the dequantization (f32) of `layers` (GGUF names).
void apply_dequantized(ModelSource& src, const std::map<std::string, QuantLinear>& layers);

struct SaveOptions {
  std::string out_dir;
  std::string tokenizer_file;   // llama2.c: the tokenizer.bin to copy (HF folders: copied from src.path)
};
// Writes the folder (created if needed; config.json, model.safetensors, tokenizer files). src must be
// in HF convention. Nothing is left behind on error (files are written to temporary names first).
void save_quantized_checkpoint(const ModelSource& src, const std::map<std::string, QuantLinear>& layers,
                               const SaveOptions& opt);

// True when `path` is a folder whose config.json (or quantize_config.json) declares GPTQ quantization.
bool is_quantized_checkpoint(const std::string& path);

struct QuantizedCheckpoint {
  ModelSource src;                               // linear weights dequantized to f32 (for the CPU model)
  std::map<std::string, QuantLinear> layers;     // GGUF names -> the packed layers (for the GPU kernels)
  GptqConfig config;
};
// Loads a GPTQ folder (ignis-written or HF tooling's). Errors name the tensor: missing
// qweight/scales/qzeros, shapes that disagree with each other or with config.json, a group size
// that disagrees with quantization_config.
// dequantize_layers = false leaves the linear layers out of src.weights (only in `layers`).
QuantizedCheckpoint load_quantized_checkpoint(const std::string& folder, const std::string& tokenizer_path = "",
                                              bool dequantize_layers = true);

// The exact GGML block form of a layer, when it has one: int8 per channel -> Q8_0 (every
// block of row n has d = scale[n]); symmetric int4 with contiguous groups -> Q4_0 (a group of
// 32/64/128 columns is 1/2/4 blocks with d = its scale, nibble = q). Both need scales that are
// exact in f16 (the GPTQ layout stores f16, and the CLI quantizes with f16 scales). nullopt for
// asymmetric int4 (the min -scale*zero of Q4_1 is not exact in f16) and act-order layers.
// The CPU kernels then run the layer on its integers (repacked x8 where that pays).
std::optional<Tensor> to_ggml_blocks(const QuantLinear& q);

// A model to run, from any path the CLI takes: a GPTQ folder (is_quantized_checkpoint) has its
// layers as GGML blocks where to_ggml_blocks is exact, dequantized f32 otherwise; anything else
// goes through open_model and, when `quant` is "int8" or "int4", is quantized at load (RTN,
// symmetric, f16 scales, `group` for int4) straight into Q8_0 / Q4_0 blocks. `note` (if given)
// receives a line saying what was done, for the user.
struct LoadOptions {
  std::string tokenizer;  // as for open_model
  std::string quant;      // "", "int8" or "int4"
  int group = 128;
  ThreadPool* pool = nullptr;
};
ModelSource open_model_for_inference(const std::string& path, const LoadOptions& opt, std::string* note = nullptr);

}  // namespace ignis::quant
