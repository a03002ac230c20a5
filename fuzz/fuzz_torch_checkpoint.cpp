// libFuzzer target: the PyTorch checkpoint reader (io/torch_checkpoint.h). A zip archive ("PK...")
// goes through parse_torch_state_dict (libzip, the pickle machine, storage reads with strides);
// anything else is fed to the pickle machine alone. Only ignis::Error may escape, and no pickle
// may make the reader allocate or recurse without bound.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "io/torch_checkpoint.h"

using namespace ignis;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
      auto sd = parse_torch_state_dict(data, size, "fuzz.bin");
      volatile uint64_t sink = 0;
      for (const auto& [name, t] : sd) {
        const auto* p = static_cast<const uint8_t*>(t.data());
        if (t.nbytes()) sink = sink + p[0] + p[t.nbytes() - 1];
      }
      (void)sink;
    } else {
      volatile size_t n = describe_torch_pickle(data, size, "fuzz.pkl").size();
      (void)n;
    }
  } catch (const Error&) {
  }
  return 0;
}
