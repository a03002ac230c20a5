// libFuzzer target: GGUFFile::parse on arbitrary bytes. A file either parses -- and then every
// metadata value and the first and last byte of every tensor view are read (ASan checks them) --
// or throws ignis::Error. Any other exception, crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"

using namespace ignis;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = GGUFFile::parse(data, size, "fuzz.gguf");
    volatile uint64_t sink = 0;
    for (const auto& key : f->key_order()) {
      const GGUFValue* v = f->find(key);
      if (!v) __builtin_trap();  // key_order and the map must agree
      sink = sink + uint64_t(v->i) + uint64_t(v->f != 0) + v->s.size() + v->array_size();
      for (int64_t x : v->ints) sink = sink + uint64_t(x);
      for (double x : v->floats) sink = sink + uint64_t(x != 0);
      for (const auto& s : v->strs) sink = sink + (s.empty() ? 0 : uint8_t(s.back()));
      // The typed accessors either answer or throw Error for the wrong type.
      try { (void)f->get_int(key); } catch (const Error&) {}
      try { (void)f->get_float(key); } catch (const Error&) {}
      try { (void)f->get_string(key); } catch (const Error&) {}
      try { (void)f->get_string_array(key); } catch (const Error&) {}
    }
    for (const auto& t : f->tensors()) {
      if (f->find_tensor(t.name) != &t) __builtin_trap();
      Tensor x;
      try {
        x = f->tensor(t.name);
      } catch (const Error&) {
        continue;  // unsupported type
      }
      if (size_t(x.nbytes()) != t.nbytes) __builtin_trap();
      const auto* p = static_cast<const uint8_t*>(x.data());
      if (t.nbytes) sink = sink + p[0] + p[t.nbytes - 1];
    }
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
