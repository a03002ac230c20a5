#include "runtime/chat_template.h"

#include "core/error.h"

namespace ignis {

namespace {
// Finds a literal default system prompt in a ChatML template such as SmolLM2's
// "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM...<|im_end|>\n' }}".
std::string chatml_default_system(const std::string& src) {
  const std::string open = "<|im_start|>system\n";
  size_t at = 0;
  while ((at = src.find(open, at)) != std::string::npos) {
    at += open.size();
    const size_t end = src.find("<|im_end|>", at);
    if (end == std::string::npos) break;
    std::string body = src.substr(at, end - at);
    // A literal, not an expression such as "' + message['content'] + '".
    if (body.find('\'') == std::string::npos && body.find('{') == std::string::npos &&
        body.find('"') == std::string::npos && !body.empty())
      return body;
  }
  return {};
}
}  // namespace

std::vector<std::string> ChatTemplate::names() { return {"chatml", "llama3", "llama2", "mistral", "gemma", "zephyr"}; }

ChatTemplate ChatTemplate::named(const std::string& name) {
  for (const auto& n : names())
    if (n == name) {
      ChatTemplate t;
      t.name_ = name;
      return t;
    }
  std::string list;
  for (const auto& n : names()) list += (list.empty() ? "" : ", ") + n;
  fail("unknown chat template '", name, "'; known templates: ", list);
}

ChatTemplate ChatTemplate::detect(const std::string& src) {
  ChatTemplate t;
  if (src.find("<|im_start|>") != std::string::npos) {
    t.name_ = "chatml";
    t.default_system_ = chatml_default_system(src);
  } else if (src.find("<|start_header_id|>") != std::string::npos) {
    t.name_ = "llama3";
  } else if (src.find("<start_of_turn>") != std::string::npos) {
    t.name_ = "gemma";
  } else if (src.find("<<SYS>>") != std::string::npos) {
    t.name_ = "llama2";
  } else if (src.find("[INST]") != std::string::npos) {
    t.name_ = "mistral";
  } else if (src.find("<|user|>") != std::string::npos) {
    t.name_ = "zephyr";
  } else if (src.empty()) {
    fail("the model has no chat template; choose one with --chat-template (chatml, llama3, llama2, mistral, gemma, zephyr)");
  } else {
    fail("the model's chat template is not one ignis recognises; choose one with --chat-template "
         "(chatml, llama3, llama2, mistral, gemma, zephyr)");
  }
  return t;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& in, const std::string& bos) const {
  std::vector<ChatMessage> msgs = in;
  for (const auto& m : msgs)
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      fail("chat message role '", m.role, "' is not system, user or assistant");
  if (!default_system_.empty() && (msgs.empty() || msgs[0].role != "system"))
    msgs.insert(msgs.begin(), {"system", default_system_});
  std::string out;
  if (name_ == "chatml") {
    for (const auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    out += "<|im_start|>assistant\n";
  } else if (name_ == "llama3") {
    out += bos;
    for (const auto& m : msgs)
      out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
    out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  } else if (name_ == "llama2" || name_ == "mistral") {
    // [INST] wraps each user turn; a system prompt goes inside the first one.
    std::string system;
    size_t i = 0;
    if (!msgs.empty() && msgs[0].role == "system") system = msgs[i++].content;
    bool first = true;
    for (; i < msgs.size(); ++i) {
      const auto& m = msgs[i];
      if (m.role == "user") {
        std::string content = m.content;
        if (first && !system.empty())
          content = name_ == "llama2" ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content : system + "\n\n" + content;
        out += bos + "[INST] " + content + " [/INST]";
        first = false;
      } else if (m.role == "assistant") {
        out += " " + m.content + "</s>";
      }
    }
  } else if (name_ == "gemma") {
    out += bos;
    std::string system;
    for (const auto& m : msgs) {
      if (m.role == "system") { system = m.content + "\n\n"; continue; }
      const std::string role = m.role == "assistant" ? "model" : "user";
      out += "<start_of_turn>" + role + "\n" + (role == "user" ? system : "") + m.content + "<end_of_turn>\n";
      if (role == "user") system.clear();
    }
    out += "<start_of_turn>model\n";
  } else if (name_ == "zephyr") {
    for (const auto& m : msgs) out += "<|" + m.role + "|>\n" + m.content + "</s>\n";
    out += "<|assistant|>\n";
  } else {
    fail("internal: unknown chat template ", name_);
  }
  return out;
}

}  // namespace ignis
