#include "quant/safetensors_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace ignis::quant {

std::string safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I8: return "I8";
    default: fail("safetensors: cannot store a tensor of type ", dtype_name(t), " (dequantize it first)");
  }
}

void SafetensorsWriter::add(const std::string& name, const Tensor& t) {
  std::vector<int64_t> shape(t.shape(), t.shape() + t.ndim());
  add_raw(name, safetensors_dtype(t.dtype()), shape, t.data(), t.nbytes());
}

void SafetensorsWriter::add_raw(const std::string& name, const std::string& st_dtype, const std::vector<int64_t>& shape,
                                const void* data, size_t bytes) {
  for (const Entry& e : entries_) IGNIS_CHECK(e.name != name, "safetensors writer: tensor '", name, "' added twice");
  Entry e{name, st_dtype, shape, {}};
  e.bytes.resize(bytes);
  if (bytes) std::memcpy(e.bytes.data(), data, bytes);
  entries_.push_back(std::move(e));
}

void SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) m[k] = v;
    h["__metadata__"] = m;
  }
  uint64_t off = 0;
  for (const Entry& e : entries_) {
    h[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("cannot write '", tmp, "'");
    const uint64_t n = header.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(n >> (8 * i));
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(header.data(), std::streamsize(header.size()));
    for (const Entry& e : entries_) f.write(reinterpret_cast<const char*>(e.bytes.data()), std::streamsize(e.bytes.size()));
    f.flush();
    if (!f) {
      f.close();
      std::remove(tmp.c_str());
      fail("error writing '", tmp, "' (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail("cannot rename '", tmp, "' to '", path, "': ", ec.message());
  }
}

}  // namespace ignis::quant
