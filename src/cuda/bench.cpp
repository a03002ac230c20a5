// See bench.h.
#include "cuda/bench.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "cuda/common.h"
#include "cuda/device.h"
#include "cuda/gemm.h"
#include "cuda/kernels.h"
#include "cuda/llama_cuda.h"

namespace ignis {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `reps` runs of fn on the default stream with events; returns the median in seconds.
template <typename F>
double time_events(int reps, F&& fn) {
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    CUDA_CHECK(cudaEventRecord(a));
    fn();
    CUDA_CHECK(cudaEventRecord(b));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e-3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(t);
}

}  // namespace

double measure_copy_bandwidth_gb_s(size_t bytes, int reps) {
  cuda::DeviceBuffer src(bytes), dst(bytes);
  cuda::fill_random(DType::F32, src.get(), bytes / 4, 7, 1.f, 0.f, nullptr);
  CUDA_CHECK(cudaMemcpy(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));  // warm
  const double t = time_events(reps, [&] {
    CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, nullptr));
  });
  return 2.0 * double(bytes) / t / 1e9;
}

double measure_cublas_bf16_tflops(int n, int reps) {
  const size_t elems = size_t(n) * n;
  cuda::DeviceBuffer a(elems * 2), b(elems * 2), c(elems * 2);
  cuda::fill_random(DType::BF16, a.get(), elems, 11, 1.f, 0.f, nullptr);  // never time on zeros
  cuda::fill_random(DType::BF16, b.get(), elems, 12, 1.f, 0.f, nullptr);
  cuda::LtGemm gemm;
  gemm.matmul(DType::BF16, a.get(), b.get(), DType::BF16, c.get(), n, n, n, 0.f, nullptr);  // warm + heuristic
  CUDA_CHECK(cudaDeviceSynchronize());
  const double t = time_events(reps, [&] {
    gemm.matmul(DType::BF16, a.get(), b.get(), DType::BF16, c.get(), n, n, n, 0.f, nullptr);
  });
  return 2.0 * double(n) * n * n / t / 1e12;
}

BenchResult run_llama_bench(CudaLlama& m, const std::string& model_name, const BenchOptions& opt) {
  const LlamaConfig& cfg = m.config();
  BenchResult res;
  res.device = cuda::device_description();
  res.model = model_name;
  res.dtype = std::string(dtype_name(m.dtype()));
  res.warmup_s = m.warmup_seconds();
  res.weight_bytes = m.weight_bytes();
  res.weight_bytes_per_step = m.weight_bytes_per_step();
  res.kv_cache_bytes = m.kv_cache_bytes();

  const int hd = cfg.head_dim ? cfg.head_dim : cfg.dim / cfg.n_heads;
  const size_t esz = m.dtype() == DType::BF16 ? 2 : 4;
  // matmul parameters of the layers (the output head is counted once: only the last token's logits)
  const double layer_params = double(m.weight_bytes_per_step()) / double(esz) - double(cfg.vocab_size) * cfg.dim;
  SamplingParams greedy;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  auto next_token = [&] {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return int32_t(rng % uint64_t(cfg.vocab_size));
  };

  for (int B : opt.batches) {
    if (B > m.max_batch()) {
      std::fprintf(stderr, "bench: skipping batch %d (model built with max_batch %d)\n", B, m.max_batch());
      continue;
    }
    for (int P : opt.prompt_lengths) {
      if (P + opt.new_tokens + 1 > m.context_size()) {
        std::fprintf(stderr, "bench: skipping prompt %d + %d tokens (context %d)\n", P, opt.new_tokens,
                     m.context_size());
        continue;
      }
      BenchRow row;
      row.batch = B, row.prompt = P, row.new_tokens = opt.new_tokens;
      std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
      for (auto& p : prompts)
        for (int i = 0; i < P; ++i) p.push_back(next_token());
      std::vector<int32_t> cur(static_cast<size_t>(B)), out(static_cast<size_t>(B));
      std::vector<double> ttft, decode;
      for (int rep = 0; rep < std::max(1, opt.repeats) + 1; ++rep) {  // first repetition is a warm-up
        const auto t0 = Clock::now();
        cur[0] = m.prefill_sample(0, prompts[0].data(), P, 0, greedy);
        const double t_first = seconds_since(t0);
        for (int b = 1; b < B; ++b) cur[size_t(b)] = m.prefill_sample(b, prompts[size_t(b)].data(), P, 0, greedy);
        m.decode_batch_sample(cur.data(), B, P, greedy, out.data());  // captures the graph on first use
        const auto t1 = Clock::now();
        for (int s = 0; s < opt.new_tokens; ++s) {
          m.decode_batch_sample(cur.data(), B, P + s, greedy, out.data());
          cur = out;
        }
        const double t_dec = seconds_since(t1);
        if (rep > 0) ttft.push_back(t_first), decode.push_back(t_dec);
      }
      const double td = median(decode), tf = median(ttft);
      row.step_ms = td / opt.new_tokens * 1e3;
      row.decode_tok_s = double(B) * opt.new_tokens / td;
      row.decode_tok_s_per_seq = double(opt.new_tokens) / td;
      const double kv = double(B) * double(m.kv_bytes_per_step(P + opt.new_tokens / 2));
      row.decode_gb_s = (double(m.weight_bytes_per_step()) + kv) / (td / opt.new_tokens) / 1e9;
      if (B == 1) {
        row.ttft_ms = tf * 1e3;
        row.prefill_tok_s = P / tf;
        const double attn = 4.0 * cfg.n_layers * cfg.n_heads * hd * (double(P) * (P + 1) / 2);
        const double flops = 2.0 * layer_params * P + 2.0 * double(cfg.vocab_size) * cfg.dim + attn;
        row.prefill_tflops = flops / tf / 1e12;
      }
      res.rows.push_back(row);
    }
  }
  if (!res.rows.empty()) {
    int longest = 0;
    res.breakdown_batch = opt.breakdown_batch > 0 ? opt.breakdown_batch : res.rows[0].batch;
    for (const auto& r : res.rows)
      if (r.batch == res.breakdown_batch) longest = std::max(longest, r.prompt);
    res.breakdown_pos = longest;
    res.decode_breakdown = m.profile_decode_step(res.breakdown_batch, longest);
  }
  res.peak_alloc_bytes = cuda::DeviceBuffer::peak_bytes();
  if (opt.measure_device) {
    res.copy_gb_s = measure_copy_bandwidth_gb_s();
    res.cublas_tflops = measure_cublas_bf16_tflops();
  }
  for (auto& r : res.rows) {
    if (res.copy_gb_s > 0) r.decode_frac_copy = r.decode_gb_s / res.copy_gb_s;
    if (res.cublas_tflops > 0) r.prefill_frac_cublas = r.prefill_tflops / res.cublas_tflops;
  }
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  res.device_used_bytes = total_b - free_b;
  return res;
}

std::string BenchResult::to_json() const {
  nlohmann::json j;
  j["device"] = device;
  j["model"] = model;
  j["dtype"] = dtype;
  j["copy_gb_s"] = copy_gb_s;
  j["cublas_bf16_tflops"] = cublas_tflops;
  j["warmup_s"] = warmup_s;
  j["weight_bytes"] = weight_bytes;
  j["weight_bytes_per_step"] = weight_bytes_per_step;
  j["kv_cache_bytes"] = kv_cache_bytes;
  j["peak_alloc_bytes"] = peak_alloc_bytes;
  j["device_used_bytes"] = device_used_bytes;
  j["decode_breakdown"] = {{"batch", breakdown_batch}, {"pos", breakdown_pos}, {"ms", nlohmann::json::object()}};
  for (const auto& [k, v] : decode_breakdown) j["decode_breakdown"]["ms"][k] = v;
  j["rows"] = nlohmann::json::array();
  for (const auto& r : rows) {
    nlohmann::json o;
    o["batch"] = r.batch;
    o["prompt"] = r.prompt;
    o["new_tokens"] = r.new_tokens;
    o["decode_tok_s"] = r.decode_tok_s;
    o["decode_tok_s_per_seq"] = r.decode_tok_s_per_seq;
    o["step_ms"] = r.step_ms;
    o["decode_gb_s"] = r.decode_gb_s;
    o["decode_frac_copy"] = r.decode_frac_copy;
    if (r.batch == 1) {
      o["ttft_ms"] = r.ttft_ms;
      o["prefill_tok_s"] = r.prefill_tok_s;
      o["prefill_tflops"] = r.prefill_tflops;
      o["prefill_frac_cublas"] = r.prefill_frac_cublas;
    }
    j["rows"].push_back(o);
  }
  return j.dump(2);
}

std::string BenchResult::to_table() const {
  std::ostringstream os;
  char buf[512];
  std::snprintf(buf, sizeof buf, "model %s (%s) on %s\n", model.c_str(), dtype.c_str(), device.c_str());
  os << buf;
  std::snprintf(buf, sizeof buf,
                "device ceilings: copy %.0f GB/s (read+write), cuBLAS bf16 %.0f TFLOP/s\n"
                "weights %.2f GB (%.2f GB read per step), KV cache %.2f GB, peak alloc %.2f GB, device used %.2f GB\n"
                "warm-up (weights in memory -> ready): %.3f s\n",
                copy_gb_s, cublas_tflops, weight_bytes / 1e9, weight_bytes_per_step / 1e9, kv_cache_bytes / 1e9,
                peak_alloc_bytes / 1e9, device_used_bytes / 1e9, warmup_s);
  os << buf;
  os << "batch prompt  new | decode tok/s  per-seq  step ms    GB/s  %copy |  TTFT ms  prefill tok/s  TFLOP/s  %cuBLAS\n";
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, "%5d %6d %4d | %12.1f %8.1f %8.3f %7.0f %5.1f%% |", r.batch, r.prompt,
                  r.new_tokens, r.decode_tok_s, r.decode_tok_s_per_seq, r.step_ms, r.decode_gb_s,
                  100 * r.decode_frac_copy);
    os << buf;
    if (r.batch == 1) {
      std::snprintf(buf, sizeof buf, " %8.2f %14.0f %8.1f %7.1f%%\n", r.ttft_ms, r.prefill_tok_s, r.prefill_tflops,
                    100 * r.prefill_frac_cublas);
      os << buf;
    } else {
      os << "        -              -        -        -\n";
    }
  }
  if (!decode_breakdown.empty()) {
    std::snprintf(buf, sizeof buf, "decode step, batch %d at position %d, kernels one by one (ms):", breakdown_batch,
                  breakdown_pos);
    os << buf;
    for (const auto& [k, v] : decode_breakdown) {
      std::snprintf(buf, sizeof buf, " %s %.3f", k.c_str(), v);
      os << buf;
      if (k == "gemv" && v > 0) {
        std::snprintf(buf, sizeof buf, " (%.0f GB/s)", double(weight_bytes_per_step) / (v * 1e-3) / 1e9);
        os << buf;
      }
      os << ";";
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace ignis
