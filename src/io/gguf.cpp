#include "io/gguf.h"

#include <limits>

#include "io/reader.h"

namespace ignis {

namespace {

constexpr uint64_t kMaxStringBytes = 1ull << 30;  // no key or value in a sane file is 1 GiB
constexpr uint32_t kMaxDims = 4;

std::string read_string(ByteReader& r, std::string_view item) {
  const uint64_t n = r.read<uint64_t>(item);
  if (n > kMaxStringBytes) fail(r.what(), ": ", item, " of length ", n, " at offset ", r.offset() - 8, " is absurd");
  const uint8_t* p = r.bytes(size_t(n), item);
  return std::string(reinterpret_cast<const char*>(p), size_t(n));
}

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::BOOL: return 1;
    case GGUFType::U16: case GGUFType::I16: return 2;
    case GGUFType::U32: case GGUFType::I32: case GGUFType::F32: return 4;
    case GGUFType::U64: case GGUFType::I64: case GGUFType::F64: return 8;
    case GGUFType::STRING: return 8;  // at least its length field
    default: return 0;
  }
}

bool is_int_type(GGUFType t) {
  switch (t) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::U16: case GGUFType::I16: case GGUFType::U32:
    case GGUFType::I32: case GGUFType::U64: case GGUFType::I64: case GGUFType::BOOL: return true;
    default: return false;
  }
}

int64_t read_int(ByteReader& r, GGUFType t, std::string_view item) {
  switch (t) {
    case GGUFType::U8: return r.read<uint8_t>(item);
    case GGUFType::I8: return r.read<int8_t>(item);
    case GGUFType::U16: return r.read<uint16_t>(item);
    case GGUFType::I16: return r.read<int16_t>(item);
    case GGUFType::U32: return r.read<uint32_t>(item);
    case GGUFType::I32: return r.read<int32_t>(item);
    case GGUFType::U64: return int64_t(r.read<uint64_t>(item));
    case GGUFType::I64: return r.read<int64_t>(item);
    case GGUFType::BOOL: {
      const uint8_t b = r.read<uint8_t>(item);
      if (b > 1) fail(r.what(), ": bool value ", int(b), " at offset ", r.offset() - 1, " is neither 0 nor 1");
      return b;
    }
    default: fail("internal: not an integer type");
  }
}

double read_float(ByteReader& r, GGUFType t, std::string_view item) {
  if (t == GGUFType::F32) return r.read<float>(item);
  return r.read<double>(item);
}

GGUFType read_type(ByteReader& r, std::string_view key) {
  const size_t at = r.offset();
  const uint32_t t = r.read<uint32_t>("value type");
  if (t > uint32_t(GGUFType::F64)) fail(r.what(), ": metadata '", key, "' has unknown value type ", t, " at offset ", at);
  return GGUFType(t);
}

GGUFValue read_value(ByteReader& r, const std::string& key) {
  GGUFValue v;
  v.type = read_type(r, key);
  if (is_int_type(v.type)) {
    v.i = read_int(r, v.type, key);
  } else if (v.type == GGUFType::F32 || v.type == GGUFType::F64) {
    v.f = read_float(r, v.type, key);
  } else if (v.type == GGUFType::STRING) {
    v.s = read_string(r, key);
  } else {  // ARRAY
    v.elem = read_type(r, key);
    if (v.elem == GGUFType::ARRAY) fail(r.what(), ": metadata '", key, "' is an array of arrays, which ignis does not read");
    const uint64_t n = r.read<uint64_t>("array length");
    r.check_count(n, scalar_size(v.elem), "array '" + key + "' element");
    if (is_int_type(v.elem)) {
      v.ints.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) v.ints.push_back(read_int(r, v.elem, key));
    } else if (v.elem == GGUFType::F32 || v.elem == GGUFType::F64) {
      v.floats.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) v.floats.push_back(read_float(r, v.elem, key));
    } else {
      v.strs.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) v.strs.push_back(read_string(r, key));
    }
  }
  return v;
}

}  // namespace

std::string_view gguf_type_name(GGUFType t) {
  static constexpr std::string_view names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                               "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) < 13 ? names[uint32_t(t)] : "unknown";
}

int64_t GGUFTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::shared_ptr<GGUFFile> GGUFFile::parse(const uint8_t* data, size_t size, const std::string& what,
                                          std::shared_ptr<void> keep) {
  auto f = std::shared_ptr<GGUFFile>(new GGUFFile());
  f->what_ = what;
  f->keep_ = std::move(keep);
  f->base_ = data;
  f->size_ = size;
  ByteReader r(data, size, what);

  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0)
    fail(what, ": not a GGUF file (the first 4 bytes are not \"GGUF\")");
  r.skip(4, "magic");
  f->version_ = r.read<uint32_t>("version");
  if (f->version_ != 2 && f->version_ != 3)
    fail(what, ": GGUF version ", f->version_, " is not supported (ignis reads versions 2 and 3)");
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  r.check_count(n_kv, 8 + 4 + 1, "metadata key/value");          // key length, type, smallest value
  r.check_count(n_tensors, 8 + 4 + 4 + 8, "tensor info");        // name length, n_dims, type, offset

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_string(r, "metadata key");
    GGUFValue v = read_value(r, key);
    if (f->kv_.count(key)) fail(what, ": metadata key '", key, "' appears twice");
    f->key_order_.push_back(key);
    f->kv_.emplace(std::move(key), std::move(v));
  }

  if (const GGUFValue* a = f->find("general.alignment")) {
    if (!is_int_type(a->type) || a->i <= 0 || a->i > (1 << 20) || (a->i & (a->i - 1)) != 0)
      fail(what, ": general.alignment must be a power of two up to 1 MiB");
    f->alignment_ = uint64_t(a->i);
  }

  f->tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GGUFTensorInfo t;
    t.name = read_string(r, "tensor name");
    const uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail(what, ": tensor '", t.name, "' has ", n_dims, " dimensions (expected 1 to ", kMaxDims, ")");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > (1ull << 40)) fail(what, ": tensor '", t.name, "' has invalid dimension ", ne);
      if (numel > (std::numeric_limits<uint64_t>::max() >> 1) / ne)
        fail(what, ": tensor '", t.name, "' has a shape whose element count overflows");
      numel *= ne;
      t.ne.push_back(int64_t(ne));
    }
    if (numel > (1ull << 42)) fail(what, ": tensor '", t.name, "' has an absurd element count ", numel);
    t.ggml_type = r.read<uint32_t>("tensor type");
    t.offset = r.read<uint64_t>("tensor offset");
    t.dtype = dtype_from_ggml(t.ggml_type);
    if (t.dtype) {
      const auto& info = dtype_info(*t.dtype);
      if (t.ne[0] % info.block_size != 0)
        fail(what, ": tensor '", t.name, "' of type ", info.name, " has rows of ", t.ne[0],
             " values, not a multiple of the block size ", info.block_size);
      t.nbytes = numel / uint64_t(info.block_size) * info.block_bytes;
    }
    if (f->tensor_index_.count(t.name)) fail(what, ": tensor '", t.name, "' appears twice");
    f->tensor_index_[t.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }

  const uint64_t header_end = r.offset();
  f->data_offset_ = (header_end + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  if (!f->tensors_.empty() && f->data_offset_ > size)
    fail(what, ": the tensor data section would start at offset ", f->data_offset_, ", past the end of the file (",
         size, " bytes)");
  const uint64_t data_size = size > f->data_offset_ ? size - f->data_offset_ : 0;
  for (const auto& t : f->tensors_) {
    if (t.offset % f->alignment_ != 0)
      fail(what, ": tensor '", t.name, "' data offset ", t.offset, " is not aligned to ", f->alignment_);
    if (t.dtype && (t.offset > data_size || t.nbytes > data_size - t.offset))
      fail(what, ": tensor '", t.name, "' data [", t.offset, ", ", t.offset + t.nbytes,
           ") runs past the end of the data section (", data_size, " bytes); the file may be truncated");
  }
  return f;
}

std::shared_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  auto map = MappedFile::open(path);
  const uint8_t* data = map->data();
  const size_t size = map->size();
  if (size == 0) fail(path, ": file is empty");
  return parse(data, size, path, map);
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

namespace {
[[noreturn]] void type_error(const std::string& file, const std::string& key, const GGUFValue& v,
                             std::string_view expected) {
  if (v.is_array())
    fail(file, ": metadata '", key, "' is an array of ", gguf_type_name(v.elem), ", expected ", expected);
  fail(file, ": metadata '", key, "' is of type ", gguf_type_name(v.type), ", expected ", expected);
}
}  // namespace

std::optional<int64_t> GGUFFile::get_int(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_int_type(v->type)) type_error(what_, key, *v, "an integer");
  return v->i;
}

std::optional<double> GGUFFile::get_float(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == GGUFType::F32 || v->type == GGUFType::F64) return v->f;
  if (is_int_type(v->type) && v->type != GGUFType::BOOL) return double(v->i);
  type_error(what_, key, *v, "a number");
}

std::optional<bool> GGUFFile::get_bool(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return std::nullopt;
  if (!is_int_type(v->type)) type_error(what_, key, *v, "a bool");
  return v->i != 0;
}

std::optional<std::string> GGUFFile::get_string(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GGUFType::STRING) type_error(what_, key, *v, "a string");
  return v->s;
}

const std::vector<std::string>* GGUFFile::get_string_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return nullptr;
  if (!v->is_array() || v->elem != GGUFType::STRING) type_error(what_, key, *v, "an array of strings");
  return &v->strs;
}

const std::vector<int64_t>* GGUFFile::get_int_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return nullptr;
  if (!v->is_array() || !is_int_type(v->elem)) type_error(what_, key, *v, "an array of integers");
  return &v->ints;
}

const std::vector<double>* GGUFFile::get_float_array(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) return nullptr;
  if (!v->is_array() || !(v->elem == GGUFType::F32 || v->elem == GGUFType::F64))
    type_error(what_, key, *v, "an array of floats");
  return &v->floats;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GGUFFile::tensor(const std::string& name) const {
  const GGUFTensorInfo* t = find_tensor(name);
  if (!t) fail(what_, ": tensor '", name, "' is missing");
  if (!t->dtype)
    fail(what_, ": tensor '", name, "' has type ", ggml_type_name(t->ggml_type), " (", t->ggml_type,
         "), which ignis does not support");
  int64_t shape[4];
  const int n = int(t->ne.size());
  for (int i = 0; i < n; ++i) shape[i] = t->ne[size_t(n - 1 - i)];
  void* p = const_cast<uint8_t*>(base_ + data_offset_ + t->offset);
  return Tensor::view(p, shape, n, *t->dtype, keep_);
}

}  // namespace ignis
