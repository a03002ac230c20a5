// The encoder benchmark (`ignis bench-encoder`, hidden; driven by bench/peers_bert.py): latency of
// the CUDA encoder's pass (embeddings + layers, hidden states left on the GPU, as the peers are
// timed) for uniform shapes batch x seq and an explicit ragged batch, measured with CUDA events
// around run() (input staging and copy included), median / min / p90 of `reps` after 3 warm-up
// passes; the first call of each shape (eager pass + graph capture of a new bucket) is timed
// separately. Also a parity mode: hidden states of given token ids written as float32.
#pragma once
#include <string>
#include <vector>

namespace ignis {

struct EncoderBenchArgs {
  std::string model;                 // Hugging Face folder; empty: random weights of `synthetic`
  std::string synthetic = "bert-base";  // bert-base, bert-large, minilm-l6
  std::string dtype = "f16";         // f16, bf16, f32
  std::vector<std::string> shapes = {"1x16", "1x128", "1x256", "1x512", "8x16", "8x128", "8x256", "8x512",
                                     "32x16", "32x128", "32x256", "32x512"};
  std::vector<int> ragged;           // lengths of one ragged batch (row "ragged"), none if empty
  int reps = 30;
  bool json = false;
  bool no_graphs = false;
  bool exact_gelu = false;
  // Parity mode (instead of timing): token ids from a JSON file {"ids": [[...], ...], "type_ids":
  // [[...], ...] (optional)}, last hidden states written to hidden_out as float32 [tokens, hidden]
  // (sequences one after the other, no padding).
  std::string ids_in, hidden_out;
};

// Runs the benchmark (or the parity dump) and prints a table or JSON on stdout; returns the exit code.
// Throws ignis::Error on bad arguments or no GPU.
int run_encoder_bench(const EncoderBenchArgs& args);

}  // namespace ignis
