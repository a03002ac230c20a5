// libFuzzer target: GGUFFile::parse on arbitrary bytes. A file either parses -- and then every
// metadata value and the first and last byte of every tensor view are read (ASan checks them) --
// or throws ignis::Error. A file that parses and names an architecture also goes through the
// whole model loader (config from metadata, weight checks, tokenizer from GGUF metadata) via an
// in-memory file. Any other exception, crash or sanitizer report is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"
#include "io/gguf.h"
#include "io/model_source.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;

namespace {
// load_gguf_model reads a path: give it a memfd, rewritten for every input.
void load_as_model(const uint8_t* data, size_t size) {
  static int fd = memfd_create("fuzz_gguf", 0);
  if (fd < 0) return;
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) return;
  try {
    ModelSource m = load_gguf_model("/proc/self/fd/" + std::to_string(fd));
    if (m.tokenizer) {
      const auto ids = m.tokenizer->encode("Hello world, 123 \xc3\xa9!", true, true);
      for (int32_t id : ids)
        if (id < 0 || id >= m.tokenizer->vocab_size()) __builtin_trap();
      (void)m.tokenizer->decode(ids);
    }
  } catch (const Error&) {
  }
}
}  // namespace

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
    if (f->has("general.architecture")) load_as_model(data, size);
  } catch (const Error&) {
  }
  return 0;
}
