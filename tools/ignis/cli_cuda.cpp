// The CLI's bridge to the CUDA backend (src/cuda/), compiled in when the build has CUDA.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli_common.h"
#include "core/error.h"

#ifdef IGNIS_WITH_CUDA
#include "cuda/bench.h"
#include "cuda/device.h"
#include "cuda/gptq_calib_cuda.h"
#include "cuda/llama_cuda.h"
#endif

namespace ignis::cli {

#ifdef IGNIS_WITH_CUDA

namespace {
void need_gpu() {
  if (cuda::device_count() == 0) fail("--device cuda: no CUDA GPU is visible on this machine");
}
}  // namespace

bool cuda_usable() { return cuda::device_count() > 0; }

void require_cuda_gpu() { need_gpu(); }

std::map<std::string, quant::QuantLinear> cuda_gptq_quantize_model(const ModelSource& src,
                                                                   const quant::ModelQuantOptions& opt) {
  need_gpu();
  if (opt.method != "gptq") fail("the GPU calibration runs GPTQ only (method '", opt.method, "')");
  return cuda::gptq_quantize_model_cuda(src, opt.calib_tokens, opt.calib_seq_len, opt.spec, opt.gptq, opt.progress);
}

std::unique_ptr<LlamaModel> make_cuda_model(const ModelSource& src, int ctx, bool f32) {
  need_gpu();
  CudaOptions o;
  o.context = ctx;
  o.dtype = f32 ? DType::F32 : DType::BF16;
  auto m = make_cuda_llama(src, o);
  if (m->quantized_linear_weights() > 0)
    std::fprintf(stderr, "note: %d linear weights run in their GGUF blocks on the GPU (IGNIS_GPU_DEQUANT=1: bf16)\n",
                 m->quantized_linear_weights());
  return m;
}

int bench_synthetic(const BenchArgs& a) {
  need_gpu();
  BenchOptions bo;
  bo.new_tokens = a.gen_tokens > 0 ? a.gen_tokens : 128;
  bo.prompt_lengths = {8, a.prompt_tokens > 0 ? a.prompt_tokens : 512};
  bo.batches = {1, a.batch > 1 ? a.batch : 8};
  bo.breakdown_batch = a.batch > 1 ? a.batch : 0;  // --batch B: where the kernels of a batch-B step go
  bo.repeats = a.reps;
  CudaOptions o;
  o.quant = a.quant;
  o.quant_group = a.quant_group;
  o.max_batch = bo.batches.back();
  o.context = bo.prompt_lengths.back() + bo.new_tokens + 16;
  if (!a.json)
    std::fprintf(stderr, "building a random-weight %s%s on the GPU...\n", a.synthetic.c_str(),
                 a.quant.empty() ? "" : (" (" + a.quant + " weights)").c_str());
  auto model = make_synthetic_cuda_llama(a.synthetic, o);
  if (!a.json) std::fprintf(stderr, "ready in %.2f s; benchmarking...\n", model->warmup_seconds());
  BenchResult r = run_llama_bench(*model, a.quant.empty() ? a.synthetic : a.synthetic + " " + a.quant, bo);
  if (!a.json) {
    std::printf("%s", r.to_table().c_str());
    return 0;
  }
  // The full result, plus flat keys that bench/peers.py reads.
  nlohmann::json j = nlohmann::json::parse(r.to_json());
  for (const auto& row : r.rows) {
    if (row.batch == 1 && row.prompt == bo.prompt_lengths.front()) j["decode_tok_s"] = row.decode_tok_s;
    if (row.batch == bo.batches.back() && row.prompt == bo.prompt_lengths.front())
      j["decode_tok_s_batch" + std::to_string(row.batch)] = row.decode_tok_s;
    if (row.batch == 1 && row.prompt == bo.prompt_lengths.back()) {
      j["ttft_ms_" + std::to_string(row.prompt)] = row.ttft_ms;
      j["prefill_tok_s"] = row.prefill_tok_s;
    }
  }
  j["peak_mem_gib"] = double(r.device_used_bytes) / double(1ull << 30);
  j["weight_gib"] = double(r.weight_bytes) / double(1ull << 30);
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

#else

bool cuda_usable() { return false; }

void require_cuda_gpu() {
  fail("--device cuda: this build of ignis has no CUDA backend (nvcc was not found when it was configured)");
}

std::map<std::string, quant::QuantLinear> cuda_gptq_quantize_model(const ModelSource&, const quant::ModelQuantOptions&) {
  fail("GPTQ calibration on the GPU: this build of ignis has no CUDA backend (nvcc was not found when it was configured)");
}

std::unique_ptr<LlamaModel> make_cuda_model(const ModelSource&, int, bool) {
  fail("--device cuda: this build of ignis has no CUDA backend (nvcc was not found when it was configured)");
}

int bench_synthetic(const BenchArgs&) {
  fail("--synthetic needs the CUDA backend, and this build has none (nvcc was not found when it was configured)");
}

#endif

}  // namespace ignis::cli
