// Chat templates. Models ship a Jinja template; rather than embedding a Jinja interpreter,
// ignis recognises the template families in use and renders them natively:
//   chatml  <|im_start|>role\n...<|im_end|>\n          (SmolLM2, Qwen2, many fine-tunes)
//   llama3  <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
//   llama2  <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ...</s>   (also Mistral's [INST])
//   gemma   <start_of_turn>user\n...<end_of_turn>\n     (no system role: prepended to the first user turn)
//   zephyr  <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n
// A template that matches none of these is an error that names --chat-template.
#pragma once
#include <string>
#include <vector>

namespace ignis {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // From a model's Jinja template source. Throws ignis::Error if the family is not recognised.
  static ChatTemplate detect(const std::string& jinja_source);
  // By name (chatml, llama3, llama2, mistral, gemma, zephyr); throws for unknown names.
  static ChatTemplate named(const std::string& name);
  static std::vector<std::string> names();

  const std::string& name() const { return name_; }
  // The prompt for the conversation so far, ending with the assistant's turn opened
  // (add_generation_prompt). `bos` is the BOS token text, used by templates that write it.
  std::string render(const std::vector<ChatMessage>& messages, const std::string& bos = "") const;
  // Default system prompt the model's template inserts when the conversation has none.
  const std::string& default_system() const { return default_system_; }

 private:
  std::string name_;
  std::string default_system_;
};

}  // namespace ignis
