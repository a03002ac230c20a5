// The parts of Tokenizer shared by every implementation: whole-sequence and streaming decode.
// The factories live in gguf_loader.cpp, hf_json_loader.cpp and llama2c_loader.cpp.
#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace ignis {

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const { return decode(ids, false); }

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    bytes += decode_piece(id, first);
    first = false;
  }
  std::string out;
  out.reserve(bytes.size());
  tok::append_utf8_lossy(out, bytes, true);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  pending_ += tok_.decode_piece(id, first_);
  first_ = false;
  std::string out;
  const size_t used = tok::append_utf8_lossy(out, pending_, false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  tok::append_utf8_lossy(out, pending_, true);
  pending_.clear();
  return out;
}

}  // namespace ignis
