// The standard benchmark of a CUDA Llama model, plus the two device ceilings it is judged
// against (device-to-device copy bandwidth, cuBLAS bf16 GEMM rate), as one result that prints
// as a table or as JSON.
//
// For each batch B and prompt length P: B sequences are prefilled with P random tokens (slots
// 0..B-1), then N tokens are decoded for all of them at once (greedy, GPU sampling, one CUDA
// graph replay + one 4-byte copy per step). Decode tok/s = B N / time; GB/s = (weights read per
// step + KV read per step) / step time. For B = 1 the prefill is timed as time to first token
// (prefill + sampling the first token, ms), from which prefill tok/s and TFLOP/s follow
// (2 * matmul params * P + causal attention flops).
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace ignis {

class CudaLlama;

struct BenchOptions {
  std::vector<int> prompt_lengths = {8, 512};
  int new_tokens = 128;
  std::vector<int> batches = {1, 8};
  int repeats = 3;             // prefill / decode runs per configuration; the median is reported
  bool measure_device = true;  // copy bandwidth and cuBLAS rate
  int breakdown_batch = 0;     // batch of the kernel-by-kernel step breakdown (0: the first row's)
};

struct BenchRow {
  int batch = 1, prompt = 0, new_tokens = 0;
  double decode_tok_s = 0;          // aggregate over the batch
  double decode_tok_s_per_seq = 0;
  double step_ms = 0;               // one decode step (all sequences)
  double decode_gb_s = 0;           // (weights + KV) bytes read per step / step time
  double decode_frac_copy = 0;      // decode_gb_s / copy bandwidth
  double ttft_ms = 0;               // B = 1 only: prefill of P tokens + first sampled token
  double prefill_tok_s = 0;
  double prefill_tflops = 0;
  double prefill_frac_cublas = 0;   // prefill_tflops / cuBLAS bf16 rate
};

struct BenchResult {
  std::string device, model, dtype;
  double copy_gb_s = 0;             // device-to-device copy, (read + written) bytes / s, median
  double cublas_tflops = 0;         // cuBLAS bf16 8192^3 GEMM, median
  double warmup_s = 0;              // weights in memory -> ready (incl. graph capture)
  size_t weight_bytes = 0, weight_bytes_per_step = 0, kv_cache_bytes = 0;
  size_t peak_alloc_bytes = 0;      // high-water mark of the backend's own device allocations
  size_t device_used_bytes = 0;     // cudaMemGetInfo: total - free, at the end (incl. context)
  std::vector<BenchRow> rows;
  // One decode step of the first batch at the longest prompt, kernels timed one by one (ms per
  // kernel category), to compare with the graph-replayed step time of that row.
  int breakdown_batch = 0, breakdown_pos = 0;
  std::vector<std::pair<std::string, double>> decode_breakdown;

  std::string to_json() const;   // one JSON object (pretty-printed)
  std::string to_table() const;  // human-readable, with percentages of the device ceilings
};

BenchResult run_llama_bench(CudaLlama& model, const std::string& model_name, const BenchOptions& opt = {});

// Median of `reps` device-to-device copies of `bytes`, in GB/s counting bytes read + written.
double measure_copy_bandwidth_gb_s(size_t bytes = size_t(1) << 30, int reps = 11);
// Median rate of a bf16 n^3 GEMM through cuBLASLt (fp32 accumulate, bf16 out), TFLOP/s.
double measure_cublas_bf16_tflops(int n = 8192, int reps = 11);

}  // namespace ignis
