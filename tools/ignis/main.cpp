// The ignis command line: a thin layer that parses flags and calls the library.
//   ignis generate -m MODEL -p PROMPT     ignis chat -m MODEL     ignis info MODEL
//   ignis tokenize -m MODEL -p TEXT       ignis bench -m MODEL
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <new>
#include <random>
#include <sstream>

#include "cli_common.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/model_source.h"
#include "models/llama.h"
#include "quant/model_quant.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;

namespace {

struct ModelArgs {
  std::string model, tokenizer, device = "cpu", dtype = "bf16", quant, cpu_act = "q8";
  int threads = 0, ctx = 0, group = 128;
  // quant_flags: --quant / --group (not for commands that do not run the model, nor for bench,
  // whose own --quant also covers the synthetic models).
  void add(CLI::App* app, bool positional = false, bool quant_flags = true) {
    if (positional)
      app->add_option("model", model, "Model: a GGUF file, a Hugging Face folder or a llama2.c .bin");
    app->add_option("-m,--model", model,
                    "Model: a GGUF file, a Hugging Face folder or a llama2.c .bin (default: " + cli::default_model_path() +
                        ")");
    app->add_option("--tokenizer", tokenizer, "Tokenizer file for llama2.c checkpoints (tokenizer.bin)");
    app->add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 1024));
    app->add_option("--ctx", ctx, "Context size in tokens (default: the model's, at most 4096)")
        ->check(CLI::Range(0, 1 << 24));
    app->add_option("--device", device, "Where to run: cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    app->add_option("--dtype", dtype, "CUDA compute precision: bf16 (default) or f32")->check(CLI::IsMember({"bf16", "f32"}));
    app->add_option("--cpu-activations", cpu_act,
                    "CPU products with quantized GGUF weights: q8 (activations in 8-bit blocks, as llama.cpp; "
                    "default, fastest) or f32 (weights dequantized, float products; slower, closest to the exact model)")
        ->check(CLI::IsMember({"q8", "f32"}));
    if (!quant_flags) return;
    app->add_option("--quant", quant, "Quantize the linear layers at load time: int8 (per channel) or int4 (RTN)")
        ->check(CLI::IsMember({"int8", "int4"}));
    app->add_option("--group", group, "Values per scale for --quant int4: 32, 64 or 128 (default 128)")
        ->check(CLI::IsMember({32, 64, 128}));
  }
  // GGUF files, HF folders (GPTQ folders too) and llama2.c checkpoints; --quant applied here.
  ModelSource open() const {
    std::string note;
    quant::LoadOptions o;
    o.tokenizer = tokenizer;
    o.quant = quant;
    o.group = group;
    ModelSource src = quant::open_model_for_inference(cli::resolve_model_path(model), o, &note);
    if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
    return src;
  }
};

struct SampleArgs {
  SamplerParams p;
  bool seed_given = false;
  void add(CLI::App* app) {
    app->add_option("--temp", p.temperature, "Sampling temperature; 0 = greedy (default 0.8)");
    app->add_option("--top-k", p.top_k, "Keep the K most likely tokens; 0 = off (default 40)");
    app->add_option("--top-p", p.top_p, "Keep the smallest set with this much probability; 1 = off (default 0.95)");
    app->add_option("--min-p", p.min_p, "Drop tokens below this fraction of the top one; 0 = off (default 0.05)");
    app->add_option("--repeat-penalty", p.repeat_penalty, "Penalty for repeating recent tokens; 1 = off (default 1)");
    app->add_option("--repeat-last-n", p.repeat_last_n, "How many recent tokens the penalty looks at (default 64)");
    app->add_option("--seed", p.seed, "Random seed (default: random)")->each([this](const std::string&) { seed_given = true; });
  }
  SamplerParams resolve() const {
    SamplerParams q = p;
    if (!seed_given) q.seed = std::random_device{}();
    Sampler::validate(q);
    return q;
  }
};

std::unique_ptr<LlamaModel> make_model(const ModelArgs& a, const ModelSource& src) {
  if (a.device == "cuda") return cli::make_cuda_model(src, a.ctx, a.dtype == "f32");
  CpuOptions o;
  o.threads = a.threads;
  o.context = a.ctx;
  o.f32_activations = a.cpu_act == "f32";
  return make_cpu_llama(src, o);
}

const Tokenizer& need_tokenizer(const ModelSource& src) {
  if (!src.tokenizer) fail(src.path, ": no tokenizer found for this model");
  return *src.tokenizer;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
  return ids;
}

ChatTemplate pick_template(const Tokenizer& tok, const std::string& override_name) {
  if (!override_name.empty()) return ChatTemplate::named(override_name);
  return ChatTemplate::detect(tok.chat_template());
}

std::string bos_text(const Tokenizer& tok) { return tok.bos_id() >= 0 ? tok.token_bytes(tok.bos_id()) : ""; }

// Chat-rendered prompts carry their own BOS (if the template writes one); the tokenizer's
// add_bos rule applies to them as well, without doubling it.
std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::string& rendered) {
  std::vector<int32_t> ids = tok.encode(rendered, /*add_special=*/false, /*parse_special=*/true);
  if (tok.add_bos() && tok.bos_id() >= 0 && (ids.empty() || ids[0] != tok.bos_id())) ids.insert(ids.begin(), tok.bos_id());
  return ids;
}

void print_stats(const GenerateResult& r) {
  std::fprintf(stderr, "\n\n[prompt %d tokens in %.1f ms (%.1f tok/s) | generated %zu tokens in %.1f ms (%.1f tok/s) | stop: %s]\n",
               r.prompt_tokens, r.prompt_seconds * 1e3, r.prompt_tokens / std::max(r.prompt_seconds, 1e-9),
               r.tokens.size(), r.decode_seconds * 1e3,
               r.decoded_tokens > 0 ? r.decoded_tokens / std::max(r.decode_seconds, 1e-9) : 0.0, r.stop_reason.c_str());
}

int cmd_generate(const ModelArgs& ma, const SampleArgs& sa, const std::string& prompt_in, const std::string& file,
                 int n, bool ignore_eos, bool chat, const std::string& tmpl, const std::vector<std::string>& stops,
                 bool quiet) {
  std::string prompt = prompt_in;
  if (!file.empty()) prompt = read_text_file(file);
  if (prompt.empty()) fail("the prompt is empty: give one with -p TEXT or -f FILE");
  ModelSource src = ma.open();
  const Tokenizer& tok = need_tokenizer(src);
  auto model = make_model(ma, src);
  std::vector<int32_t> ids;
  if (chat) {
    ChatTemplate t = pick_template(tok, tmpl);
    ids = encode_chat(tok, t.render({{"user", prompt}}, bos_text(tok)));
  } else {
    ids = encode_prompt(tok, prompt);
  }
  GenerateOptions opt;
  opt.max_new_tokens = n;
  opt.sampler = sa.resolve();
  opt.ignore_eos = ignore_eos;
  opt.stop_strings = stops;
  Session s(*model, tok);
  if (!chat && !quiet) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  GenerateResult r = s.generate(ids, opt, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  if (!quiet) print_stats(r);
  return 0;
}

int cmd_chat(const ModelArgs& ma, const SampleArgs& sa, int n, const std::string& tmpl, const std::string& system) {
  ModelSource src = ma.open();
  const Tokenizer& tok = need_tokenizer(src);
  ChatTemplate t = pick_template(tok, tmpl);
  auto model = make_model(ma, src);
  std::fprintf(stderr, "ignis chat: %s on %s, template %s. Type /exit to quit, /reset to start over.\n",
               src.config.name.empty() ? src.path.c_str() : src.config.name.c_str(), model->backend().c_str(),
               t.name().c_str());
  std::vector<ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  Session s(*model, tok);
  GenerateOptions opt;
  opt.max_new_tokens = n;
  opt.sampler = sa.resolve();
  std::string line;
  for (;;) {
    std::fputs("\n> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      msgs.resize(system.empty() ? 0 : 1);
      s.reset();
      continue;
    }
    if (line.empty()) continue;
    msgs.push_back({"user", line});
    std::vector<int32_t> ids = encode_chat(tok, t.render(msgs, bos_text(tok)));
    if (int(ids.size()) + 1 >= model->context_size()) {
      std::fprintf(stderr, "The conversation (%zu tokens) no longer fits in the context (%d); starting over.\n",
                   ids.size(), model->context_size());
      msgs.erase(msgs.begin() + (system.empty() ? 0 : 1), msgs.end() - 1);
      s.reset();
      ids = encode_chat(tok, t.render(msgs, bos_text(tok)));
      if (int(ids.size()) + 1 >= model->context_size()) fail("this message alone is longer than the context");
    }
    GenerateResult r = s.generate(ids, opt, [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    msgs.push_back({"assistant", r.text});
  }
  return 0;
}

int cmd_tokenize(const ModelArgs& ma, const std::string& text, bool add_special, bool no_parse_special) {
  ModelSource src = ma.open();
  const Tokenizer& tok = need_tokenizer(src);
  std::vector<int32_t> ids = tok.encode(text, add_special, !no_parse_special);
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? " " : "") + std::to_string(ids[i]);
  std::puts(out.c_str());
  return 0;
}

// Writes the logits of every position of a token sequence as little-endian float32
// [n_tokens, vocab] (for parity checks against other implementations).
int cmd_logits(const ModelArgs& ma, const std::string& token_list, const std::string& text, const std::string& out) {
  ModelSource src = ma.open();
  std::vector<int32_t> ids;
  if (!token_list.empty()) {
    std::istringstream is(token_list);
    std::string t;
    while (is >> t) {
      try {
        ids.push_back(int32_t(std::stol(t)));
      } catch (const std::exception&) {
        fail("--tokens: '", t, "' is not a token id");
      }
    }
  } else {
    ids = need_tokenizer(src).encode(text, false, true);
  }
  if (ids.empty()) fail("no tokens: give --tokens \"1 2 3\" or -p TEXT");
  auto model = make_model(ma, src);
  std::vector<float> logits = model->forward_all(ids.data(), int(ids.size()), 0);
  std::ofstream f(out, std::ios::binary);
  if (!f) fail("cannot write '", out, "'");
  f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
  if (!f) fail("error writing '", out, "'");
  std::fprintf(stderr, "wrote %zu x %d logits to %s (%s)\n", ids.size(), src.config.vocab_size, out.c_str(),
               model->backend().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ignis: fast transformer inference (CPU and CUDA)", "ignis"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ignis 0.1.0");

  ModelArgs gen_m, chat_m, info_m, tok_m, bench_m;
  SampleArgs gen_s, chat_s;

  auto* gen = app.add_subcommand("generate", "Continue a prompt, streaming the text");
  gen_m.add(gen);
  std::string prompt, prompt_file, tmpl, system;
  int n = 256, chat_n = 512;
  bool ignore_eos = false, use_chat = false, quiet = false;
  std::vector<std::string> stops;
  gen->add_option("-p,--prompt", prompt, "The prompt");
  gen->add_option("-f,--file", prompt_file, "Read the prompt from a file");
  gen->add_option("-n,--n-predict", n, "Most tokens to generate (default 256)")->check(CLI::Range(0, 1 << 24));
  gen->add_flag("--ignore-eos", ignore_eos, "Keep generating after the end-of-sequence token");
  gen->add_flag("--chat", use_chat, "Wrap the prompt in the model's chat template as a user turn");
  gen->add_option("--chat-template", tmpl, "Chat template to use instead of the model's (chatml, llama3, llama2, mistral, gemma, zephyr)");
  gen->add_option("--stop", stops, "Stop when this text is generated (repeatable)");
  gen->add_flag("-q,--quiet", quiet, "Print only the generated text");
  gen_s.add(gen);

  auto* chat = app.add_subcommand("chat", "Talk with a chat model (multi-turn, interactive)");
  chat_m.add(chat);
  std::string chat_tmpl;
  chat->add_option("--chat-template", chat_tmpl, "Chat template to use instead of the model's");
  chat->add_option("--system", system, "System prompt");
  chat->add_option("-n,--n-predict", chat_n, "Most tokens per reply (default 512)")->check(CLI::Range(1, 1 << 24));
  chat_s.add(chat);

  auto* info = app.add_subcommand("info", "Describe a model: architecture, size, tensor types, tokenizer");
  info_m.add(info, /*positional=*/true, /*quant_flags=*/false);

  auto* tokc = app.add_subcommand("tokenize", "Print the token ids of a text");
  tok_m.add(tokc, false, false);
  std::string tok_text;
  bool add_special = false, no_parse_special = false;
  tokc->add_option("-p,--prompt", tok_text, "Text to tokenize")->required();
  tokc->add_flag("--add-special", add_special, "Add BOS/EOS (or [CLS]/[SEP]) as the model does");
  tokc->add_flag("--no-parse-special", no_parse_special, "Treat special-token text as plain text");

  auto* bench = app.add_subcommand("bench", "Measure prompt processing and decoding speed");
  bench_m.add(bench, false, false);
  cli::BenchArgs bench_a;
  bench_a.add(bench);

  auto* logc = app.add_subcommand("logits", "Write the logits of every position as float32 (for parity checks)");
  ModelArgs log_m;
  log_m.add(logc);
  std::string log_tokens, log_text, log_out;
  logc->add_option("--tokens", log_tokens, "Token ids separated by spaces");
  logc->add_option("-p,--prompt", log_text, "Text to tokenize instead of --tokens");
  logc->add_option("-o,--output", log_out, "Output file")->required();

  cli::add_encoder_commands(app);
  cli::add_quant_commands(app);

  cli::add_bench_encoder(app);

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    if (*gen) return cmd_generate(gen_m, gen_s, prompt, prompt_file, n, ignore_eos, use_chat, tmpl, stops, quiet);
    if (*chat) return cmd_chat(chat_m, chat_s, chat_n, chat_tmpl, system);
    if (*info) return cli::cmd_info(open_model(cli::resolve_model_path(info_m.model), info_m.tokenizer));
    if (*logc) return cmd_logits(log_m, log_tokens, log_text, log_out);
    if (*tokc) return cmd_tokenize(tok_m, tok_text, add_special, no_parse_special);
    if (*bench) return cli::cmd_bench(bench_a, bench_m.model.empty() && !bench_a.synthetic.empty() ? "" : cli::resolve_model_path(bench_m.model),
                                      bench_m.tokenizer, bench_m.device, bench_m.threads, bench_m.ctx);
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
