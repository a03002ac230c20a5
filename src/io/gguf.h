// GGUF (v2, v3) reader: metadata of every value type, tensor infos, aligned data section.
// Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
// (string key, u32 type, value) pairs, then n_tensors (string name, u32 n_dims,
// u64 dims[n_dims] innermost first, u32 ggml type, u64 offset), then padding to
// `general.alignment` (default 32) and the tensor data. Every size and offset is
// validated against the file before it is used.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mmap.h"
#include "core/tensor.h"

namespace ignis {

enum class GGUFType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_type_name(GGUFType t);

struct GGUFValue {
  GGUFType type = GGUFType::U32;
  // Scalars: integers in `i` (u64 values above INT64_MAX keep their bits), floats in `f`,
  // bools in `i` (0/1), strings in `s`.
  int64_t i = 0;
  double f = 0;
  std::string s;
  // Arrays: element type and exactly one of the vectors below filled.
  GGUFType elem = GGUFType::U32;
  std::vector<int64_t> ints;    // integer and bool elements
  std::vector<double> floats;   // f32 / f64 elements
  std::vector<std::string> strs;
  bool is_array() const { return type == GGUFType::ARRAY; }
  size_t array_size() const { return ints.size() + floats.size() + strs.size(); }
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<int64_t> ne;       // dims as in the file: ne[0] is the innermost (row length)
  uint32_t ggml_type = 0;
  std::optional<DType> dtype;    // nullopt: a type ignis does not support
  uint64_t offset = 0;           // relative to the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class GGUFFile {
 public:
  // Parses a file in memory. `what` names it in error messages. `keep` keeps the bytes alive.
  static std::shared_ptr<GGUFFile> parse(const uint8_t* data, size_t size, const std::string& what,
                                         std::shared_ptr<void> keep = nullptr);
  // Memory-maps and parses a file.
  static std::shared_ptr<GGUFFile> open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return what_; }

  const std::map<std::string, GGUFValue>& metadata() const { return kv_; }
  const std::vector<std::string>& key_order() const { return key_order_; }
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GGUFValue* find(const std::string& key) const;

  // Typed accessors; each throws a clear error if the key exists with another type.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;   // accepts ints too
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  const std::vector<std::string>* get_string_array(const std::string& key) const;
  const std::vector<int64_t>* get_int_array(const std::string& key) const;
  const std::vector<double>* get_float_array(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(const std::string& name) const;
  // The tensor as a view into the mapped file (shape reversed to row-major: {ne[n-1], ..., ne[0]}).
  // Throws if the tensor is missing or its type is unsupported.
  Tensor tensor(const std::string& name) const;

 private:
  std::string what_;
  std::shared_ptr<void> keep_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GGUFValue> kv_;
  std::vector<std::string> key_order_;
  std::vector<GGUFTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace ignis
