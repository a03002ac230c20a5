// Quantizers: round-to-nearest (RTN) and GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers"), producing QuantLinear (formats.h).
//
// Scale and zero point of a group of values x (one row, the group's columns), maxq = 2^bits - 1,
// as GPTQ's Quantizer (sym and asym) except for all-positive symmetric groups, which GPTQ's code
// clips (it keeps xmin = 0 there); here every symmetric group is centred:
//   symmetric:  scale = 2 max|x| / maxq,               zero = (maxq + 1) / 2  (8 or 128)
//   asymmetric: scale = (max(x, 0) - min(x, 0)) / maxq, zero = round(-min(x, 0) / scale)
//   q = clamp(round(x / scale) + zero, 0, maxq)   (scale rounded to the scale dtype first)
// So |x - scale (q - zero)| <= scale / 2 for every x of the group (RTN).
#pragma once
#include <cstdint>
#include <vector>

#include "core/threadpool.h"
#include "quant/formats.h"

namespace ignis::quant {

struct QuantSpec {
  QFormat format = QFormat::kInt4;
  int group = 128;               // int4: 32, 64, 128 (int8: ignored, per channel)
  bool symmetric = true;         // int8: always symmetric
  DType scale_dtype = DType::F16;
};

// Round-to-nearest of W [N, K] (row-major float). pool may be null (single thread).
QuantLinear quantize_rtn(const float* W, int64_t N, int64_t K, const QuantSpec& spec, ThreadPool* pool = nullptr);

// Accumulates sum_t x_t x_t^T over calibration rows x_t (K floats each), in double.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t K) : K_(K), sum_(size_t(K * K), 0.0) {}
  // X: rows x K floats, row-major.
  void add(ThreadPool& pool, const float* X, int64_t rows);
  int64_t K() const { return K_; }
  int64_t samples() const { return n_; }
  // H = 2 / n * sum x x^T  (K x K, row-major). Throws if no sample was added.
  std::vector<double> hessian() const;

 private:
  int64_t K_;
  int64_t n_ = 0;
  std::vector<double> sum_;
};

struct GptqOptions {
  double percdamp = 0.01;  // damping: H += percdamp * mean(diag H) * I
  int blocksize = 128;     // columns per lazy batch update
  bool act_order = false;  // quantize columns in order of decreasing diag(H); sets g_idx (int4)
};

// GPTQ of W [N, K] given the Hessian H [K, K] of the layer's inputs (HessianAccumulator):
//   dead inputs (H[k][k] == 0) get H[k][k] = 1 and W[:, k] = 0; H += damp I;
//   U = upper Cholesky factor of H^-1 (U^T U = H^-1);
//   for each block of `blocksize` columns, for each column i (in act order when asked): when a
//   group starts at i, its scales/zeros are computed from the current (error-compensated) weights
//   of its columns; q = quantize(w_i); err = (w_i - q) / U[i][i]; the block's later columns
//   get w_j -= err U[i][j]; after the block, the later columns get the whole block's errors at
//   once (W[:, i2:] -= Err U[i1:i2, i2:]).
// Float64 throughout, rows in parallel on the pool. Throws if H is not positive definite even
// after 5 increases of the damping (x10 each).
QuantLinear quantize_gptq(ThreadPool& pool, const float* W, int64_t N, int64_t K, const std::vector<double>& H,
                          const QuantSpec& spec, const GptqOptions& opt = {});

namespace detail {
// Scale and zero point of `count` values (stride `stride` apart) under spec; see the top.
void find_params(const double* x, int64_t count, int64_t stride, const QuantSpec& spec, float& scale, int& zero);
int max_q(const QuantSpec& spec);
}  // namespace detail

}  // namespace ignis::quant
