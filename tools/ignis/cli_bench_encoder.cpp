// `ignis bench-encoder` (hidden): the CUDA encoder benchmark and parity dump that
// bench/peers_bert.py drives (see src/cuda/bert_bench.h). Registered from main.cpp.
#include <CLI/CLI.hpp>

#include "cli_common.h"
#include "core/error.h"

#ifdef IGNIS_WITH_CUDA
#include "cuda/bert_bench.h"
#endif

namespace ignis::cli {

void add_bench_encoder(CLI::App& app) {
  auto* sub = app.add_subcommand("bench-encoder", "Encoder (BERT family) latency on the GPU, for bench/peers_bert.py");
  sub->group("");  // hidden from --help
#ifdef IGNIS_WITH_CUDA
  auto a = std::make_shared<EncoderBenchArgs>();
  sub->add_option("-m,--model", a->model, "Hugging Face encoder folder (default: random weights of --synthetic)");
  sub->add_option("--synthetic", a->synthetic, "Random-weight shape without -m: bert-base, bert-large, minilm-l6");
  sub->add_option("--dtype", a->dtype, "f16 (default), bf16 or f32")->check(CLI::IsMember({"f16", "bf16", "f32"}));
  sub->add_option("--shapes", a->shapes, "BATCHxSEQ shapes, comma separated (default: {1,8,32}x{16,128,256,512})")
      ->delimiter(',');
  sub->add_option("--ragged", a->ragged, "Lengths of one ragged batch, comma separated")->delimiter(',');
  sub->add_option("-r,--reps", a->reps, "Timed passes per shape; the median is reported (default 30)")
      ->check(CLI::Range(1, 100000));
  sub->add_flag("--json", a->json, "Print JSON instead of a table");
  sub->add_flag("--no-graphs", a->no_graphs, "Launch every kernel eagerly (no CUDA graphs)");
  sub->add_flag("--exact-gelu", a->exact_gelu, "erf GELU as its own kernel instead of cuBLASLt's epilogue");
  sub->add_option("--ids", a->ids_in, "Parity mode: JSON file {\"ids\": [[...], ...], \"type_ids\": [[...], ...]}");
  sub->add_option("--hidden-out", a->hidden_out, "Parity mode: write the last hidden states here (float32)");
  sub->callback([a] { run_encoder_bench(*a); });
#else
  sub->allow_extras();
  sub->callback([] { fail("bench-encoder needs the CUDA backend, and this build has none"); });
#endif
}

}  // namespace ignis::cli
