// The encoder benchmark and parity dump (see bert_bench.h).
#include "cuda/bert_bench.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/mmap.h"
#include "cuda/bert_cuda.h"
#include "cuda/common.h"
#include "cuda/device.h"
#include "models/bert.h"

namespace ignis {
namespace {

using Clock = std::chrono::steady_clock;

EncoderConfig synthetic_config(const std::string& name) {
  EncoderConfig c;
  c.family = EncoderFamily::Bert;
  c.head = EncoderHead::Embedding;
  c.vocab_size = 30522, c.max_positions = 512, c.type_vocab_size = 2;
  if (name == "bert-base") {
    c.hidden = 768, c.layers = 12, c.heads = 12, c.intermediate = 3072;
  } else if (name == "bert-large") {
    c.hidden = 1024, c.layers = 24, c.heads = 16, c.intermediate = 4096;
  } else if (name == "minilm-l6") {
    c.hidden = 384, c.layers = 6, c.heads = 12, c.intermediate = 1536;
  } else {
    fail("unknown synthetic encoder '", name, "' (bert-base, bert-large, minilm-l6)");
  }
  return c;
}

// Random F32 weights for a config (a fast xorshift: bert-base has 110 M values).
EncoderSource synthetic_source(const std::string& name) {
  EncoderSource s;
  s.path = "<synthetic " + name + ">";
  s.config = synthetic_config(name);
  const EncoderConfig& c = s.config;
  uint64_t st = 0x9E3779B97F4A7C15ull;
  auto add = [&](const std::string& n, std::initializer_list<int64_t> shape, float scale, float offset) {
    Tensor t = Tensor::empty(shape, DType::F32);
    float* p = t.ptr<float>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      st ^= st << 13, st ^= st >> 7, st ^= st << 17;
      p[i] = offset + scale * (float(st >> 40) / float(1 << 24) * 2.f - 1.f);
    }
    s.weights[n] = std::move(t);
  };
  const int64_t H = c.hidden, I = c.intermediate;
  add("embeddings.word_embeddings.weight", {c.vocab_size, H}, 0.05f, 0.f);
  add("embeddings.position_embeddings.weight", {c.max_positions, H}, 0.05f, 0.f);
  add("embeddings.token_type_embeddings.weight", {c.type_vocab_size, H}, 0.05f, 0.f);
  add("embeddings.LayerNorm.weight", {H}, 0.1f, 1.f);
  add("embeddings.LayerNorm.bias", {H}, 0.05f, 0.f);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* m : {"query", "key", "value"}) {
      add(p + "attention.self." + m + ".weight", {H, H}, 0.04f, 0.f);
      add(p + "attention.self." + m + ".bias", {H}, 0.02f, 0.f);
    }
    add(p + "attention.output.dense.weight", {H, H}, 0.04f, 0.f);
    add(p + "attention.output.dense.bias", {H}, 0.02f, 0.f);
    add(p + "attention.output.LayerNorm.weight", {H}, 0.1f, 1.f);
    add(p + "attention.output.LayerNorm.bias", {H}, 0.05f, 0.f);
    add(p + "intermediate.dense.weight", {I, H}, 0.04f, 0.f);
    add(p + "intermediate.dense.bias", {I}, 0.02f, 0.f);
    add(p + "output.dense.weight", {H, I}, 0.02f, 0.f);
    add(p + "output.dense.bias", {H}, 0.02f, 0.f);
    add(p + "output.LayerNorm.weight", {H}, 0.1f, 1.f);
    add(p + "output.LayerNorm.bias", {H}, 0.05f, 0.f);
  }
  return s;
}

struct Shape {
  std::string name;
  int batch = 0, seq = 0;  // seq 0: ragged
  std::vector<int> lengths;
};

Shape parse_shape(const std::string& s) {
  const size_t x = s.find('x');
  Shape sh;
  sh.name = s;
  try {
    if (x == std::string::npos) throw std::invalid_argument(s);
    size_t used = 0;
    sh.batch = std::stoi(s.substr(0, x), &used);
    if (used != x) throw std::invalid_argument(s);
    sh.seq = std::stoi(s.substr(x + 1), &used);
    if (used != s.size() - x - 1) throw std::invalid_argument(s);
  } catch (const std::exception&) {
    fail("--shapes: '", s, "' is not BATCHxSEQ (for example 8x128)");
  }
  IGNIS_CHECK(sh.batch >= 1 && sh.seq >= 1, "--shapes: '", s, "' needs a positive batch and length");
  sh.lengths.assign(size_t(sh.batch), sh.seq);
  return sh;
}

EncoderBatch make_batch(const std::vector<int>& lengths, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  EncoderBatch b;
  for (int len : lengths) {
    std::vector<int32_t> ids(static_cast<size_t>(len));
    for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
    b.add(ids);
  }
  return b;
}

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(std::lround(q * double(v.size() - 1))));
  return v[i];
}

DType parse_dtype(const std::string& s) {
  if (s == "f16" || s == "fp16") return DType::F16;
  if (s == "bf16") return DType::BF16;
  if (s == "f32" || s == "fp32") return DType::F32;
  fail("--dtype: '", s, "' is not f16, bf16 or f32");
}

int parity_dump(CudaEncoder& m, const EncoderBenchArgs& a) {
  const nlohmann::json j = [&] {
    try {
      return nlohmann::json::parse(read_text_file(a.ids_in));
    } catch (const nlohmann::json::exception& e) {
      fail(a.ids_in, ": not valid JSON: ", e.what());
    }
  }();
  IGNIS_CHECK(j.is_object() && j.contains("ids") && j["ids"].is_array(), a.ids_in,
              ": expected {\"ids\": [[...], ...]}");
  EncoderBatch b;
  const bool types = j.contains("type_ids");
  for (size_t i = 0; i < j["ids"].size(); ++i) {
    const std::vector<int32_t> ids = j["ids"][i].get<std::vector<int32_t>>();
    b.add(ids);
    if (types) {
      const std::vector<int32_t> t = j["type_ids"][i].get<std::vector<int32_t>>();
      IGNIS_CHECK(t.size() == ids.size(), a.ids_in, ": type_ids[", i, "] has ", t.size(), " values for ", ids.size(),
                  " ids");
      std::copy(t.begin(), t.end(), b.type_ids.end() - ptrdiff_t(t.size()));
    }
  }
  const Tensor h = m.hidden_states(b);
  std::ofstream f(a.hidden_out, std::ios::binary);
  if (!f) fail("cannot write '", a.hidden_out, "'");
  f.write(static_cast<const char*>(h.data()), std::streamsize(h.nbytes()));
  if (!f) fail("error writing '", a.hidden_out, "'");
  nlohmann::json out = {{"tokens", h.dim(0)}, {"hidden", h.dim(1)}, {"sequences", b.size()},
                        {"dtype", std::string(dtype_name(m.dtype()))}, {"file", a.hidden_out}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int run_encoder_bench(const EncoderBenchArgs& a) {
  IGNIS_CHECK(cuda::device_count() > 0, "bench-encoder: no CUDA GPU is visible on this machine");
  IGNIS_CHECK(a.reps >= 1, "bench-encoder: --reps must be at least 1");
  std::vector<Shape> shapes;
  for (const auto& s : a.shapes) shapes.push_back(parse_shape(s));
  if (!a.ragged.empty()) {
    Shape r;
    r.name = "ragged" + std::to_string(a.ragged.size());
    r.batch = int(a.ragged.size());
    r.lengths = a.ragged;
    for (int l : r.lengths) IGNIS_CHECK(l >= 1, "--ragged: lengths must be positive");
    shapes.push_back(r);
  }
  int max_tokens = 512;
  for (const auto& s : shapes) {
    int t = 0;
    for (int l : s.lengths) t += l;
    max_tokens = std::max(max_tokens, t);
  }

  const auto t_load = Clock::now();
  EncoderSource src = a.model.empty() ? synthetic_source(a.synthetic) : load_encoder(a.model);
  const double read_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  EncoderCudaOptions o;
  o.dtype = parse_dtype(a.dtype);
  o.max_tokens = max_tokens;
  o.cuda_graphs = !a.no_graphs;
  o.exact_gelu = a.exact_gelu;
  cuda::DeviceBuffer::reset_peak();
  auto m = make_cuda_encoder_model(src, o);
  if (!a.ids_in.empty()) {
    IGNIS_CHECK(!a.hidden_out.empty(), "bench-encoder: --ids needs --hidden-out");
    return parity_dump(*m, a);
  }
  const EncoderConfig& c = m->config();
  for (const auto& s : shapes)
    for (int l : s.lengths)
      IGNIS_CHECK(l <= c.max_tokens(), "shape ", s.name, ": length ", l, " is longer than the model takes (",
                  c.max_tokens(), ")");

  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  const double H = c.hidden, I = c.intermediate, L = c.layers;
  nlohmann::json rows = nlohmann::json::array();
  for (size_t si = 0; si < shapes.size(); ++si) {
    const Shape& s = shapes[si];
    const EncoderBatch b = make_batch(s.lengths, c.vocab_size, uint32_t(1234 + si));
    const int tokens = b.total_tokens();
    const int graphs_before = m->graph_count();
    const auto t0 = Clock::now();
    m->run(b);
    m->synchronize();
    const double first_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const bool new_graph = m->graph_count() > graphs_before;
    for (int w = 0; w < 3; ++w) m->run(b);
    m->synchronize();
    std::vector<double> ms;
    for (int r = 0; r < a.reps; ++r) {
      CUDA_CHECK(cudaEventRecord(e0, m->stream()));
      m->run(b);
      CUDA_CHECK(cudaEventRecord(e1, m->stream()));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float t = 0;
      CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
      ms.push_back(t);
    }
    double attn = 0;
    for (int l : s.lengths) attn += double(l) * l;
    const double flops = L * (2.0 * tokens * (4 * H * H + 2 * H * I) + 4.0 * attn * H);
    const double med = pct(ms, 0.5);
    rows.push_back({{"name", s.name},
                    {"batch", s.batch},
                    {"seq", s.seq},
                    {"tokens", tokens},
                    {"bucket", m->bucket_of(tokens)},
                    {"first_ms", first_ms},
                    {"new_graph", new_graph},
                    {"capture_ms", new_graph ? m->last_capture_ms() : 0.0},
                    {"ms", med},
                    {"min_ms", pct(ms, 0.0)},
                    {"p90_ms", pct(ms, 0.9)},
                    {"tflops", flops / (med * 1e-3) / 1e12},
                    {"reps", a.reps}});
    if (!a.json)
      std::fprintf(stderr, "%-10s %7.3f ms (first call %.1f ms%s)\n", s.name.c_str(), med, first_ms,
                   new_graph ? ", new graph" : "");
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  nlohmann::json j = {{"device", cuda::device_description(0)},
                      {"model", a.model.empty() ? "synthetic " + a.synthetic : a.model},
                      {"dtype", std::string(dtype_name(m->dtype()))},
                      {"describe", m->describe()},
                      {"read_s", read_s},
                      {"load_s", m->load_seconds()},
                      {"weight_bytes", m->weight_bytes()},
                      {"max_tokens", m->max_tokens()},
                      {"launches_per_layer", m->launches_per_layer()},
                      {"launches_per_pass", m->launches_per_pass()},
                      {"graphs", m->graph_count()},
                      {"peak_alloc_bytes", cuda::DeviceBuffer::peak_bytes()},
                      {"device_used_bytes", total_b - free_b},
                      {"rows", rows}};
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s\n%s; load %.2f s (+ %.2f s reading), weights %.1f MiB, ignis peak %.1f MiB, %d launches per layer\n",
              std::string(j["device"]).c_str(), m->describe().c_str(), m->load_seconds(), read_s,
              double(m->weight_bytes()) / (1 << 20), double(cuda::DeviceBuffer::peak_bytes()) / (1 << 20),
              m->launches_per_layer());
  std::printf("%-10s %7s %7s %9s %9s %9s %10s %8s\n", "shape", "tokens", "bucket", "ms", "min ms", "p90 ms",
              "first ms", "TFLOP/s");
  for (const auto& r : rows)
    std::printf("%-10s %7d %7d %9.3f %9.3f %9.3f %10.1f %8.1f\n", std::string(r["name"]).c_str(), int(r["tokens"]),
                int(r["bucket"]), double(r["ms"]), double(r["min_ms"]), double(r["p90_ms"]), double(r["first_ms"]),
                double(r["tflops"]));
  return 0;
}

}  // namespace ignis
