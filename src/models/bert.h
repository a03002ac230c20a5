// Encoder models of the BERT family (BERT, RoBERTa / XLM-R / CamemBERT, MiniLM): the shared
// description both backends build from. The CPU model lives in bert_cpu.cpp, the CUDA one in
// src/cuda/bert_cuda.*; both take an EncoderSource and run the same architecture:
//
//   ids ──> word_emb[id] + pos_emb[pos] + type_emb[type] ──> LayerNorm
//     └─ L x [ x = LayerNorm(x + Wo·Attention(Wq x, Wk x, Wv x, padding mask))
//              x = LayerNorm(x + W2·GELU(W1 x + b1) + b2) ]
//   ──> head: sentence embedding (CLS or mean pooling, L2-normalised), sequence
//       classification (pooler tanh(Wp·x_cls) then classifier, or RoBERTa's dense+tanh+out_proj),
//       or token classification (a linear layer on every token).
//
// Weights keep their Hugging Face names with the model prefix removed ("embeddings.word_embeddings.weight",
// "encoder.layer.0.attention.self.query.weight", "pooler.dense.weight", "classifier.weight", ...).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace ignis {

class Tokenizer;

enum class EncoderFamily : uint8_t { Bert, Roberta };
enum class EncoderHead : uint8_t { Embedding, SequenceClassification, TokenClassification };
enum class Pooling : uint8_t { Mean, Cls };

struct EncoderConfig {
  EncoderFamily family = EncoderFamily::Bert;
  EncoderHead head = EncoderHead::Embedding;
  Pooling pooling = Pooling::Mean;      // for embeddings (sentence-transformers' 1_Pooling/config.json)
  bool normalize = true;                // L2-normalise embeddings (sentence-transformers' Normalize module)
  int vocab_size = 0, hidden = 0, layers = 0, heads = 0, intermediate = 0;
  int max_positions = 512;              // max_position_embeddings
  int type_vocab_size = 2;
  int pad_token_id = 0;                 // RoBERTa: positions start at pad_token_id + 1
  float layer_norm_eps = 1e-12f;
  std::string activation = "gelu";      // "gelu" (erf) or "gelu_new" (tanh approximation; load_encoder maps
                                        // gelu_python to gelu and gelu_pytorch_tanh to gelu_new)
  std::vector<std::string> labels;      // id2label for the classification heads (index = class id)
  int max_tokens() const;               // longest input the model takes (positions, minus RoBERTa's offset)
  // Added by the loader (load_encoder fills them; backends may ignore them):
  std::string model_type;               // config.json model_type: bert, roberta, xlm-roberta, camembert
  std::string architecture;             // config.json architectures[0], e.g. "BertForSequenceClassification"
  int max_length = 0;                   // inputs are truncated to this many tokens, specials included:
                                        // sentence-transformers' max_seq_length, else the tokenizer's
                                        // model_max_length, at most max_tokens(); 0 = max_tokens()
  bool multi_label = false;             // problem_type multi_label_classification: scores are sigmoids
  int truncation_length() const { return max_length > 0 && max_length < max_tokens() ? max_length : max_tokens(); }
};

struct EncoderSource {
  std::string path;
  EncoderConfig config;
  // HF names without the "bert."/"roberta." prefix, in the file's dtype (F32, F16 or BF16; views
  // into the mapped file, or owned copies for pytorch_model.bin). load_encoder has checked that
  // every weight the config needs is present with its shape; names of other heads (MLM, ...) are dropped.
  std::map<std::string, Tensor> weights;
  std::unique_ptr<Tokenizer> tokenizer;
  ~EncoderSource();
  EncoderSource();
  EncoderSource(EncoderSource&&) noexcept;
  EncoderSource& operator=(EncoderSource&&) noexcept;
};

// Reads a Hugging Face folder (config.json, model.safetensors or the sharded index, or a
// pytorch_model.bin read safely as tensors only; tokenizer.json or vocab.txt; sentence-transformers'
// modules.json / 1_Pooling when present). Throws ignis::Error for unsupported configs.
EncoderSource load_encoder(const std::string& folder);

// A batch of tokenized inputs, ragged: sequence i is ids[offsets[i] .. offsets[i+1]).
struct EncoderBatch {
  std::vector<int32_t> ids, type_ids;
  std::vector<int32_t> offsets{0};
  int size() const { return int(offsets.size()) - 1; }
  int length(int i) const { return offsets[size_t(i) + 1] - offsets[size_t(i)]; }
  // Appends one sequence (token types all 0, as for a single text).
  void add(const std::vector<int32_t>& seq) {
    ids.insert(ids.end(), seq.begin(), seq.end());
    type_ids.insert(type_ids.end(), seq.size(), 0);
    offsets.push_back(int32_t(ids.size()));
  }
  int total_tokens() const { return int(ids.size()); }
};

// One text tokenized as Hugging Face does for this model: [CLS] text [SEP] (RoBERTa: <s> text </s>),
// truncated to config.truncation_length() tokens by dropping the end of the text (the special
// tokens are kept, as HF's truncation=True does).
struct EncodedText {
  std::vector<int32_t> ids;
  int full_length = 0;     // tokens before truncation, specials included
  bool truncated() const { return full_length > int(ids.size()); }
};
EncodedText encode_text(const EncoderSource& src, std::string_view text);

// Position ids of every token of the batch (HF's rule): BERT 0, 1, 2, ... per sequence; RoBERTa
// pad_token_id + 1 + (index among the non-pad tokens), and pad_token_id for a pad token.
std::vector<int32_t> encoder_position_ids(const EncoderConfig& c, const EncoderBatch& batch);
// Checks ids, type ids, offsets and lengths against the config; throws ignis::Error.
void validate_batch(const EncoderConfig& c, const EncoderBatch& batch);

// An encoder on one backend. Output rows follow the batch order:
//  - Embedding: {batch, hidden} pooled (and normalised if the config says so);
//  - SequenceClassification: {batch, num_labels} logits;
//  - TokenClassification: {total_tokens, num_labels} logits (ragged like the input).
// hidden_states() gives the last layer's {total_tokens, hidden} output, for parity checks.
class EncoderModel {
 public:
  virtual ~EncoderModel() = default;
  virtual const EncoderConfig& config() const = 0;
  virtual Tensor forward(const EncoderBatch& batch) = 0;
  virtual Tensor hidden_states(const EncoderBatch& batch) = 0;
};

std::unique_ptr<EncoderModel> make_cpu_encoder(const EncoderSource& src, int threads = 0);

}  // namespace ignis
