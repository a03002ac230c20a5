// `ignis quantize` and `ignis perplexity` (weight-only int8 / int4 quantization, src/quant).
//
//   ignis quantize -m MODEL --to int8|int4 [--group 128] [--method rtn|gptq] [--calib FILE]
//                  [--calib-tokens N] [--device auto|cpu|cuda] -o OUT
//     (GPTQ with --device cuda, or auto on a machine with a GPU: the whole calibration on the GPU)
//     writes OUT/ as a Hugging Face GPTQ folder (config.json with quantization_config,
//     model.safetensors, tokenizer files); progress on stderr.
//   ignis perplexity -m MODEL -f TEXT [--ctx 512] [--stride 256] [--device cpu|cuda] [--quant int8|int4]
//     sliding-window perplexity (quant/perplexity.h) and tokens/s. MODEL may be a GPTQ folder
//     (dequantized at load); --quant quantizes a float model at load time (RTN, simulated: see
//     quant/model_quant.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli_common.h"
#include "core/error.h"
#include "core/mmap.h"
#include "core/threadpool.h"
#include "quant/model_quant.h"
#include "quant/perplexity.h"
#include "tokenizer/tokenizer.h"

namespace ignis::cli {
namespace {

namespace fs = std::filesystem;

// Progress on stderr: a one-line bar on a terminal; otherwise (a log file, a pipe) a plain line
// every 10% or 30 s, so that long work still shows it is moving.
class Bar {
 public:
  explicit Bar(const char* what) : what_(what), tty_(isatty(2)), t0_(std::chrono::steady_clock::now()) {}
  void operator()(double f, const std::string& msg) {
    const int pct = int(f * 100 + 0.5);
    if (!tty_) {
      if (pct < next_pct_ && seconds() < next_s_) return;
      next_pct_ = pct / 10 * 10 + 10;
      next_s_ = seconds() + 30;
      std::fprintf(stderr, "%s: %3d%% %s (%.1f s)\n", what_, pct, msg.c_str(), seconds());
      return;
    }
    const int w = 30, fill = int(f * w + 0.5);
    std::fprintf(stderr, "\r%s [%.*s%*s] %3d%% %-28s %6.1fs", what_, fill, "##############################", w - fill,
                 "", pct, msg.substr(0, 28).c_str(), seconds());
    std::fflush(stderr);
  }
  void done() {
    if (tty_) std::fputc('\n', stderr);
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }

 private:
  const char* what_;
  bool tty_;
  int next_pct_ = 0;
  double next_s_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

struct QuantizeArgs {
  std::string model, tokenizer, to, method = "rtn", calib, out, device = "auto";
  int group = 128, calib_tokens = 65536, seq_len = 512, threads = 0;
  double damp = 0.01;
  bool act_order = false, asym = false;
};

struct PplArgs {
  std::string model, tokenizer, file, device = "cpu", quant, dtype = "bf16", weights;
  int ctx = 512, stride = 256, threads = 0, group = 128, max_tokens = 0;
  bool asym = false;
};

quant::QuantSpec make_spec(const std::string& to, int group, bool asym) {
  quant::QuantSpec s;
  s.format = to == "int8" ? quant::QFormat::kInt8 : quant::QFormat::kInt4;
  s.group = group;
  s.symmetric = !asym;
  s.scale_dtype = DType::F16;  // the GPTQ layout stores fp16 scales: exact round trip
  if (s.format == quant::QFormat::kInt8 && asym) fail("--asym applies to int4 only (int8 is symmetric per channel)");
  return s;
}

// llama2.c checkpoints: the tokenizer.bin that open_model would pick (to copy it beside the output).
std::string llama2c_tokenizer(const ModelSource& src, const std::string& given) {
  if (!given.empty()) return given;
  if (src.format != "llama2c") return "";
  const fs::path dir = fs::path(src.path).parent_path();
  for (const fs::path& c : {dir / ("tok" + std::to_string(src.config.vocab_size) + ".bin"), dir / "tokenizer.bin"}) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) return c.string();
  }
  return "";
}

void cmd_quantize(const QuantizeArgs& a) {
  if (a.method == "gptq" && a.calib.empty())
    fail("--method gptq needs calibration text: --calib FILE (e.g. wikitext2_valid.txt)");
  std::error_code ec;
  if (fs::exists(a.out, ec) && !fs::is_directory(a.out, ec)) fail("-o ", a.out, ": exists and is not a folder");
  if (fs::exists(a.out, ec) && fs::equivalent(a.out, a.model, ec)) fail("-o must differ from the model folder");
  const quant::QuantSpec spec = make_spec(a.to, a.group, a.asym);

  ModelSource src = open_model(resolve_model_path(a.model), a.tokenizer);
  const std::string tok_file = llama2c_tokenizer(src, a.tokenizer);
  quant::ModelQuantOptions opt;
  opt.spec = spec;
  opt.method = a.method;
  opt.gptq.percdamp = a.damp;
  opt.gptq.act_order = a.act_order;
  opt.calib_seq_len = std::min(a.seq_len, src.config.max_seq_len);
  // GPTQ on the GPU (calibration forward, Hessians and per-layer solves) when asked, or by default
  // when there is one; on the CPU the solve runs in float64 (calibrate.cpp)
  const bool gpu_solve = a.method == "gptq" && (a.device == "cuda" || (a.device == "auto" && cuda_usable()));
  if (gpu_solve) require_cuda_gpu();  // a clear error now, before the calibration text is read
  if (a.method == "gptq") {
    if (!src.tokenizer) fail(src.path, ": no tokenizer to read the calibration text with (pass --tokenizer)");
    const std::string text = read_text_file(a.calib);
    if (text.empty()) fail(a.calib, ": the calibration file is empty");
    // Tokenize a prefix big enough for the requested tokens (about 3 bytes per token is generous).
    const size_t bytes = std::min(text.size(), size_t(a.calib_tokens) * 8 + 1024);
    opt.calib_tokens = src.tokenizer->encode(std::string_view(text).substr(0, bytes), true, false);
    if (opt.calib_tokens.size() > size_t(a.calib_tokens)) opt.calib_tokens.resize(size_t(a.calib_tokens));
    if (opt.calib_tokens.size() < 16) fail(a.calib, ": only ", opt.calib_tokens.size(), " calibration tokens");
  }
  std::fprintf(stderr, "ignis quantize: %s -> %s %s%s%s, %s", src.path.c_str(), a.to.c_str(),
               spec.format == quant::QFormat::kInt4 ? ("group " + std::to_string(a.group)).c_str() : "per channel",
               a.asym ? " asym" : "", a.act_order ? " act-order" : "", a.method.c_str());
  if (a.method == "gptq")
    std::fprintf(stderr, " (%zu calibration tokens, samples of %d; %s)", opt.calib_tokens.size(),
                 opt.calib_seq_len, gpu_solve ? "calibration and solve on the GPU, float32" : "solve on the CPU, float64");
  std::fputc('\n', stderr);

  quant::to_hf_convention(src);
  ThreadPool pool(a.threads > 0 ? a.threads : default_thread_count());
  Bar bar("quantize");
  opt.progress = [&](double f, const std::string& what) { bar(f, what); };
  const auto layers = gpu_solve ? cuda_gptq_quantize_model(src, opt) : quant::quantize_model(pool, src, opt);
  bar.done();
  const size_t total = quant::linear_weight_names(src.config).size();
  if (layers.size() < total)
    std::fprintf(stderr, "note: %zu of %zu linear layers have input sizes the format cannot group; they stay in float\n",
                 total - layers.size(), total);
  quant::SaveOptions so;
  so.out_dir = a.out;
  so.tokenizer_file = tok_file;
  quant::save_quantized_checkpoint(src, layers, so);
  size_t qbytes = 0;
  for (const auto& [n, q] : layers) qbytes += q.storage_bytes();
  std::fprintf(stderr, "wrote %s (%zu quantized layers, %.1f MB of packed weights and scales) in %.1f s\n",
               a.out.c_str(), layers.size(), double(qbytes) / 1e6, bar.seconds());
}

void cmd_perplexity(const PplArgs& a) {
  const std::string text = read_text_file(a.file);
  if (text.empty()) fail(a.file, ": the text is empty");
  const std::string path = resolve_model_path(a.model);
  ModelSource src;
  std::string what = "";
  if (quant::is_quantized_checkpoint(path)) {
    if (!a.quant.empty()) fail("--quant applies to float models; ", path, " is already quantized");
    if (!a.weights.empty()) fail("--weights applies to GGUF / float models; ", path, " is a quantized checkpoint");
    quant::QuantizedCheckpoint ck = quant::load_quantized_checkpoint(path, a.tokenizer);
    what = ck.config.bits == 8 ? "GPTQ int8 checkpoint" : "GPTQ int4 checkpoint, group " + std::to_string(ck.config.group_size);
    src = std::move(ck.src);
  } else {
    src = open_model(path, a.tokenizer);
  }
  if (!src.tokenizer) fail(path, ": no tokenizer found for this model (pass --tokenizer)");
  if (!a.weights.empty()) {  // the float baseline: every quantized tensor dequantized (then --quant, if given)
    quant::dequantize_weights_in_place(src, a.weights == "bf16" ? DType::BF16 : DType::F32);
    what = "weights dequantized to " + a.weights;
  }
  if (!a.quant.empty()) {
    ThreadPool pool(a.threads > 0 ? a.threads : default_thread_count());
    const auto skipped = quant::quantize_weights_in_place(src, make_spec(a.quant, a.group, a.asym), &pool);
    what = (what.empty() ? "" : what + ", then ") + a.quant + " RTN" +
           (a.quant == "int4" ? " group " + std::to_string(a.group) + (a.asym ? " asym" : " sym")
                              : std::string(" per channel")) +
           " at load time";
    if (!skipped.empty()) what += " (" + std::to_string(skipped.size()) + " layers left in float)";
  }
  std::vector<int32_t> ids = src.tokenizer->encode(text, true, false);
  if (a.max_tokens > 0 && ids.size() > size_t(a.max_tokens)) ids.resize(size_t(a.max_tokens));
  const int ctx = std::min(a.ctx, src.config.max_seq_len);
  const int stride = std::min(a.stride, ctx);
  std::unique_ptr<LlamaModel> model;
  if (a.device == "cuda") {
    model = make_cuda_model(src, ctx, a.dtype == "f32");
  } else {
    CpuOptions o;
    o.threads = a.threads;
    o.context = ctx;
    model = make_cpu_llama(src, o);
  }
  std::fprintf(stderr, "ignis perplexity: %s%s%s on %s, %zu tokens, ctx %d, stride %d\n", src.path.c_str(),
               what.empty() ? "" : ", ", what.c_str(), model->backend().c_str(), ids.size(), ctx, stride);
  Bar bar("perplexity");
  const quant::PerplexityResult r =
      quant::perplexity(*model, ids, ctx, stride, [&](double f) { bar(f, std::to_string(int(f * ids.size())) + " tokens"); });
  bar.done();
  std::printf("perplexity %.4f (nll %.5f over %lld tokens; %.1f tok/s, %lld tokens processed in %.2f s)\n", r.ppl, r.nll,
              static_cast<long long>(r.scored), double(r.processed) / std::max(r.seconds, 1e-9),
              static_cast<long long>(r.processed), r.seconds);
}

}  // namespace

void add_quant_commands(CLI::App& app) {
  auto qa = std::make_shared<QuantizeArgs>();
  auto* q = app.add_subcommand("quantize", "Quantize a model's linear layers to int8 or int4 (RTN or GPTQ), as a GPTQ folder");
  q->add_option("-m,--model", qa->model, "Model: GGUF file, Hugging Face folder or llama2.c .bin")->required();
  q->add_option("--tokenizer", qa->tokenizer, "Tokenizer file for llama2.c checkpoints (tokenizer.bin)");
  q->add_option("--to", qa->to, "Target format: int8 (per channel) or int4 (group-wise)")
      ->required()
      ->check(CLI::IsMember({"int8", "int4"}));
  q->add_option("--group", qa->group, "int4 group size: 32, 64 or 128 (default 128)")->check(CLI::IsMember({32, 64, 128}));
  q->add_option("--method", qa->method, "rtn (round to nearest, default) or gptq")->check(CLI::IsMember({"rtn", "gptq"}));
  q->add_option("--calib", qa->calib, "GPTQ calibration text file");
  q->add_option("--calib-tokens", qa->calib_tokens, "GPTQ calibration tokens (default 65536)")
      ->check(CLI::Range(16, 1 << 26));
  q->add_option("--seq-len", qa->seq_len, "GPTQ tokens per calibration sample (default 512, at most the context)")
      ->check(CLI::Range(2, 1 << 20));
  q->add_option("--damp", qa->damp, "GPTQ damping, a fraction of the mean Hessian diagonal (default 0.01)")
      ->check(CLI::Range(0.0, 10.0));
  q->add_flag("--act-order", qa->act_order, "GPTQ: quantize columns by decreasing activation magnitude (desc_act)");
  q->add_flag("--asym", qa->asym, "int4 with zero points (asymmetric)");
  q->add_option("-t,--threads", qa->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 1024));
  q->add_option("--device", qa->device,
                "GPTQ: where the calibration and each layer's solve run: auto (the GPU when there is one, default), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  q->add_option("-o,--output", qa->out, "Output folder")->required();
  q->callback([qa] { cmd_quantize(*qa); });

  auto pa = std::make_shared<PplArgs>();
  auto* p = app.add_subcommand("perplexity", "Perplexity of a text (sliding window) and tokens/s");
  p->add_option("-m,--model", pa->model, "Model: GGUF file, Hugging Face folder (GPTQ folders too) or llama2.c .bin");
  p->add_option("--tokenizer", pa->tokenizer, "Tokenizer file for llama2.c checkpoints (tokenizer.bin)");
  p->add_option("-f,--file", pa->file, "Text file")->required();
  p->add_option("--ctx", pa->ctx, "Window length in tokens (default 512, at most the model's context)")
      ->check(CLI::Range(2, 1 << 20));
  p->add_option("--stride", pa->stride, "Window step in tokens (default 256)")->check(CLI::Range(1, 1 << 20));
  p->add_option("--device", pa->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  p->add_option("--dtype", pa->dtype, "CUDA compute precision: bf16 (default) or f32")->check(CLI::IsMember({"bf16", "f32"}));
  p->add_option("--quant", pa->quant, "Quantize at load time: int8 or int4 (RTN)")->check(CLI::IsMember({"int8", "int4"}));
  p->add_option("--weights", pa->weights,
                 "Dequantize every quantized tensor to f32 or bf16 first: the float baseline of a quantized file")
      ->check(CLI::IsMember({"f32", "bf16"}));
  p->add_option("--group", pa->group, "int4 group size for --quant (default 128)")->check(CLI::IsMember({32, 64, 128}));
  p->add_flag("--asym", pa->asym, "--quant int4 with zero points (asymmetric)");
  p->add_option("--max-tokens", pa->max_tokens, "Use only the first N tokens of the text (0: all)")
      ->check(CLI::Range(0, 1 << 30));
  p->add_option("-t,--threads", pa->threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 1024));
  p->callback([pa] { cmd_perplexity(*pa); });
}

}  // namespace ignis::cli
