// The generation loop against a scripted fake model and tokenizer: stop conditions,
// stop strings that span tokens, UTF-8 that spans tokens, KV-cache prefix reuse.
#include <gtest/gtest.h>

#include "core/error.h"
#include "io/reader.h"
#include "models/llama.h"
#include "runtime/chat_template.h"
#include "runtime/generate.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;

namespace {

// Token i stands for pieces[i]; token 0 is EOS.
const std::vector<std::string> kPieces = {"</s>", "Hel", "lo", " wor", "ld", "\xC3", "\xA9", "!", "\xF0\x9F", "\x98\x80"};

class FakeTokenizer : public Tokenizer {
 public:
  FakeTokenizer() {
    eos_id_ = 0;
    stop_ids_ = {0};
  }
  TokenizerKind kind() const override { return TokenizerKind::kByteBPE; }
  int vocab_size() const override { return int(kPieces.size()); }
  std::vector<int32_t> encode(std::string_view, bool, bool) const override { return {1}; }
  std::string token_bytes(int32_t id) const override { return kPieces.at(size_t(id)); }
  int32_t token_id(std::string_view) const override { return -1; }
  bool is_special(int32_t id) const override { return id == 0; }
  std::string describe() const override { return "fake"; }
};

// Emits `script` in order: the logits put all mass on the next scripted token.
class FakeModel : public LlamaModel {
 public:
  explicit FakeModel(std::vector<int32_t> script, int ctx = 64) : script_(std::move(script)), ctx_(ctx) {
    cfg_.vocab_size = int(kPieces.size());
    logits_.resize(kPieces.size());
  }
  const LlamaConfig& config() const override { return cfg_; }
  int context_size() const override { return ctx_; }
  std::string backend() const override { return "fake"; }
  const float* forward(const int32_t* tokens, int n, int pos) override {
    calls.push_back({pos, n});
    std::fill(logits_.begin(), logits_.end(), 0.0f);
    logits_[size_t(script_[std::min(next_, script_.size() - 1)])] = 10.0f;
    ++next_;
    return logits_.data();
  }
  std::vector<float> forward_all(const int32_t* t, int n, int pos) override {
    forward(t, n, pos);
    return logits_;
  }
  std::vector<std::pair<int, int>> calls;  // (pos, n) of every forward

 private:
  std::vector<int32_t> script_;
  size_t next_ = 0;
  int ctx_;
  LlamaConfig cfg_;
  std::vector<float> logits_;
};

GenerateOptions greedy(int n) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.sampler.temperature = 0;
  return o;
}

}  // namespace

TEST(Generate, StopsOnEosAndStreamsPieces) {
  FakeTokenizer tok;
  FakeModel model({1, 2, 0, 3});
  Session s(model, tok);
  std::string streamed;
  auto r = s.generate({7, 7}, greedy(10), [&](std::string_view p) { streamed += p; return true; });
  EXPECT_EQ(r.text, "Hello");
  EXPECT_EQ(streamed, "Hello");
  EXPECT_EQ(r.stop_reason, "eos");
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{1, 2}));
}

TEST(Generate, IgnoreEosAndMaxTokens) {
  FakeTokenizer tok;
  FakeModel model({1, 0, 2, 7, 7, 7});
  Session s(model, tok);
  auto o = greedy(3);
  o.ignore_eos = true;
  auto r = s.generate({7}, o, nullptr);
  EXPECT_EQ(r.tokens.size(), 3u);
  EXPECT_EQ(r.stop_reason, "max tokens");
}

TEST(Generate, StopStringSpanningTokensIsCutAndNeverStreamed) {
  FakeTokenizer tok;
  FakeModel model({1, 2, 3, 4, 7});
  Session s(model, tok);
  auto o = greedy(10);
  o.stop_strings = {"o w"};
  std::string streamed;
  auto r = s.generate({7}, o, [&](std::string_view p) { streamed += p; return true; });
  EXPECT_EQ(r.text, "Hell");
  EXPECT_EQ(streamed, "Hell");
  EXPECT_EQ(r.stop_reason, "stop string");
}

TEST(Generate, NeverStreamsBrokenUtf8) {
  FakeTokenizer tok;
  FakeModel model({1, 5, 6, 8, 9, 7, 0});  // "Hel" + "é" split in two + 😀 split in two + "!"
  Session s(model, tok);
  std::vector<std::string> pieces;
  auto r = s.generate({7}, greedy(10), [&](std::string_view p) { pieces.emplace_back(p); return true; });
  EXPECT_EQ(r.text, "Hel\xC3\xA9\xF0\x9F\x98\x80!");
  for (const auto& p : pieces) EXPECT_TRUE(is_valid_utf8(p)) << "streamed a broken UTF-8 piece";
  EXPECT_EQ(pieces.size(), 4u);  // "Hel", "é", "😀", "!"
}

TEST(Generate, ReusesTheCachedPrefix) {
  FakeTokenizer tok;
  FakeModel model({1, 0, 2, 0});
  Session s(model, tok);
  s.generate({7, 7, 7}, greedy(5), nullptr);
  ASSERT_EQ(model.calls.front(), (std::pair<int, int>{0, 3}));
  model.calls.clear();
  // The cache now holds the prompt and the generated token 1 (EOS is never fed back).
  EXPECT_EQ(s.cached(), (std::vector<int32_t>{7, 7, 7, 1}));
  // The next turn extends what is cached: only the new tokens are processed.
  s.generate({7, 7, 7, 1, 7, 7}, greedy(5), nullptr);
  ASSERT_FALSE(model.calls.empty());
  EXPECT_EQ(model.calls.front(), (std::pair<int, int>{4, 2}));
  // A prompt that diverges recomputes from the first differing position.
  model.calls.clear();
  s.generate({7, 9, 9}, greedy(1), nullptr);
  EXPECT_EQ(model.calls.front(), (std::pair<int, int>{1, 2}));
}

TEST(Generate, PromptLongerThanContextIsAClearError) {
  FakeTokenizer tok;
  FakeModel model({1}, /*ctx=*/8);
  Session s(model, tok);
  std::vector<int32_t> prompt(8, 7);
  try {
    s.generate(prompt, greedy(4), nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos);
  }
  auto r = s.generate(std::vector<int32_t>(6, 7), greedy(100), nullptr);
  EXPECT_EQ(r.stop_reason, "context full");
}

TEST(ChatTemplate, ChatMLWithTheModelsDefaultSystemPrompt) {
  // Abridged from SmolLM2-135M-Instruct's tokenizer.chat_template (GGUF metadata).
  const std::string src =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
      "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
  ChatTemplate t = ChatTemplate::detect(src);
  EXPECT_EQ(t.name(), "chatml");
  EXPECT_EQ(t.render({{"user", "Hi"}}),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.render({{"system", "S"}, {"user", "Hi"}}),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, OtherFamiliesAndErrors) {
  EXPECT_EQ(ChatTemplate::named("llama3").render({{"user", "Hi"}}, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(ChatTemplate::named("llama2").render({{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}, {"user", "Q"}}, "<s>"),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Yo</s><s>[INST] Q [/INST]");
  EXPECT_EQ(ChatTemplate::named("gemma").render({{"user", "Hi"}}, "<bos>"),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_THROW(ChatTemplate::detect("{{ messages }}"), Error);
  EXPECT_THROW(ChatTemplate::detect(""), Error);
  EXPECT_THROW(ChatTemplate::named("alpaca"), Error);
  EXPECT_THROW(ChatTemplate::named("chatml").render({{"tool", "x"}}), Error);
}
