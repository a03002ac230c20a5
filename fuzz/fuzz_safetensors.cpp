// libFuzzer target: SafetensorsFile::parse on arbitrary bytes, then every tensor's first and last
// byte. Only ignis::Error may escape the parser (nlohmann exceptions must have been converted).
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/safetensors.h"

using namespace ignis;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = SafetensorsFile::parse(data, size, "fuzz.safetensors");
    volatile uint64_t sink = 0;
    for (const auto& [k, v] : f->metadata()) sink = sink + k.size() + v.size();
    for (const auto& [name, info] : f->tensors()) {
      if (info.end < info.begin || info.end > size) __builtin_trap();
      Tensor t;
      try {
        t = f->tensor(name);
      } catch (const Error&) {
        continue;  // a dtype ignis does not read, or more than 4 dimensions
      }
      if (uint64_t(t.nbytes()) != info.end - info.begin) __builtin_trap();
      const auto* p = static_cast<const uint8_t*>(t.data());
      if (t.nbytes()) sink = sink + p[0] + p[t.nbytes() - 1];
    }
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
