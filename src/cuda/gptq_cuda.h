// GPTQ on the GPU: the counterpart of quant::quantize_gptq (src/quant/gptq.cpp; quantize.h states the
// algorithm) in float32, as the reference implementation of Frantar et al. runs it:
//   - host (double): act-order permutation by decreasing diag(H), dead inputs (H[k][k] == 0 get
//     H[k][k] = 1 and W[:, k] = 0), damp = percdamp * mean(diag H);
//   - cuSOLVER (float): L = chol(H + damp I) (potrf), H^-1 from L (potri), U = upper Cholesky factor
//     of H^-1 (potrf again; U^T U = H^-1); when a factorisation fails the damping grows x10, up to 5
//     times, as on the CPU;
//   - per block of `blocksize` columns: one kernel quantizes the block's columns one after the
//     other (each thread one row of W, the row's block columns in shared memory; group params from
//     the current error-compensated weights when a group starts), then one cuBLAS SGEMM applies the
//     block's errors to every later column: W[:, i2:] -= Err U[i1:i2, i2:].
// The result is a quant::QuantLinear laid out exactly as the CPU one (scales rounded to the scale
// dtype, zeros, g_idx under act-order), so everything downstream takes it unchanged. It matches the
// CPU result up to float32 rounding (a value at a rounding tie may come out one step apart).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/formats.h"
#include "quant/quantize.h"

namespace ignis::cuda {

// Holds the cuBLAS / cuSOLVER handles and a stream for a run of layers (one per model, say).
// Device memory per call: ~ 2 K^2 + 2 N K floats (Hessian, its factor, weights), freed on return.
class GptqSolverCuda {
 public:
  GptqSolverCuda();
  ~GptqSolverCuda();
  GptqSolverCuda(const GptqSolverCuda&) = delete;
  GptqSolverCuda& operator=(const GptqSolverCuda&) = delete;

  // W_host: [N, K] row-major float; H_host: [K, K] row-major (HessianAccumulator::hessian() or
  // GptqHessianCuda::hessian()). `what` names the layer in error messages. Throws ignis::Error for
  // a Hessian of the wrong size or with non-finite entries, non-finite weights, bad options, or a
  // Hessian that is not positive definite even after damping x1e5.
  quant::QuantLinear quantize(const float* W_host, int64_t N, int64_t K, const std::vector<double>& H_host,
                              const quant::QuantSpec& spec, const quant::GptqOptions& opt = {},
                              const std::string& what = "");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot form (creates the handles for this call).
quant::QuantLinear quantize_gptq_cuda(const float* W_host, int64_t N, int64_t K, const std::vector<double>& H_host,
                                      const quant::QuantSpec& spec, const quant::GptqOptions& opt = {});

// Accumulates the Hessian of a layer's inputs on the GPU, as quant::HessianAccumulator does on the
// CPU: sum_t x_t x_t^T over calibration rows x_t (K floats each), H = 2 / n * sum. Rows go through
// cuBLAS SSYRK in float32 in chunks of up to 1024 rows; each chunk's product is added into a double
// sum on the device, so float rounding stays within one chunk.
class GptqHessianCuda {
 public:
  // Work is queued on `stream` (0: the legacy default stream).
  explicit GptqHessianCuda(int64_t K, cudaStream_t stream = nullptr);
  ~GptqHessianCuda();
  GptqHessianCuda(const GptqHessianCuda&) = delete;
  GptqHessianCuda& operator=(const GptqHessianCuda&) = delete;

  // X: rows x K floats, row-major, in host memory (copied in chunks through a device buffer);
  // returns once X has been read.
  void add_host(const float* X, int64_t rows);
  // X: rows x K floats, row-major, in device memory, ready on the stream (read in place; keep it
  // alive until the stream has run the queued work, e.g. until hessian(), which synchronizes).
  void add_device(const float* X_dev, int64_t rows);
  int64_t K() const;
  int64_t samples() const;
  // H = 2 / n * sum x x^T (K x K, row-major, symmetric). Throws if no sample was added.
  std::vector<double> hessian() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ignis::cuda
