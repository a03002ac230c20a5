// Tokenizer::from_llama2c: llama2.c's tokenizer.bin. Layout (little-endian): int32
// max_token_length, then per token: f32 score, int32 length, that many bytes. The vocabulary size
// is not stored (it comes from the model's header). The tokens are SentencePiece pieces with
// U+2581 already turned into ' ', ids 1 and 2 are BOS and EOS ("\n<s>\n", "\n</s>\n"), ids 3..258
// the <0xNN> byte tokens. Encoding follows run.c: a dummy ' ' in front of non-empty text, one
// symbol per UTF-8 character (bytes as <0xNN> when the character is not a token), then merge
// the adjacent pair whose concatenation is the highest-scoring token until none is left.
#include <cmath>
#include <fstream>

#include "core/error.h"
#include "io/reader.h"
#include "tokenizer/pipeline.h"

namespace ignis {

std::unique_ptr<Tokenizer> Tokenizer::from_llama2c_bytes(const uint8_t* data, size_t size, int vocab_size,
                                                         const std::string& what) {
  using namespace tok;
  if (vocab_size <= 0 || vocab_size > (1 << 24))
    fail(what, ": vocabulary size ", vocab_size, " is out of range (1 .. 16777216)");
  ByteReader r(data, size, what);
  const int32_t max_len = r.read<int32_t>("max_token_length");
  if (max_len < 0 || max_len > (1 << 20)) fail(what, ": max_token_length ", max_len, " is out of range");
  r.check_count(static_cast<uint64_t>(vocab_size), 8, "token");
  auto t = std::make_unique<PipelineTokenizer>();
  t->what = what;
  t->tkind = TokenizerKind::kSentencePiece;
  t->name = "SentencePiece BPE (llama2.c)";
  t->vocab.resize(static_cast<size_t>(vocab_size));
  t->scores.resize(static_cast<size_t>(vocab_size));
  t->attrs.assign(static_cast<size_t>(vocab_size), TokenAttr::kNormal);
  for (int i = 0; i < vocab_size; ++i) {
    const float score = r.read<float>("token score");
    const int32_t len = r.read<int32_t>("token length");
    if (len < 0 || len > max_len)
      fail(what, ": token ", i, " has length ", len, " (max_token_length is ", max_len, ") at offset ",
           r.offset() - 4);
    const uint8_t* p = r.bytes(static_cast<size_t>(len), "token bytes");
    t->vocab[i].assign(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    if (std::isnan(score)) fail(what, ": token ", i, " has a NaN score");
    t->scores[i] = score;
    if (parse_byte_token(t->vocab[i]) >= 0) t->attrs[i] = TokenAttr::kByte;
  }
  if (t->vocab[0] == "<unk>") t->attrs[0] = TokenAttr::kUnknown;
  if (vocab_size > 2) t->attrs[1] = t->attrs[2] = TokenAttr::kControl;

  Normalizer prefix;
  prefix.kind = Normalizer::Kind::kPrepend;
  prefix.content = " ";
  t->normalizers.push_back(prefix);
  t->model.type = ModelCfg::Type::kBPE;
  t->model.merge_by_score = true;
  t->model.byte_fallback = true;
  t->model.unk_id = t->attrs[0] == TokenAttr::kUnknown ? 0 : -1;
  t->decoder.byte_tokens = true;
  t->decoder.strip_first_spaces = 1;
  if (vocab_size > 2) t->prefix_ids = {1};
  t->finalize();
  t->set_special_ids(vocab_size > 2 ? 1 : -1, vocab_size > 2 ? 2 : -1, {});
  return t;
}

std::unique_ptr<Tokenizer> Tokenizer::from_llama2c(const std::string& path, int vocab_size) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open the llama2.c tokenizer");
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  if (size < 0 || size > (std::streamoff{1} << 30)) fail(path, ": unexpected file size ", size);
  f.seekg(0);
  std::string buf(static_cast<size_t>(size), '\0');
  if (!f.read(buf.data(), size)) fail(path, ": read failed");
  return from_llama2c_bytes(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), vocab_size, path);
}

}  // namespace ignis
