// Encoder models (models/bert.h): the loader (config, weights, tokenizers, sentence-transformers
// modules, the safe pytorch_model.bin reader) and the CPU encoder against float64 NumPy references
// (tests/fixtures/bert, made by tests/reference/make_bert_fixtures.py), with ragged batches of mixed
// lengths. The real all-MiniLM-L6-v2 is used when scripts/fetch-minilm.sh has cached it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap.h"
#include "io/torch_checkpoint.h"
#include "models/bert.h"
#include "tokenizer/tokenizer.h"

using namespace ignis;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kFixtures = std::string(IGNIS_SOURCE_DIR) + "/tests/fixtures/bert";

const json& reference() {
  static const json j = json::parse(read_text_file(kFixtures + "/reference.json"));
  return j;
}

// |a - b| <= tol * max(1, |b|) for every element.
void expect_close(const float* got, const std::vector<double>& want, double tol, const std::string& what) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(double(got[i]) - want[i]) / std::max(1.0, std::abs(want[i]));
    if (!(e <= worst) ) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << got[at] << ", expected " << want[at];
}

std::vector<double> flat(const json& a) { return a.get<std::vector<double>>(); }

EncoderBatch batch_of(const json& seqs, const std::vector<int>& order) {
  EncoderBatch b;
  for (int i : order) b.add(seqs[size_t(i)].get<std::vector<int32_t>>());
  return b;
}

// A scratch copy of a fixture folder that a test may edit; removed at the end.
struct TempModel {
  fs::path dir;
  explicit TempModel(const std::string& fixture) {
    static int counter = 0;
    dir = fs::temp_directory_path() / ("ignis_bert_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::copy(kFixtures + "/" + fixture, dir, fs::copy_options::recursive);
  }
  ~TempModel() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  json config() const { return json::parse(read_text_file((dir / "config.json").string())); }
  void write(const std::string& name, const std::string& text) const {
    fs::create_directories((dir / name).parent_path());
    std::ofstream(dir / name) << text;
  }
  void set_config(const json& c) const { write("config.json", c.dump()); }
  std::string path() const { return dir.string(); }
};

void expect_load_error(const std::string& folder, const std::string& needle) {
  try {
    load_encoder(folder);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// ---- BERT fixture ----------------------------------------------------------------------------------------

TEST(Bert, LoadsConfigAndVocabTxt) {
  EncoderSource s = load_encoder(kFixtures + "/bert");
  const EncoderConfig& c = s.config;
  EXPECT_EQ(c.family, EncoderFamily::Bert);
  EXPECT_EQ(c.head, EncoderHead::SequenceClassification);
  EXPECT_EQ(c.hidden, 24);
  EXPECT_EQ(c.heads, 3);
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.activation, "gelu");
  EXPECT_EQ(c.max_tokens(), 40);
  EXPECT_EQ(c.truncation_length(), 32);  // tokenizer_config.json model_max_length
  ASSERT_EQ(c.labels.size(), 3u);
  EXPECT_EQ(c.labels[2], "positive");
  EXPECT_TRUE(s.weights.count("pooler.dense.weight"));
  EXPECT_EQ(s.weights.at("embeddings.word_embeddings.weight").dtype(), DType::F32);
  ASSERT_TRUE(s.tokenizer);
  EXPECT_EQ(s.tokenizer->kind(), TokenizerKind::kWordPiece);
}

TEST(Bert, TokenizesWithSpecialTokens) {
  EncoderSource s = load_encoder(kFixtures + "/bert");
  const json& r = reference()["bert"];
  for (size_t i = 0; i < r["texts"].size(); ++i) {
    const std::string text = r["texts"][i].get<std::string>();
    EncodedText e = encode_text(s, text);
    EXPECT_EQ(e.ids, r["text_ids"][i].get<std::vector<int32_t>>()) << text;
    EXPECT_FALSE(e.truncated());
  }
  // Empty text: just [CLS] [SEP].
  EXPECT_EQ(encode_text(s, "").ids, (std::vector<int32_t>{2, 3}));
}

TEST(Bert, TruncatesKeepingSpecialTokens) {
  EncoderSource s = load_encoder(kFixtures + "/bert");
  std::string text;
  for (int i = 0; i < 50; ++i) text += "hello world ";
  EncodedText e = encode_text(s, text);
  ASSERT_EQ(e.ids.size(), 32u);
  EXPECT_EQ(e.ids.front(), 2);
  EXPECT_EQ(e.ids.back(), 3);
  EXPECT_EQ(e.ids[1], e.ids[3]);  // hello world hello ...
  EXPECT_EQ(e.full_length, 102);
  EXPECT_TRUE(e.truncated());
  // Exactly at the limit: not truncated.
  std::string fits;
  for (int i = 0; i < 30; ++i) fits += "fox ";
  EncodedText f = encode_text(s, fits);
  EXPECT_EQ(f.ids.size(), 32u);
  EXPECT_FALSE(f.truncated());
}

TEST(Bert, HiddenStatesAndLogitsMatchReference) {
  EncoderSource s = load_encoder(kFixtures + "/bert");
  auto m = make_cpu_encoder(s, 2);
  const json& r = reference()["bert"];
  const std::vector<int> order = {0, 1, 2, 3};
  EncoderBatch b = batch_of(r["sequences"], order);
  Tensor h = m->hidden_states(b);
  ASSERT_EQ(h.dim(0), b.total_tokens());
  ASSERT_EQ(h.dim(1), 24);
  for (int i = 0; i < b.size(); ++i)
    expect_close(h.row<float>(b.offsets[size_t(i)]), flat(r["hidden"][size_t(i)]), 1e-4, "hidden of sequence " + std::to_string(i));
  Tensor lg = m->forward(b);
  ASSERT_EQ(lg.dim(0), 4);
  ASSERT_EQ(lg.dim(1), 3);
  for (int i = 0; i < 4; ++i) expect_close(lg.row<float>(i), flat(r["logits"][size_t(i)]), 1e-4, "logits " + std::to_string(i));
}

// A sequence's output must not depend on the other sequences in the batch (no padding leaks).
TEST(Bert, OutputIndependentOfBatchMates) {
  EncoderSource s = load_encoder(kFixtures + "/bert");
  auto m = make_cpu_encoder(s, 2);
  const json& r = reference()["bert"];
  const Tensor all = m->forward(batch_of(r["sequences"], {3, 1, 0, 2}));
  const int where[4] = {2, 1, 3, 0};  // row of sequence i in `all`
  for (int i = 0; i < 4; ++i) {
    const Tensor alone = m->forward(batch_of(r["sequences"], {i}));
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(alone.row<float>(0)[k], all.row<float>(where[i])[k], 1e-5) << i;
    const Tensor twice = m->forward(batch_of(r["sequences"], {i, i}));
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(twice.row<float>(0)[k], twice.row<float>(1)[k], 1e-6) << i;
  }
}

TEST(Bert, TokenClassificationHead) {
  TempModel t("bert");
  json c = t.config();
  c["architectures"] = {"BertForTokenClassification"};
  t.set_config(c);
  EncoderSource s = load_encoder(t.path());
  EXPECT_EQ(s.config.head, EncoderHead::TokenClassification);
  EXPECT_FALSE(s.weights.count("pooler.dense.weight"));
  auto m = make_cpu_encoder(s, 1);
  const json& r = reference()["bert"];
  EncoderBatch b = batch_of(r["sequences"], {2, 0, 3});
  Tensor lg = m->forward(b);
  ASSERT_EQ(lg.dim(0), b.total_tokens());
  ASSERT_EQ(lg.dim(1), 3);
  int seq = 0;
  for (int i : {2, 0, 3}) {
    expect_close(lg.row<float>(b.offsets[size_t(seq)]), flat(r["token_logits"][size_t(i)]), 1e-4, "token logits");
    ++seq;
  }
}

// sentence-transformers folders: mean or CLS pooling, with or without Normalize.
TEST(Bert, SentenceEmbeddingPooling) {
  const json& r = reference()["bert"];
  const int H = 24;
  for (bool cls : {false, true}) {
    for (bool normalize : {false, true}) {
      TempModel t("bert");
      json c = t.config();
      c["architectures"] = {"BertModel"};
      t.set_config(c);
      json mods = json::array({{{"idx", 0}, {"name", "0"}, {"path", ""}, {"type", "sentence_transformers.models.Transformer"}},
                               {{"idx", 1}, {"name", "1"}, {"path", "1_Pooling"}, {"type", "sentence_transformers.models.Pooling"}}});
      if (normalize) mods.push_back({{"idx", 2}, {"name", "2"}, {"path", "2_Normalize"}, {"type", "sentence_transformers.models.Normalize"}});
      t.write("modules.json", mods.dump());
      t.write("1_Pooling/config.json", json{{"word_embedding_dimension", H}, {"pooling_mode_cls_token", cls},
                                            {"pooling_mode_mean_tokens", !cls}}.dump());
      t.write("sentence_bert_config.json", R"({"max_seq_length": 16})");
      EncoderSource s = load_encoder(t.path());
      EXPECT_EQ(s.config.head, EncoderHead::Embedding);
      EXPECT_EQ(s.config.pooling, cls ? Pooling::Cls : Pooling::Mean);
      EXPECT_EQ(s.config.normalize, normalize);
      EXPECT_EQ(s.config.truncation_length(), 16);
      auto m = make_cpu_encoder(s, 2);
      EncoderBatch b = batch_of(r["sequences"], {0, 1, 2, 3});
      Tensor e = m->forward(b);
      ASSERT_EQ(e.dim(0), 4);
      ASSERT_EQ(e.dim(1), H);
      for (int i = 0; i < 4; ++i) {
        const std::vector<double> hid = flat(r["hidden"][size_t(i)]);
        const int L = b.length(i);
        std::vector<double> want(H, 0.0);
        for (int k = 0; k < H; ++k) {
          if (cls) want[size_t(k)] = hid[size_t(k)];
          else {
            for (int tkn = 0; tkn < L; ++tkn) want[size_t(k)] += hid[size_t(tkn * H + k)];
            want[size_t(k)] /= L;
          }
        }
        if (normalize) {
          double n = 0;
          for (double v : want) n += v * v;
          for (double& v : want) v /= std::sqrt(n);
        }
        expect_close(e.row<float>(i), want, 1e-4, "embedding " + std::to_string(i));
      }
    }
  }
}

// ---- RoBERTa fixture: pytorch_model.bin (BF16, shared + transposed storages), vocab.json + merges.txt

TEST(Roberta, LoadsTorchCheckpointAndBpeVocab) {
  EncoderSource s = load_encoder(kFixtures + "/roberta");
  const EncoderConfig& c = s.config;
  EXPECT_EQ(c.family, EncoderFamily::Roberta);
  EXPECT_EQ(c.head, EncoderHead::SequenceClassification);
  EXPECT_EQ(c.activation, "gelu_new");
  EXPECT_EQ(c.max_tokens(), 32);  // 34 positions minus pad_token_id + 1
  EXPECT_EQ(c.labels, (std::vector<std::string>{"LABEL_0", "LABEL_1"}));
  EXPECT_EQ(s.weights.at("classifier.out_proj.weight").dtype(), DType::BF16);
  ASSERT_TRUE(s.tokenizer);
  EXPECT_EQ(s.tokenizer->kind(), TokenizerKind::kByteBPE);
  const json& r = reference()["roberta"];
  for (size_t i = 0; i < r["texts"].size(); ++i)
    EXPECT_EQ(encode_text(s, r["texts"][i].get<std::string>()).ids, r["text_ids"][i].get<std::vector<int32_t>>());
  std::string longer;
  for (int i = 0; i < 40; ++i) longer += " hello";
  EncodedText e = encode_text(s, longer);
  EXPECT_EQ(e.ids.size(), 32u);
  EXPECT_EQ(e.ids.front(), 0);
  EXPECT_EQ(e.ids.back(), 2);
  EXPECT_TRUE(e.truncated());
}

TEST(Roberta, HiddenStatesAndLogitsMatchReference) {
  EncoderSource s = load_encoder(kFixtures + "/roberta");
  auto m = make_cpu_encoder(s, 2);
  const json& r = reference()["roberta"];
  EncoderBatch b = batch_of(r["sequences"], {0, 1, 2, 3});
  Tensor h = m->hidden_states(b);
  for (int i = 0; i < b.size(); ++i)
    expect_close(h.row<float>(b.offsets[size_t(i)]), flat(r["hidden"][size_t(i)]), 1e-4, "hidden " + std::to_string(i));
  Tensor lg = m->forward(b);
  ASSERT_EQ(lg.dim(1), 2);
  for (int i = 0; i < 4; ++i) expect_close(lg.row<float>(i), flat(r["logits"][size_t(i)]), 1e-4, "logits " + std::to_string(i));
  // Position ids: pad tokens inside a sequence take position pad_token_id, the others count on.
  const std::vector<int32_t> pos = encoder_position_ids(s.config, batch_of(r["sequences"], {2}));
  EXPECT_EQ(pos, (std::vector<int32_t>{2, 3, 1, 4, 1, 5, 6}));
}

// ---- errors ---------------------------------------------------------------------------------------------

TEST(Bert, UnsupportedConfigsAreClearErrors) {
  expect_load_error(kFixtures + "/does-not-exist", "not a folder");
  expect_load_error(kFixtures, "no config.json");
  auto edited = [](auto&& edit, const std::string& needle) {
    TempModel t("bert");
    json c = t.config();
    edit(c);
    t.set_config(c);
    expect_load_error(t.path(), needle);
  };
  edited([](json& c) { c["model_type"] = "gpt2"; }, "model_type 'gpt2'");
  edited([](json& c) { c["architectures"] = {"BertForQuestionAnswering"}; }, "BertForQuestionAnswering");
  edited([](json& c) { c["hidden_act"] = "relu"; }, "hidden_act 'relu'");
  edited([](json& c) { c["position_embedding_type"] = "relative_key"; }, "relative_key");
  edited([](json& c) { c["num_attention_heads"] = 5; }, "not a multiple");
  edited([](json& c) { c["hidden_size"] = 27; }, "has shape");
  edited([](json& c) { c.erase("vocab_size"); }, "\"vocab_size\" is missing");
  edited([](json& c) { c["is_decoder"] = true; }, "is_decoder");
  edited([](json& c) { c["vocab_size"] = 20; }, "shape");
  {
    TempModel t("bert");
    t.write("modules.json", R"([{"type": "sentence_transformers.models.Dense", "path": "2_Dense"}])");
    expect_load_error(t.path(), "Dense");
  }
  {
    TempModel t("bert");
    fs::remove(t.dir / "model.safetensors");
    expect_load_error(t.path(), "no weights found");
  }
  {
    TempModel t("bert");
    fs::remove(t.dir / "vocab.txt");
    expect_load_error(t.path(), "no tokenizer found");
  }
}

TEST(Bert, BadBatchesAreErrors) {
  EncoderSource s = load_encoder(kFixtures + "/bert");
  auto m = make_cpu_encoder(s, 1);
  EncoderBatch empty_seq;
  empty_seq.add({2, 3});
  empty_seq.add({});
  EXPECT_THROW(m->forward(empty_seq), Error);
  EncoderBatch bad_id;
  bad_id.add({2, 1000, 3});
  EXPECT_THROW(m->forward(bad_id), Error);
  EncoderBatch too_long;
  too_long.add(std::vector<int32_t>(41, 5));
  EXPECT_THROW(m->forward(too_long), Error);
  EncoderBatch none;
  EXPECT_EQ(m->forward(none).dim(0), 0);
}

// ---- the pickle reader -----------------------------------------------------------------------------------

std::string pickle_error(const std::string& bytes) {
  try {
    describe_torch_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.pkl");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TorchCheckpoint, RefusesCodeAndOddPickles) {
  // os.system("ls"): a GLOBAL that is not a tensor rebuild function.
  EXPECT_NE(pickle_error(std::string("\x80\x02" "cos\nsystem\n" "X\x02\x00\x00\x00ls\x85R.", 23)).find("os.system"),
            std::string::npos);
  EXPECT_NE(pickle_error(std::string("\x80\x02" "cbuiltins\neval\n.", 18)).find("builtins.eval"), std::string::npos);
  EXPECT_NE(pickle_error("\x80\x02}q\x00"), "");                  // no STOP
  EXPECT_NE(pickle_error("\x80\x02" "(."), "");                   // MARK left open
  EXPECT_NE(pickle_error("\x80\x02h\x05."), "");                  // memo used before set
  EXPECT_NE(pickle_error(std::string("\x80\x02]q\x00h\x00" "a.", 9)), "");  // a list inside itself
  EXPECT_NE(pickle_error("\x80\x02I1\n."), "");                   // text opcodes are not torch's
  EXPECT_NE(pickle_error("\x80\x02K\x01."), "");                  // not a dict
  std::string deep = "\x80\x02)";
  for (int i = 0; i < 100; ++i) deep += "\x85";  // tuples nested 100 deep
  deep += ".";
  EXPECT_NE(pickle_error(deep).find("deep"), std::string::npos);
  EXPECT_EQ(pickle_error("\x80\x02}."), "");                      // an empty state_dict is fine
}

TEST(TorchCheckpoint, ReadsTheFixtureAndRejectsDamage) {
  const std::string path = kFixtures + "/roberta/pytorch_model.bin";
  auto sd = read_torch_state_dict(path);
  EXPECT_EQ(sd.size(), 41u);
  EXPECT_EQ(sd.at("classifier.out_proj.weight").dim(0), 2);
  EXPECT_EQ(sd.at("classifier.out_proj.weight").dim(1), 24);
  std::string bytes = read_text_file(path);
  auto parse = [](const std::string& b) {
    return parse_torch_state_dict(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "damaged.bin");
  };
  EXPECT_THROW(parse(bytes.substr(0, bytes.size() / 2)), Error);
  EXPECT_THROW(parse("not a zip at all"), Error);
  EXPECT_THROW(parse(std::string("\x80\x02}.", 4)), Error);  // legacy (pre-1.6) format
  // Flip bytes all over the file: always an ignis::Error or a clean load, never a crash.
  for (size_t at = 0; at < bytes.size(); at += 97) {
    std::string b = bytes;
    b[at] = char(b[at] ^ 0x5a);
    try {
      parse(b);
    } catch (const Error&) {
    }
  }
}

// ---- the real all-MiniLM-L6-v2 (scripts/fetch-minilm.sh) ---------------------------------------------

std::string minilm_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string cache = xdg && *xdg ? xdg : std::string(home ? home : "") + "/.cache";
  return cache + "/ignis/models/all-MiniLM-L6-v2";
}

TEST(MiniLM, SimilarSentencesRankHigher) {
  const std::string dir = minilm_dir();
  if (!fs::exists(dir + "/model.safetensors"))
    GTEST_SKIP() << "all-MiniLM-L6-v2 is not cached (" << dir << "); run scripts/fetch-minilm.sh";
  EncoderSource s = load_encoder(dir);
  EXPECT_EQ(s.config.pooling, Pooling::Mean);
  EXPECT_TRUE(s.config.normalize);
  EXPECT_EQ(s.config.truncation_length(), 256);
  auto m = make_cpu_encoder(s, 2);
  const std::vector<std::string> texts = {"A man is eating food.", "A man is eating a piece of bread.",
                                          "The girl is carrying a baby.", "A man is riding a horse.",
                                          "Someone is having a meal."};
  EncoderBatch b;
  for (const auto& t : texts) b.add(encode_text(s, t).ids);
  Tensor e = m->forward(b);
  ASSERT_EQ(e.dim(1), 384);
  auto cos = [&](int i, int j) {
    double d = 0;
    for (int k = 0; k < 384; ++k) d += double(e.row<float>(i)[k]) * e.row<float>(j)[k];
    return d;
  };
  EXPECT_NEAR(cos(0, 0), 1.0, 1e-5);
  EXPECT_GT(cos(0, 1), cos(0, 2));
  EXPECT_GT(cos(0, 1), cos(0, 3));
  EXPECT_GT(cos(0, 4), cos(0, 2));
  EXPECT_GT(cos(0, 4), cos(0, 3));
  // sentence-transformers' documented score for this pair (its README example) is 0.7553.
  EXPECT_NEAR(cos(0, 1), 0.7553, 2e-3);
}

}  // namespace
