// `ignis bench`: prompt-processing (pp) and decode (tg) speed of a model, as a table or JSON.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "cli_common.h"
#include "core/error.h"
#include "quant/model_quant.h"
#include "tokenizer/tokenizer.h"

namespace ignis::cli {

void BenchArgs::add(CLI::App* app) {
  app->add_option("-p,--prompt-tokens", prompt_tokens, "Prompt length for the prompt-processing test (default 128 on the CPU, 512 on the GPU)")
      ->check(CLI::Range(0, 1 << 20));
  app->add_option("-n,--gen-tokens", gen_tokens, "Tokens for the decode test (default 64 on the CPU, 128 on the GPU)")->check(CLI::Range(0, 1 << 20));
  app->add_option("-r,--reps", reps, "Repetitions; the table shows mean and standard deviation (default 3)")
      ->check(CLI::Range(1, 1000));
  app->add_option("--batch", batch, "Sequences decoded together (GPU synthetic benchmark)")->check(CLI::Range(1, 64));
  app->add_option("--synthetic", synthetic, "Random-weight model of a known shape on the GPU: llama-2-7b, llama-3-8b, llama-2-13b, smollm2-135m");
  app->add_option("--quant", quant,
                  "Weight-only quantized linear layers: int8 or int4 (a model file: RTN at load time); a synthetic "
                  "model also takes a GGUF block type: q8_0, q4_0, q4_1, q4_k, q5_k, q6_k")
      ->check(CLI::IsMember({"int8", "int4", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"}));
  app->add_option("--group", quant_group, "Values per scale for --quant int4 (32, 64 or 128; default 128)")
      ->check(CLI::IsMember({32, 64, 128}));
  app->add_flag("--json", json, "Print JSON instead of a table");
}

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
struct Stat {
  double mean = 0, sd = 0;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0;
  return s;
}
}  // namespace

int bench_synthetic(const BenchArgs& a);  // cli_cuda.cpp

int cmd_bench(const BenchArgs& args, const std::string& model_path, const std::string& tokenizer, const std::string& device,
              int threads, int ctx) {
  if (!args.synthetic.empty()) return bench_synthetic(args);
  BenchArgs a = args;
  if (a.prompt_tokens <= 0) a.prompt_tokens = 128;
  if (a.gen_tokens <= 0) a.gen_tokens = 64;
  quant::LoadOptions lo;
  lo.tokenizer = tokenizer;
  lo.quant = a.quant;
  lo.group = a.quant_group;
  std::string note;
  ModelSource src = quant::open_model_for_inference(model_path, lo, &note);
  if (!note.empty() && !a.json) std::fprintf(stderr, "note: %s\n", note.c_str());
  std::unique_ptr<LlamaModel> model;
  if (device == "cuda") {
    model = make_cuda_model(src, ctx);
  } else {
    CpuOptions o;
    o.threads = threads;
    o.context = ctx > 0 ? ctx : std::min(src.config.max_seq_len, a.prompt_tokens + a.gen_tokens + 8);
    model = make_cpu_llama(src, o);
  }
  if (a.prompt_tokens + a.gen_tokens > model->context_size())
    fail("the benchmark needs ", a.prompt_tokens + a.gen_tokens, " positions but the context holds ",
         model->context_size());
  const int vocab = src.config.vocab_size;
  std::mt19937 rng(42);
  std::vector<int32_t> prompt(size_t(a.prompt_tokens));
  for (auto& t : prompt) t = int32_t(rng() % uint32_t(vocab));

  if (!a.json) std::fprintf(stderr, "warming up...\n");
  model->forward(prompt.data(), std::min(a.prompt_tokens, 16), 0);  // touch the weights once

  std::vector<double> pp, tg;
  for (int r = 0; r < a.reps; ++r) {
    if (!a.json) std::fprintf(stderr, "\rrun %d/%d", r + 1, a.reps);
    auto t0 = std::chrono::steady_clock::now();
    const float* logits = model->forward(prompt.data(), a.prompt_tokens, 0);
    pp.push_back(a.prompt_tokens / seconds_since(t0));
    // decode: greedy from the end of the prompt, one token per forward pass
    int32_t tok = int32_t(std::max_element(logits, logits + vocab) - logits);
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.gen_tokens; ++i) {
      logits = model->forward(&tok, 1, a.prompt_tokens + i);
      tok = int32_t(std::max_element(logits, logits + vocab) - logits);
    }
    tg.push_back(a.gen_tokens / seconds_since(t0));
  }
  if (!a.json) std::fprintf(stderr, "\r");
  const Stat p = stat(pp), g = stat(tg);
  std::string name = src.config.name.empty() ? src.path : src.config.name;
  std::string types;
  if (auto it = src.weights.find("blk.0.attn_q.weight"); it != src.weights.end()) types = std::string(dtype_name(it->second.dtype()));
  if (a.json) {
    nlohmann::json j = {{"model", name},           {"weights", types},        {"backend", model->backend()},
                        {"prompt_tokens", a.prompt_tokens}, {"gen_tokens", a.gen_tokens}, {"reps", a.reps},
                        {"prefill_tok_s", p.mean}, {"prefill_tok_s_sd", p.sd}, {"decode_tok_s", g.mean},
                        {"decode_tok_s_sd", g.sd}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%-32s %-8s %-18s %-8s %16s\n", "model", "weights", "backend", "test", "tok/s");
  char pp_name[32], tg_name[32];
  std::snprintf(pp_name, sizeof pp_name, "pp%d", a.prompt_tokens);
  std::snprintf(tg_name, sizeof tg_name, "tg%d", a.gen_tokens);
  std::printf("%-32.32s %-8s %-18s %-8s %9.1f ± %5.1f\n", name.c_str(), types.c_str(), model->backend().c_str(), pp_name,
              p.mean, p.sd);
  std::printf("%-32s %-8s %-18s %-8s %9.1f ± %5.1f\n", "", "", "", tg_name, g.mean, g.sd);
  return 0;
}

}  // namespace ignis::cli
