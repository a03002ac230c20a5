// `ignis embed` and `ignis classify`: encoder models (BERT, RoBERTa, MiniLM; see models/bert.h).
//
//   ignis embed -m FOLDER "a text" "another"        one vector per line (or --json)
//   ignis embed -m FOLDER -f texts.txt --batch 64    one text per line of a file ("-" = stdin)
//   cat texts.txt | ignis embed -m FOLDER --json
//   ignis classify -m FOLDER "I loved it" "Meh"       label and score per text, aligned (or --json)
//
// Texts are tokenized as Hugging Face does ([CLS] text [SEP], truncated to the model's maximum
// with a notice), run in ragged batches of --batch texts, with a progress bar on a terminal.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>

#include "cli_common.h"
#include "core/error.h"
#include "io/reader.h"
#include "models/bert.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

#if defined(IGNIS_WITH_CUDA) && __has_include("cuda/bert_cuda.h")
#define IGNIS_CLI_CUDA_ENCODER 1
#include "cuda/bert_cuda.h"
#include "cuda/device.h"
#endif

namespace ignis::cli {
namespace {

using json = nlohmann::json;

struct EncoderArgs {
  std::string model, file, device = "cpu", dtype = "f16", dump_hidden;
  std::vector<std::string> texts;
  int batch = 32, threads = 0;
  bool json_out = false, quiet = false, all_scores = false;

  void add(CLI::App* app, bool classify) {
    app->add_option("-m,--model", model, "Model folder (Hugging Face: config.json, weights, tokenizer)")->required();
    app->add_option("texts", texts, "Texts (default: -f FILE, else one per line on stdin)");
    app->add_option("-f,--file", file, "Read texts from a file, one per line ('-' = stdin)");
    app->add_flag("--json", json_out, "Write JSON instead of plain text");
    app->add_option("--device", device, "Where to run: cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    app->add_option("--dtype", dtype, "CUDA compute precision: f16 (default), bf16 or f32")
        ->check(CLI::IsMember({"f16", "bf16", "f32"}));
    app->add_option("--batch", batch, "Texts per batch (default 32)")->check(CLI::Range(1, 1 << 20));
    app->add_option("-t,--threads", threads, "CPU threads (default: all cores)")->check(CLI::Range(0, 1024));
    app->add_flag("-q,--quiet", quiet, "No notices or progress on stderr");
    if (classify) app->add_flag("--all", all_scores, "Show the score of every label");
    // For parity checks: the last hidden states, f32 [total_tokens, hidden], + FILE.json (ids, offsets).
    app->add_option("--dump-hidden", dump_hidden, "Write the last hidden states to FILE (f32) and FILE.json")
        ->group("");
  }
};

// ---- input ----------------------------------------------------------------------------------------------

std::vector<std::string> read_lines(std::istream& in) {
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(std::move(line));
  }
  return out;
}

std::vector<std::string> gather_texts(const EncoderArgs& a) {
  std::vector<std::string> texts = a.texts;
  if (!a.file.empty()) {
    if (a.file == "-") {
      auto v = read_lines(std::cin);
      texts.insert(texts.end(), v.begin(), v.end());
    } else {
      std::ifstream f(a.file, std::ios::binary);
      if (!f) fail(a.file, ": cannot open the text file");
      auto v = read_lines(f);
      texts.insert(texts.end(), v.begin(), v.end());
    }
  } else if (texts.empty()) {
    if (isatty(0)) fail("no texts: give them as arguments, with -f FILE, or one per line on stdin");
    texts = read_lines(std::cin);
  }
  if (texts.empty()) fail("no texts to encode (the input is empty)");
  return texts;
}

// Up to five notices of a kind, then a count.
struct Notices {
  const char* what;
  std::vector<size_t> items;
  void add(size_t i) { items.push_back(i); }
  void print(bool quiet, const std::function<std::string(size_t)>& detail) const {
    if (quiet || items.empty()) return;
    for (size_t k = 0; k < items.size() && k < 5; ++k)
      std::fprintf(stderr, "note: text %zu %s%s\n", items[k] + 1, what, detail(items[k]).c_str());
    if (items.size() > 5) std::fprintf(stderr, "note: ... and %zu more texts like that\n", items.size() - 5);
  }
};

struct Tokenized {
  std::vector<EncodedText> enc;
};

Tokenized tokenize_all(const EncoderSource& src, const std::vector<std::string>& texts, bool quiet) {
  Tokenized t;
  t.enc.reserve(texts.size());
  Notices empty{"is empty; it is encoded as the special tokens alone", {}};
  Notices bad_utf8{"is not valid UTF-8; invalid bytes were replaced by U+FFFD", {}};
  Notices truncated{"was truncated", {}};
  for (size_t i = 0; i < texts.size(); ++i) {
    if (texts[i].empty()) empty.add(i);
    if (!is_valid_utf8(texts[i])) bad_utf8.add(i);
    t.enc.push_back(encode_text(src, texts[i]));
    if (t.enc.back().truncated()) truncated.add(i);
  }
  auto none = [](size_t) { return std::string(); };
  empty.print(quiet, none);
  bad_utf8.print(quiet, none);
  truncated.print(quiet, [&](size_t i) {
    return " from " + std::to_string(t.enc[i].full_length) + " to " + std::to_string(t.enc[i].ids.size()) +
           " tokens (the model's maximum length)";
  });
  return t;
}

// ---- the model --------------------------------------------------------------------------------------------

std::unique_ptr<EncoderModel> make_encoder(const EncoderArgs& a, const EncoderSource& src) {
  if (a.device == "cpu") return make_cpu_encoder(src, a.threads);
#ifdef IGNIS_CLI_CUDA_ENCODER
  if (cuda::device_count() == 0) fail("--device cuda: no CUDA GPU is visible on this machine");
  EncoderCudaOptions o;
  o.dtype = a.dtype == "f32" ? DType::F32 : a.dtype == "bf16" ? DType::BF16 : DType::F16;
  return make_cuda_encoder(src, o);
#else
  fail("--device cuda: the CUDA encoder is not built into this ignis (no CUDA backend when it was configured)");
#endif
}

class Progress {
 public:
  Progress(size_t total, bool enabled) : total_(total), on_(enabled && isatty(2)), t0_(Clock::now()) {}
  void update(size_t done) {
    if (!on_) return;
    const double s = std::chrono::duration<double>(Clock::now() - t0_).count();
    const int width = 30, fill = int(double(width) * double(done) / double(total_));
    std::fprintf(stderr, "\r[%s%s] %zu/%zu texts  %.0f texts/s ", std::string(size_t(fill), '#').c_str(),
                 std::string(size_t(width - fill), '.').c_str(), done, total_, s > 0 ? double(done) / s : 0.0);
    if (done == total_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  size_t total_;
  bool on_;
  Clock::time_point t0_;
};

// Runs the model over all texts in batches; calls sink(first_text_index, batch, output).
void run_batches(EncoderModel& m, const Tokenized& t, const EncoderArgs& a,
                 const std::function<void(size_t, const EncoderBatch&, const Tensor&)>& sink, bool hidden = false) {
  const size_t n = t.enc.size(), bs = size_t(a.batch);
  Progress bar(n, !a.quiet && !a.json_out && n > bs);
  for (size_t first = 0; first < n; first += bs) {
    EncoderBatch b;
    for (size_t i = first; i < std::min(n, first + bs); ++i) b.add(t.enc[i].ids);
    Tensor out = hidden ? m.hidden_states(b) : m.forward(b);
    sink(first, b, out);
    bar.update(std::min(n, first + bs));
  }
}

std::string fmt(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", double(v));
  return buf;
}

// Floats for JSON with 7 significant digits (the double nearest the short decimal prints short).
json floats(const float* v, int n) {
  json a = json::array();
  for (int i = 0; i < n; ++i) a.push_back(std::strtod(fmt(v[i]).c_str(), nullptr));
  return a;
}

// Writes the hidden states of every text (f32, [total_tokens, hidden]) and FILE.json with the
// token ids and offsets; both through temporary files renamed at the end (no partial output).
void dump_hidden(EncoderModel& m, const Tokenized& t, const EncoderArgs& a, const std::string& path) {
  const std::string tmp = path + ".part", tmp_json = path + ".json.part";
  std::ofstream f(tmp, std::ios::binary);
  if (!f) fail(path, ": cannot write");
  json ids = json::array(), offsets = json::array({0});
  int64_t total = 0;
  try {
    run_batches(m, t, a, [&](size_t, const EncoderBatch& b, const Tensor& h) {
      f.write(static_cast<const char*>(h.data()), std::streamsize(h.nbytes()));
      for (int32_t id : b.ids) ids.push_back(id);
      for (int i = 0; i < b.size(); ++i) offsets.push_back(total += b.length(i));
    }, /*hidden=*/true);
    f.close();
    if (!f) fail(path, ": write failed");
    std::ofstream j(tmp_json);
    j << json{{"hidden", m.config().hidden}, {"ids", ids}, {"offsets", offsets}}.dump() << "\n";
    j.close();
    if (!j) fail(path, ".json: write failed");
    std::filesystem::rename(tmp, path);
    std::filesystem::rename(tmp_json, path + ".json");
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    std::filesystem::remove(tmp_json, ec);
    throw;
  }
  if (!a.quiet) std::fprintf(stderr, "wrote %lld x %d hidden states to %s\n", (long long)total, m.config().hidden, path.c_str());
}

// ---- embed ------------------------------------------------------------------------------------------------

void cmd_embed(const EncoderArgs& a) {
  std::vector<std::string> texts = gather_texts(a);
  EncoderSource src = load_encoder(a.model);
  // Any encoder embeds: a classifier's head is simply not used (pooling per the config).
  src.config.head = EncoderHead::Embedding;
  Tokenized t = tokenize_all(src, texts, a.quiet);
  auto m = make_encoder(a, src);
  if (!a.dump_hidden.empty()) {
    dump_hidden(*m, t, a, a.dump_hidden);
    return;
  }
  const int H = m->config().hidden;
  if (a.json_out) {
    json data = json::array();
    run_batches(*m, t, a, [&](size_t first, const EncoderBatch& b, const Tensor& e) {
      for (int i = 0; i < b.size(); ++i) {
        const float* r = e.row<float>(i);
        data.push_back({{"index", first + size_t(i)}, {"tokens", b.length(i)},
                        {"truncated", t.enc[first + size_t(i)].truncated()}, {"embedding", floats(r, H)}});
      }
    });
    json out = {{"model", a.model}, {"dim", H}, {"pooling", src.config.pooling == Pooling::Cls ? "cls" : "mean"},
                {"normalized", src.config.normalize}, {"data", data}};
    std::printf("%s\n", out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return;
  }
  run_batches(*m, t, a, [&](size_t, const EncoderBatch& b, const Tensor& e) {
    std::string line;
    for (int i = 0; i < b.size(); ++i) {
      line.clear();
      const float* r = e.row<float>(i);
      for (int k = 0; k < H; ++k) (line += k ? " " : "") += fmt(r[k]);
      std::puts(line.c_str());
    }
    std::fflush(stdout);
  });
}

// ---- classify -----------------------------------------------------------------------------------------------

std::vector<float> scores_of(const float* logits, int n, bool multi_label) {
  std::vector<float> p(logits, logits + n);
  if (multi_label) {
    for (float& v : p) v = 1.0f / (1.0f + std::exp(-v));
    return p;
  }
  const float mx = *std::max_element(p.begin(), p.end());
  double sum = 0;
  for (float& v : p) sum += (v = std::exp(v - mx));
  for (float& v : p) v = float(v / sum);
  return p;
}

std::string one_line(const std::string& s, size_t max_chars) {
  std::string out = tok::to_valid_utf8(s);
  for (char& c : out)
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  // Cut at a character boundary.
  size_t chars = 0, i = 0;
  for (; i < out.size(); ++i)
    if ((static_cast<unsigned char>(out[i]) & 0xc0) != 0x80 && ++chars > max_chars) break;
  if (i < out.size()) out = out.substr(0, i) + "...";
  return out;
}

void cmd_classify(const EncoderArgs& a) {
  std::vector<std::string> texts = gather_texts(a);
  EncoderSource src = load_encoder(a.model);
  const EncoderConfig& c = src.config;
  if (c.head == EncoderHead::Embedding)
    fail(a.model, ": ", c.architecture.empty() ? std::string("this model") : c.architecture,
         " has no classification head (use `ignis embed` for sentence embeddings)");
  if (!a.dump_hidden.empty()) fail("--dump-hidden belongs to `ignis embed`");
  Tokenized t = tokenize_all(src, texts, a.quiet);
  auto m = make_encoder(a, src);
  const int L = int(c.labels.size());
  size_t label_w = 5;
  for (const auto& l : c.labels) label_w = std::max(label_w, l.size());
  json data = json::array();
  auto label_scores = [&](const std::vector<float>& p) {
    json s = json::object();
    for (int k = 0; k < L; ++k) s[c.labels[size_t(k)]] = floats(&p[size_t(k)], 1)[0];
    return s;
  };
  auto best = [&](const std::vector<float>& p) { return int(std::max_element(p.begin(), p.end()) - p.begin()); };
  if (!a.json_out && c.head == EncoderHead::SequenceClassification)
    std::printf("%-*s  %-6s  %s\n", int(label_w), "label", "score", "text");
  run_batches(*m, t, a, [&](size_t first, const EncoderBatch& b, const Tensor& out) {
    for (int i = 0; i < b.size(); ++i) {
      const size_t idx = first + size_t(i);
      if (c.head == EncoderHead::SequenceClassification) {
        const float* lg = out.row<float>(i);
        const std::vector<float> p = scores_of(lg, L, c.multi_label);
        const int k = best(p);
        if (a.json_out) {
          data.push_back({{"index", idx}, {"text", texts[idx]}, {"label", c.labels[size_t(k)]}, {"score", floats(&p[size_t(k)], 1)[0]},
                          {"scores", label_scores(p)}, {"logits", floats(lg, L)}});
        } else {
          std::printf("%-*s  %.4f  %s\n", int(label_w), c.labels[size_t(k)].c_str(), double(p[size_t(k)]),
                      one_line(texts[idx], 80).c_str());
          if (a.all_scores)
            for (int j = 0; j < L; ++j)
              if (j != k) std::printf("  %-*s  %.4f\n", int(label_w), c.labels[size_t(j)].c_str(), double(p[size_t(j)]));
        }
      } else {  // token classification: one label per token
        json toks = json::array();
        if (!a.json_out) std::printf("text %zu: %s\n", idx + 1, one_line(texts[idx], 80).c_str());
        for (int tkn = 0; tkn < b.length(i); ++tkn) {
          const int row = b.offsets[size_t(i)] + tkn;
          const int32_t id = b.ids[size_t(row)];
          const std::vector<float> p = scores_of(out.row<float>(row), L, c.multi_label);
          const int k = best(p);
          const std::string piece = src.tokenizer->token_bytes(id);
          if (a.json_out) {
            toks.push_back({{"token", piece}, {"id", id}, {"label", c.labels[size_t(k)]}, {"score", floats(&p[size_t(k)], 1)[0]}});
          } else {
            std::printf("  %-16s %-*s  %.4f\n", one_line(piece, 16).c_str(), int(label_w), c.labels[size_t(k)].c_str(),
                        double(p[size_t(k)]));
          }
        }
        if (a.json_out) data.push_back({{"index", idx}, {"text", texts[idx]}, {"tokens", toks}});
      }
    }
    std::fflush(stdout);
  });
  if (a.json_out) {
    json out = {{"model", a.model}, {"labels", c.labels}, {"multi_label", c.multi_label}, {"data", data}};
    std::printf("%s\n", out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  }
}

}  // namespace

void add_encoder_commands(CLI::App& app) {
  // The options write into these; the callbacks (run inside app.parse()) keep them alive.
  auto embed_a = std::make_shared<EncoderArgs>(), classify_a = std::make_shared<EncoderArgs>();
  auto* embed = app.add_subcommand("embed", "Sentence embeddings from an encoder model (BERT, RoBERTa, MiniLM)");
  embed_a->add(embed, false);
  embed->callback([embed_a] { cmd_embed(*embed_a); });
  auto* classify = app.add_subcommand("classify", "Label texts with a classification model (sequence or token)");
  classify_a->add(classify, true);
  classify->callback([classify_a] { cmd_classify(*classify_a); });
}

}  // namespace ignis::cli
