// safetensors reader. The header is untrusted JSON: every entry is checked before any
// tensor is handed out -- dtype known, shape non-negative with no overflow, byte range
// inside the data section and exactly as long as the shape says, no two tensors overlapping.
#include "io/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/reader.h"

namespace ignis {

using json = nlohmann::json;

// ---- untrusted JSON -----------------------------------------------------------------------------

json parse_json(std::string_view text, const std::string& what, int max_depth) {
  // One set of keys per open object, to catch duplicates (nlohmann keeps the last one silently).
  std::vector<std::set<std::string>> keys;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= max_depth) fail(what, ": JSON nested deeper than ", max_depth, " levels");
        if (ev == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string()) {
          const auto& k = parsed.get_ref<const std::string&>();
          if (!keys.back().insert(k).second) fail(what, ": JSON key \"", k, "\" appears twice in one object");
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    // e.what() reads like "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    fail(what, ": invalid JSON: ", e.what());
  }
}

namespace {

// ---- dtypes -------------------------------------------------------------------------------------

struct StDType {
  std::string_view name;
  size_t size;                  // bytes per element
  std::optional<DType> dtype;   // the ignis dtype, if ignis has one
};

// All dtypes of the safetensors format; ignis reads the ones with a DType.
constexpr std::array<StDType, 15> kDTypes = {{
    {"F64", 8, std::nullopt},
    {"F32", 4, DType::F32},
    {"F16", 2, DType::F16},
    {"BF16", 2, DType::BF16},
    {"I64", 8, std::nullopt},
    {"U64", 8, std::nullopt},
    {"I32", 4, DType::I32},
    {"U32", 4, std::nullopt},
    {"I16", 2, std::nullopt},
    {"U16", 2, std::nullopt},
    {"I8", 1, DType::I8},
    {"U8", 1, std::nullopt},
    {"BOOL", 1, std::nullopt},
    {"F8_E4M3", 1, std::nullopt},
    {"F8_E5M2", 1, std::nullopt},
}};

const StDType* find_dtype(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return &d;
  return nullptr;
}

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit (100 MiB)
constexpr size_t kMaxDims = 8;

// A JSON number that must be a non-negative integer fitting in u64.
uint64_t json_u64(const json& v, const std::string& what, const std::string& name, const char* field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0) return uint64_t(i);
    fail(what, ": tensor '", name, "' has a negative ", field, " (", i, ")");
  }
  fail(what, ": tensor '", name, "' has a ", field, " that is not a non-negative integer");
}

SafetensorsInfo parse_entry(const std::string& what, const std::string& name, const json& e, uint64_t data_size) {
  if (!e.is_object()) fail(what, ": header entry '", name, "' is not an object");
  SafetensorsInfo info;
  info.name = name;

  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) fail(what, ": tensor '", name, "' has no \"dtype\" string");
  info.dtype_name = dt->get<std::string>();
  const StDType* d = find_dtype(info.dtype_name);
  if (!d) fail(what, ": tensor '", name, "' has unknown dtype \"", info.dtype_name, "\"");

  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) fail(what, ": tensor '", name, "' has no \"shape\" array");
  if (sh->size() > kMaxDims) fail(what, ": tensor '", name, "' has ", sh->size(), " dimensions (at most ", kMaxDims, ")");
  // Element count with overflow checks: bytes must fit comfortably in 63 bits.
  const uint64_t max_numel = (uint64_t(1) << 62) / d->size;
  uint64_t numel = 1;
  for (const json& x : *sh) {
    const uint64_t n = json_u64(x, what, name, "dimension");
    if (n > max_numel || (n != 0 && numel > max_numel / n))
      fail(what, ": tensor '", name, "' has a shape whose size overflows");
    numel *= n;
    info.shape.push_back(int64_t(n));
  }

  auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2)
    fail(what, ": tensor '", name, "' has no \"data_offsets\" pair [begin, end]");
  info.begin = json_u64((*off)[0], what, name, "data offset");
  info.end = json_u64((*off)[1], what, name, "data offset");
  if (info.begin > info.end)
    fail(what, ": tensor '", name, "' has data_offsets [", info.begin, ", ", info.end, ") with begin after end");
  if (info.end > data_size)
    fail(what, ": tensor '", name, "' data [", info.begin, ", ", info.end, ") runs past the end of the data section (",
         data_size, " bytes); the file may be truncated");
  const uint64_t expect = numel * d->size;
  if (info.end - info.begin != expect)
    fail(what, ": tensor '", name, "' of dtype ", info.dtype_name, " and ", info.shape.size(), "-d shape with ", numel,
         " elements should take ", expect, " bytes, but its data_offsets [", info.begin, ", ", info.end, ") span ",
         info.end - info.begin);
  return info;
}

}  // namespace

// ---- SafetensorsFile ----------------------------------------------------------------------------

std::shared_ptr<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& what,
                                                        std::shared_ptr<void> keep) {
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  f->what_ = what;
  f->keep_ = std::move(keep);
  ByteReader r(data, size, what);
  if (size < 8) fail(what, ": not a safetensors file (", size, " bytes; it must start with an 8-byte header length)");
  const uint64_t n = r.read<uint64_t>("header length");
  if (n > size - 8)
    fail(what, ": safetensors header length ", n, " runs past the end of the file (", size,
         " bytes); the file is truncated or not safetensors");
  if (n > kMaxHeaderBytes) fail(what, ": safetensors header length ", n, " exceeds the 100 MiB limit");
  if (n < 2) fail(what, ": safetensors header of ", n, " bytes is too short to hold a JSON object");
  const uint8_t* h = r.bytes(size_t(n), "header");
  if (h[0] != '{') fail(what, ": the safetensors header does not start with '{' (not a safetensors file?)");
  const json j = parse_json(std::string_view(reinterpret_cast<const char*>(h), size_t(n)), what + " (header)");
  if (!j.is_object()) fail(what, ": the safetensors header is not a JSON object");

  f->data_ = data + 8 + n;
  const uint64_t data_size = size - 8 - n;
  std::vector<const SafetensorsInfo*> by_begin;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) fail(what, ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(what, ": __metadata__ value '", m.key(), "' is not a string");
        f->metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    SafetensorsInfo info = parse_entry(what, name, *it, data_size);
    auto [pos, inserted] = f->tensors_.emplace(name, std::move(info));
    if (!inserted) fail(what, ": tensor '", name, "' appears twice");  // parse_json already rejects this
    by_begin.push_back(&pos->second);
  }

  // No two tensors may share bytes (empty tensors occupy none).
  std::sort(by_begin.begin(), by_begin.end(), [](const SafetensorsInfo* a, const SafetensorsInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  const SafetensorsInfo* prev = nullptr;
  for (const SafetensorsInfo* t : by_begin) {
    if (t->begin == t->end) continue;
    if (prev && t->begin < prev->end)
      fail(what, ": tensors '", prev->name, "' [", prev->begin, ", ", prev->end, ") and '", t->name, "' [", t->begin,
           ", ", t->end, ") overlap");
    if (!prev || t->end > prev->end) prev = t;
  }
  return f;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto map = MappedFile::open(path);
  return parse(map->data(), map->size(), path, map);
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(what_, ": tensor '", name, "' is missing");
  const SafetensorsInfo& t = it->second;
  const StDType* d = find_dtype(t.dtype_name);
  if (!d || !d->dtype)
    fail(what_, ": tensor '", name, "' has dtype ", t.dtype_name,
         ", which ignis does not read (supported: F32, F16, BF16, I32, I8)");
  if (t.shape.size() > 4)
    fail(what_, ": tensor '", name, "' has ", t.shape.size(), " dimensions; ignis tensors have at most 4");
  const uint8_t* p = data_ + t.begin;
  const int nd = int(t.shape.size());
  // The data section starts right after the JSON header, whose length writers may leave
  // unpadded; an element that is not naturally aligned is copied rather than viewed.
  if (reinterpret_cast<uintptr_t>(p) % d->size != 0) {
    Tensor c = Tensor::empty_like_shape(t.shape.data(), nd, *d->dtype);
    if (t.end > t.begin) std::memcpy(c.data(), p, size_t(t.end - t.begin));
    return c;
  }
  return Tensor::view(const_cast<uint8_t*>(p), t.shape.data(), nd, *d->dtype, keep_);
}

// ---- SafetensorsModel ---------------------------------------------------------------------------

std::unique_ptr<SafetensorsModel> SafetensorsModel::open_folder(const std::string& folder) {
  namespace fs = std::filesystem;
  auto m = std::unique_ptr<SafetensorsModel>(new SafetensorsModel());
  m->folder_ = folder;
  const fs::path dir(folder);
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::is_regular_file(single, ec)) {
    m->files_.push_back(SafetensorsFile::open(single.string()));
    for (const auto& [name, info] : m->files_[0]->tensors()) m->index_[name] = 0;
    return m;
  }
  if (!fs::is_regular_file(index, ec))
    fail(folder, ": no model.safetensors or model.safetensors.index.json in this folder");

  const std::string what = index.string();
  const json j = parse_json(read_text_file(what), what);
  if (!j.is_object()) fail(what, ": not a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) fail(what, ": no \"weight_map\" object");
  if (wm->empty()) fail(what, ": the weight_map is empty");
  std::map<std::string, size_t> shard_ids;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) fail(what, ": weight_map entry '", it.key(), "' is not a file name");
    const std::string shard = it->get<std::string>();
    // Shards live in the folder itself; a path elsewhere is not a Hugging Face layout.
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard.find('\0') != std::string::npos)
      fail(what, ": weight_map entry '", it.key(), "' names the file \"", shard, "\", which is not a plain file name");
    auto sid = shard_ids.find(shard);
    if (sid == shard_ids.end()) {
      const fs::path p = dir / shard;
      if (!fs::is_regular_file(p, ec))
        fail(what, ": shard '", shard, "' (holding '", it.key(), "') is missing from ", folder);
      m->files_.push_back(SafetensorsFile::open(p.string()));
      sid = shard_ids.emplace(shard, m->files_.size() - 1).first;
    }
    if (!m->files_[sid->second]->has(it.key()))
      fail(what, ": the index says '", it.key(), "' is in ", shard, ", but that file does not hold it");
    m->index_[it.key()] = sid->second;
  }
  return m;
}

bool SafetensorsModel::has(const std::string& name) const { return index_.count(name) != 0; }

Tensor SafetensorsModel::tensor(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(folder_, ": tensor '", name, "' is missing");
  return files_[it->second]->tensor(name);
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, i] : index_) out.push_back(name);
  return out;
}

}  // namespace ignis
