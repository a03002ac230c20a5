// libFuzzer target for the GPTQ layer reader (quant/formats.h), the part of a GPTQ folder that
// is not safetensors framing (fuzz_safetensors covers that): quantization_config JSON and one
// layer's qweight / qzeros / scales / g_idx tensors of fuzzer-chosen shapes. Input:
//   byte 0: bits (4 or 8, low bit) | desc_act | sym | v2;  bytes 1-2: N, K (1..64, K rounded to
//   a multiple of 32); byte 3: group size code; then the raw bytes of the four tensors; after a
//   0x00 byte, an optional JSON config that, when it parses, replaces the header's.
// A layer either loads (then validate() passes, dequantize and to_ggml_blocks run) or the
// reader throws ignis::Error; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "quant/formats.h"
#include "quant/model_quant.h"

using namespace ignis;
using namespace ignis::quant;

namespace {
Tensor from_bytes(const uint8_t*& p, const uint8_t* end, int64_t rows, int64_t cols, DType t) {
  Tensor x = Tensor::zeros({rows, cols}, t);
  const size_t n = std::min<size_t>(x.nbytes(), size_t(end - p));
  std::memcpy(x.data(), p, n);
  p += n;
  return x;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  try {
    GptqConfig cfg;
    cfg.bits = (data[0] & 1) ? 8 : 4;
    cfg.desc_act = data[0] & 2;
    cfg.sym = data[0] & 4;
    cfg.v2 = data[0] & 8;
    const int64_t N = 1 + data[1] % 64, K = 32 * (1 + data[2] % 4);
    const int groups_codes[] = {32, 64, 128, -1, 16, 0};
    cfg.group_size = groups_codes[data[3] % 6];
    const uint8_t* p = data + 4;
    const uint8_t* end = data + size;
    if (const void* z = std::memchr(p, 0, size_t(end - p))) {
      const uint8_t* j = static_cast<const uint8_t*>(z) + 1;
      try {
        cfg = parse_gptq_config(std::string(reinterpret_cast<const char*>(j), size_t(end - j)), "fuzz/config.json");
      } catch (const Error&) {
      }
      end = static_cast<const uint8_t*>(z);
    }
    const int64_t per_word = 32 / cfg.bits;
    const int64_t G = cfg.group_size > 0 ? std::max<int64_t>(1, K / cfg.group_size) : 1;
    GptqTensors t;
    t.qweight = from_bytes(p, end, K / per_word, N, DType::I32);
    t.qzeros = from_bytes(p, end, G, (N + per_word - 1) / per_word, DType::I32);
    t.scales = from_bytes(p, end, G, N, DType::F16);
    if (p < end) t.g_idx = from_bytes(p, end, 1, K, DType::I32).reshape({K});
    const QuantLinear q = from_gptq(t, cfg, "fuzz layer");
    try {
      q.validate("fuzz layer");  // a returned layer is always valid
    } catch (const Error&) {
      __builtin_trap();
    }
    (void)dequantize(q);
    (void)to_ggml_blocks(q);
  } catch (const Error&) {
  }
  return 0;
}
