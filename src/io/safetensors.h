// safetensors reader: u64 header length N, N bytes of JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data. Offsets are relative to the end of the header; every one is validated.
// A Hugging Face folder may hold one model.safetensors or shards listed in
// model.safetensors.index.json ({"weight_map": {"name": "file"}}).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap.h"
#include "core/tensor.h"

namespace ignis {

struct SafetensorsInfo {
  std::string name;
  std::string dtype_name;        // as in the file: F32, F16, BF16, I32, I8, U8, ...
  std::vector<int64_t> shape;    // row-major, as in the file
  uint64_t begin = 0, end = 0;   // relative to the data section
};

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> parse(const uint8_t* data, size_t size, const std::string& what,
                                                std::shared_ptr<void> keep = nullptr);
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::map<std::string, SafetensorsInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  // A view into the mapped file; throws for a missing name or a dtype ignis has no DType for.
  Tensor tensor(const std::string& name) const;
  const std::string& path() const { return what_; }

 private:
  std::string what_;
  std::shared_ptr<void> keep_;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, SafetensorsInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a Hugging Face model folder (single file or sharded).
class SafetensorsModel {
 public:
  static std::unique_ptr<SafetensorsModel> open_folder(const std::string& folder);
  bool has(const std::string& name) const;
  Tensor tensor(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> index_;
  std::string folder_;
};

}  // namespace ignis
