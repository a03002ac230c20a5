// Placeholder factories until the tokenizer implementations land (owned by the tokenizer work).
#include "tokenizer/tokenizer.h"

#include "core/error.h"

namespace ignis {

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile&) { fail("tokenizer: not built yet"); }
std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(const std::string&) { fail("tokenizer: not built yet"); }
std::unique_ptr<Tokenizer> Tokenizer::from_llama2c(const std::string&, int) { fail("tokenizer: not built yet"); }
std::unique_ptr<Tokenizer> Tokenizer::from_hf_json_text(std::string_view, std::string_view, const std::string&) {
  fail("tokenizer: not built yet");
}
std::unique_ptr<Tokenizer> Tokenizer::from_llama2c_bytes(const uint8_t*, size_t, int, const std::string&) {
  fail("tokenizer: not built yet");
}
std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  for (int32_t id : ids) s += token_bytes(id);
  return s;
}
std::string StreamDecoder::push(int32_t id) { return tok_.token_bytes(id); }
std::string StreamDecoder::flush() { return {}; }

}  // namespace ignis
