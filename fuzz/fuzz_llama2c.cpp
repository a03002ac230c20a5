// libFuzzer target: parse_llama2c on arbitrary bytes, then the first and last float of every
// weight view. Only ignis::Error may escape.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "core/error.h"
#include "io/model_source.h"

using namespace ignis;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    LlamaConfig c;
    std::map<std::string, Tensor> w;
    parse_llama2c(data, size, "fuzz.bin", nullptr, c, w);
    try {
      c.validate("fuzz.bin");  // a returned config is always valid
    } catch (const Error&) {
      __builtin_trap();
    }
    volatile float sink = 0;
    for (const auto& [name, t] : w) {
      const float* p = t.ptr<float>();
      if (t.numel() == 0) __builtin_trap();
      sink = sink + p[0] + p[t.numel() - 1];
    }
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
