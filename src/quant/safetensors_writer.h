// A small safetensors writer: u64 little-endian header length, the JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} padded with
// spaces to a multiple of 8 bytes, then the tensors' bytes in the order added. The file is
// written to "<path>.tmp" and renamed at the end, so an error never leaves a partial file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ignis::quant {

class SafetensorsWriter {
 public:
  // Copies the tensor's bytes. dtype F32, F16, BF16, I32 or I8; throws for a duplicate name.
  void add(const std::string& name, const Tensor& t);
  void add_raw(const std::string& name, const std::string& st_dtype, const std::vector<int64_t>& shape,
               const void* data, size_t bytes);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  size_t size() const { return entries_.size(); }
  // Writes the file (atomically: temp file + rename). Throws ignis::Error on I/O errors.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The safetensors dtype string of a plain DType ("F32", "F16", "BF16", "I32", "I8").
std::string safetensors_dtype(DType t);

}  // namespace ignis::quant
