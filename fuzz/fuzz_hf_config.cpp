// libFuzzer target: parse_hf_llama_config on arbitrary text. A config either parses into a
// LlamaConfig that passes validate(), or throws ignis::Error; nlohmann exceptions must not escape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/model_source.h"

using namespace ignis;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::string text(reinterpret_cast<const char*>(data), size);
    LlamaConfig c = parse_hf_llama_config(text, "fuzz/config.json");
    try {
      c.validate("fuzz/config.json");  // a returned config is always valid
    } catch (const Error&) {
      __builtin_trap();
    }
  } catch (const Error&) {
  }
  return 0;
}
