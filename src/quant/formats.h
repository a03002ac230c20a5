// Weight-only quantized linear layers: int8 per output channel and int4 group-wise, in memory
// (QuantLinear) and in the Hugging Face GPTQ checkpoint layout (AutoGPTQ / transformers).
//
// A linear layer computes y = x W^T with W[N, K] (N outputs, K inputs). Quantized, row n and
// input column k hold an unsigned integer q[n, k] and
//
//     W[n, k] = scale[n, g] * (q[n, k] - zero[n, g]),   g = the group of column k
//
// int8  (QFormat::kInt8): one group per row (group == K), symmetric: q is stored as a signed
//       int8 (q - 128 in [-128, 127]) and zero is 0. Scales f32, bf16 or f16.
// int4  (QFormat::kInt4): groups of 32, 64 or 128 consecutive columns (or, with act-order, the
//       columns g_idx assigns to each group); q in [0, 15]; symmetric (zero = 8, `zeros` empty)
//       or asymmetric (`zeros` holds one zero point in [0, 15] per row and group).
//
// In-memory layouts (row-major, chosen for the GPU kernels in src/cuda/gemv_quant.cu, where a
// warp streams whole rows with 16-byte loads):
//   int8 qdata: int8 [N, K] (plain row-major, one byte per weight).
//   int4 qdata: uint8 [N, K/2]: the 8 values k = 8j..8j+7 of a row fill one little-endian uint32
//               word, value 8j+i in bits 4i..4i+3 (so byte k/2 holds value k in its low nibble when
//               k is even, in its high nibble when k is odd). A 16-byte load is 32 consecutive
//               values of one row. (This is GPTQ's qweight transposed: GPTQ packs the same 8
//               nibbles along K but lays the words out [K/8, N].)
//   scales:     float [N, G] with G = K / group (int8: G = 1); the values are exactly
//               representable in scale_dtype (quantizers round them), so storing them in that
//               dtype is lossless.
//   zeros:      uint8 [N, G] (int4 asymmetric only), values 0..15.
//   g_idx:      int32 [K] (int4 act-order only): group of each input column; empty means
//               g = k / group. Every group then still holds exactly `group` columns.
//
// GPTQ checkpoint layout (per linear layer `<p>` = e.g. model.layers.0.self_attn.q_proj):
//   <p>.qweight int32 [K*bits/32, N]: word (i, n) packs 32/bits values of column n along K,
//               value k = (32/bits) i + j in bits j*bits...; values are unsigned (0..2^bits-1).
//   <p>.qzeros  int32 [G, N*bits/32]: word (g, i) packs the zero points of columns
//               (32/bits) i + j in bits j*bits... (ignis also writes and reads layers whose N is
//               not a multiple of 32/bits, with ceil(N*bits/32) words, the last one padded;
//               HF tooling never produces such layers)
//   <p>.scales  float16 [G, N]
//   <p>.g_idx   int32 [K] (optional; written as k / group when there is no act-order)
//   config.json "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128,
//               "desc_act": false, "sym": true, "checkpoint_format": "gptq"}; or the same keys
//               in quantize_config.json beside it (older AutoGPTQ folders).
// Zero-point convention. AutoGPTQ (and transformers/optimum, whose checkpoints fill the hub)
// store `zero - 1` in qzeros and add the 1 back when dequantizing ("checkpoint_format": "gptq",
// the default and the only format before GPTQModel): a symmetric 4-bit layer stores 7 for its
// zero point 8 (0x77777777 words). GPTQModel's "gptq_v2" stores the zero point itself (the v1
// convention cannot represent zero = 0: it wraps to 15). ignis reads both (v1 unless the config
// says "gptq_v2"), writes v1 for symmetric layers (every tool reads it) and "gptq_v2" for
// asymmetric int4 (exact for every zero point). int8 is written as GPTQ bits = 8, group_size = -1
// (per channel), sym: qweight packs 4 bytes q + 128 per word, zero point 128.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace ignis::quant {

enum class QFormat : uint8_t { kInt8, kInt4 };

struct QuantLinear {
  QFormat format = QFormat::kInt4;
  int64_t N = 0, K = 0;
  int group = 128;                  // int4: 32, 64 or 128; int8: K
  DType scale_dtype = DType::F16;   // F32, BF16 or F16
  std::vector<uint8_t> qdata;       // see the layouts above
  std::vector<float> scales;        // [N, G]
  std::vector<uint8_t> zeros;       // [N, G] or empty (symmetric)
  std::vector<int32_t> g_idx;       // [K] or empty (contiguous groups)

  int64_t groups() const { return group > 0 ? K / group : 0; }
  bool symmetric() const { return zeros.empty(); }
  int bits() const { return format == QFormat::kInt8 ? 8 : 4; }
  // Group of input column k.
  int64_t group_of(int64_t k) const { return g_idx.empty() ? k / group : g_idx[size_t(k)]; }
  // Unsigned quantized value of (n, k): int8 gives q + 128, int4 the nibble.
  int q(int64_t n, int64_t k) const;
  void set_q(int64_t n, int64_t k, int v);
  int zero(int64_t n, int64_t g) const { return format == QFormat::kInt8 ? 128 : zeros.empty() ? 8 : zeros[size_t(n * groups() + g)]; }
  // The dequantized weight W[n, k].
  float weight(int64_t n, int64_t k) const {
    const int64_t g = group_of(k);
    return scales[size_t(n * groups() + g)] * float(q(n, k) - zero(n, g));
  }
  // Bytes of weights + scales + zeros as the GPU kernels store them (scales in scale_dtype).
  size_t storage_bytes() const;

  // Throws ignis::Error naming `what` and the first inconsistency: unsupported group size,
  // K not a multiple of it, sizes of qdata / scales / zeros / g_idx that do not match N and K,
  // non-finite scales, zero points or g_idx out of range, a group that does not hold `group` columns.
  void validate(const std::string& what) const;
};

// An empty layer of the given shape with storage allocated (zeros), for quantizers.
QuantLinear make_quant_linear(QFormat f, int64_t N, int64_t K, int group, bool symmetric, DType scale_dtype);

// W as float [N, K].
std::vector<float> dequantize(const QuantLinear& q);
// Row n of W as float (K values).
void dequantize_row(const QuantLinear& q, int64_t n, float* out);

// Rounds a scale to what dtype t stores (F32: unchanged); _up: to the nearest value >= s
// (for positive s), so that |x| / scale never exceeds the range the scale was computed for.
float round_scale(float s, DType t);
float round_scale_up(float s, DType t);

// With act-order (g_idx set), the columns of a group are scattered over K. The GPU kernels need
// contiguous groups: this returns the layer with its columns reordered so that group g holds
// columns [g*group, (g+1)*group), and perm such that new column j is old column perm[j]; then
// y = x W^T = x[:, perm] W'^T. Without g_idx it returns the layer unchanged and an empty perm.
QuantLinear contiguous_groups(const QuantLinear& q, std::vector<int32_t>& perm);

// ---- GPTQ checkpoint layout ---------------------------------------------------------------------

struct GptqConfig {
  int bits = 4;
  int group_size = 128;       // -1: one group per row
  bool desc_act = false;
  bool sym = true;
  bool v2 = false;            // "checkpoint_format": "gptq_v2" (zero points stored as is)
};
// Reads the "quantization_config" object of config.json (or a quantize_config.json object).
// Throws for a quant_method other than gptq, bits other than 4 or 8, a bad group size.
GptqConfig parse_gptq_config(const std::string& json_text, const std::string& what);

struct GptqTensors {
  Tensor qweight, qzeros, scales, g_idx;  // I32, I32, F16, I32 (g_idx may be undefined)
};
// Converts to the GPTQ layout (scales to fp16: exact when scale_dtype is F16). `v2` chooses the
// zero-point convention (see the top of this file); v1 fails for an asymmetric zero point of 0.
GptqTensors to_gptq(const QuantLinear& q, bool v2);
// Builds a QuantLinear (scale_dtype F16) from GPTQ tensors of a layer named `what`; checks every
// shape against each other and the config (group size, bits) and throws naming the tensor.
// g_idx equal to k / group is dropped (contiguous groups).
QuantLinear from_gptq(const GptqTensors& t, const GptqConfig& cfg, const std::string& what);

}  // namespace ignis::quant
