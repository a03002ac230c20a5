#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "cli_common.h"
#include "core/error.h"
#include "io/gguf.h"
#include "runtime/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace ignis::cli {

std::string default_model_path() {
  std::string base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) base = x;
  else if (const char* h = std::getenv("HOME"); h && *h) base = std::string(h) + "/.cache";
  else base = ".cache";
  return base + "/ignis/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::string resolve_model_path(const std::string& path) {
  if (!path.empty()) return path;
  const std::string def = default_model_path();
  if (!std::filesystem::exists(def))
    fail("no model given and the default model is not at ", def, "; fetch it with scripts/fetch-model.sh or pass -m MODEL");
  return def;
}

int cmd_info(const ModelSource& src) {
  const LlamaConfig& c = src.config;
  int64_t params = 0;
  size_t bytes = 0;
  std::map<std::string, int> types;
  for (const auto& [name, t] : src.weights) {
    params += t.numel();
    bytes += t.nbytes();
    types[std::string(dtype_name(t.dtype()))]++;
  }
  std::string type_list;
  for (const auto& [t, count] : types) type_list += (type_list.empty() ? "" : ", ") + t + " x" + std::to_string(count);
  auto row = [](const char* k, const std::string& v) { std::printf("%-18s %s\n", k, v.c_str()); };
  row("file", src.path);
  row("format", src.format + (src.gguf ? " v" + std::to_string(src.gguf->version()) : ""));
  if (!c.name.empty()) row("name", c.name);
  row("architecture", c.arch);
  char buf[128];
  std::snprintf(buf, sizeof buf, "%.1f M (%.1f MiB of weights)", params / 1e6, bytes / 1048576.0);
  row("parameters", buf);
  row("tensor types", type_list);
  row("layers", std::to_string(c.n_layers));
  row("hidden size", std::to_string(c.dim));
  std::snprintf(buf, sizeof buf, "%d query, %d key/value, %d dims each", c.n_heads, c.n_kv_heads, c.head_dim);
  row("attention heads", buf);
  row("MLP size", std::to_string(c.hidden_dim));
  row("context length", std::to_string(c.max_seq_len));
  std::snprintf(buf, sizeof buf, "theta %g, %d dims, %s pairs%s", c.rope_theta, c.rope_dim,
                c.rope_style == RopeStyle::kInterleaved ? "interleaved" : "half-split",
                c.rope_scaling == RopeScaling::kNone ? "" : (c.rope_scaling == RopeScaling::kLinear ? ", linear scaling" : ", llama3 scaling"));
  row("rotary embedding", buf);
  row("output head", c.tied_embeddings ? "tied to the token embedding" : "separate");
  row("vocabulary", std::to_string(c.vocab_size));
  if (src.tokenizer) {
    row("tokenizer", src.tokenizer->describe());
    std::string tmpl = "none";
    if (!src.tokenizer->chat_template().empty()) {
      try {
        tmpl = ChatTemplate::detect(src.tokenizer->chat_template()).name();
      } catch (const Error&) {
        tmpl = "present, not recognised (use --chat-template)";
      }
    }
    row("chat template", tmpl);
  } else {
    row("tokenizer", "none found");
  }
  return 0;
}

}  // namespace ignis::cli
