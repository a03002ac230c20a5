// PyTorch zip checkpoints, read without executing anything (see torch_checkpoint.h).
//
// torch.save's pickle of a state_dict looks like this (protocol 2):
//   GLOBAL collections.OrderedDict, EMPTY_TUPLE, REDUCE          -> an empty dict
//   MARK, then per tensor:
//     "name", GLOBAL torch._utils._rebuild_tensor_v2,
//       ( BINPERSID ("storage", GLOBAL torch.FloatStorage, "0", "cpu", numel),
//         storage_offset, (sizes...), (strides...), requires_grad, OrderedDict() ) REDUCE
//   SETITEMS, then BUILD with {"_metadata": ...} (ignored).
// The machine below models exactly those values; memo, stack and nesting are bounded.
#include "io/torch_checkpoint.h"

#include <zip.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/mmap.h"

namespace ignis {
namespace {

struct Obj;
using P = std::shared_ptr<Obj>;

struct StorageRef {
  std::string key;
  DType dtype = DType::F32;
  bool is_f64 = false;
  bool supported = false;   // a float type ignis keeps
  size_t elem = 4;          // bytes per element in the file
  int64_t numel = 0;
  std::string type_name;
};

struct TensorRef {
  StorageRef storage;
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
};

struct Obj {
  enum class K { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor, Mark } k = K::None;
  int64_t i = 0;
  double f = 0;
  std::string s;                       // Str; Global: "module.name"
  std::vector<P> items;                // Tuple, List
  std::vector<std::pair<P, P>> dict;   // Dict (insertion order)
  std::shared_ptr<StorageRef> storage; // Storage
  std::shared_ptr<TensorRef> tensor;   // Tensor
  int depth = 1;                       // nesting depth (bounded so destruction cannot overflow the stack)
  // Set once the value is inside a container; frozen containers are never mutated again, so
  // no reference cycle (a leak) can be built and depths stay exact.
  bool frozen = false;
};

constexpr int kMaxDepth = 64;
constexpr size_t kMaxStack = 1 << 20, kMaxMemo = 1 << 22;

P make(Obj::K k) {
  auto o = std::make_shared<Obj>();
  o->k = k;
  return o;
}

const char* kind_name(Obj::K k) {
  switch (k) {
    case Obj::K::None: return "None";
    case Obj::K::Bool: return "bool";
    case Obj::K::Int: return "int";
    case Obj::K::Float: return "float";
    case Obj::K::Str: return "str";
    case Obj::K::Tuple: return "tuple";
    case Obj::K::List: return "list";
    case Obj::K::Dict: return "dict";
    case Obj::K::Global: return "global";
    case Obj::K::Storage: return "storage";
    case Obj::K::Tensor: return "tensor";
    case Obj::K::Mark: return "mark";
  }
  return "?";
}

// The storage types torch writes, by class name.
bool storage_type(const std::string& name, StorageRef& s) {
  struct T {
    const char* n;
    DType d;
    size_t e;
    bool sup, f64;
  };
  static const T types[] = {
      {"torch.FloatStorage", DType::F32, 4, true, false},   {"torch.HalfStorage", DType::F16, 2, true, false},
      {"torch.BFloat16Storage", DType::BF16, 2, true, false}, {"torch.DoubleStorage", DType::F32, 8, true, true},
      {"torch.LongStorage", DType::I32, 8, false, false},   {"torch.IntStorage", DType::I32, 4, false, false},
      {"torch.ShortStorage", DType::I32, 2, false, false},  {"torch.CharStorage", DType::I8, 1, false, false},
      {"torch.ByteStorage", DType::I8, 1, false, false},    {"torch.BoolStorage", DType::I8, 1, false, false},
  };
  for (const T& t : types)
    if (name == t.n) {
      s.dtype = t.d, s.elem = t.e, s.supported = t.sup, s.is_f64 = t.f64, s.type_name = name;
      return true;
    }
  return false;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& what) : d_(d), n_(n), what_(what) {}

  P run() {
    for (;;) {
      const size_t at = pos_;
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                          // PROTO
        case 0x95: bytes(8); break;                      // FRAME (length: ignored, data follows inline)
        case '}': push(make(Obj::K::Dict)); break;       // EMPTY_DICT
        case ']': push(make(Obj::K::List)); break;       // EMPTY_LIST
        case ')': push(make(Obj::K::Tuple)); break;      // EMPTY_TUPLE
        case '(': push(make(Obj::K::Mark)); break;       // MARK
        case 'N': push(make(Obj::K::None)); break;       // NONE
        case 0x88: case 0x89: {                          // NEWTRUE / NEWFALSE
          P o = make(Obj::K::Bool);
          o->i = op == 0x88;
          push(o);
          break;
        }
        case 'J': push_int(int32_t(le(4))); break;       // BININT
        case 'K': push_int(int64_t(le(1))); break;       // BININT1
        case 'M': push_int(int64_t(le(2))); break;       // BININT2
        case 0x8a: {                                     // LONG1: n little-endian two's complement bytes
          const size_t k = u8();
          if (k > 8) fail(what_, ": integer of ", k, " bytes at pickle offset ", at, " is too large");
          uint64_t v = k ? le(k) : 0;
          if (k && k < 8 && (v >> (8 * k - 1)) & 1) v |= ~uint64_t{0} << (8 * k);
          push_int(int64_t(v));
          break;
        }
        case 'G': {                                      // BINFLOAT (big-endian double)
          const uint8_t* b = bytes(8);
          uint64_t v = 0;
          for (int k = 0; k < 8; ++k) v = (v << 8) | b[k];
          P o = make(Obj::K::Float);
          std::memcpy(&o->f, &v, 8);
          push(o);
          break;
        }
        case 'X': push_str(size_t(le(4))); break;        // BINUNICODE
        case 0x8c: push_str(size_t(le(1))); break;       // SHORT_BINUNICODE
        case 0x8d: push_str(size_t(le(8))); break;       // BINUNICODE8
        case 'q': memo_put(le(1)); break;                // BINPUT
        case 'r': memo_put(le(4)); break;                // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;        // MEMOIZE
        case 'h': push(memo_get(le(1))); break;          // BINGET
        case 'j': push(memo_get(le(4))); break;          // LONG_BINGET
        case 't': {                                      // TUPLE
          P o = make(Obj::K::Tuple);
          o->items = pop_mark();
          push(finish(o));
          break;
        }
        case 0x85: case 0x86: case 0x87: {               // TUPLE1..3
          P o = make(Obj::K::Tuple);
          const int k = op - 0x84;
          o->items.resize(size_t(k));
          for (int j = k - 1; j >= 0; --j) o->items[size_t(j)] = pop();
          push(finish(o));
          break;
        }
        case 'c': {                                      // GLOBAL "module\nname\n"
          const std::string mod = line(), name = line();
          push(global(mod + "." + name));
          break;
        }
        case 0x93: {                                     // STACK_GLOBAL
          P name = pop(), mod = pop();
          if (name->k != Obj::K::Str || mod->k != Obj::K::Str) fail(what_, ": STACK_GLOBAL needs two strings");
          push(global(mod->s + "." + name->s));
          break;
        }
        case 'Q': push(persistent(pop())); break;        // BINPERSID
        case 'R': {                                      // REDUCE
          P args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {                                      // BUILD: only dict state on a dict (state_dict._metadata)
          P state = pop();
          P obj = top();
          if (obj->k != Obj::K::Dict && obj->k != Obj::K::Tensor)
            fail(what_, ": BUILD on a ", kind_name(obj->k), " at pickle offset ", at, " (not a state_dict)");
          (void)state;
          break;
        }
        case 's': {                                      // SETITEM
          P v = pop(), k = pop();
          set_items(top(), {k, v});
          break;
        }
        case 'u': {                                      // SETITEMS
          std::vector<P> kv = pop_mark();
          if (kv.size() % 2) fail(what_, ": SETITEMS with an odd number of items at pickle offset ", at);
          set_items(top(), kv);
          break;
        }
        case 'a': {                                      // APPEND
          P v = pop();
          append(top(), {v});
          break;
        }
        case 'e': {                                      // APPENDS
          std::vector<P> v = pop_mark();
          append(top(), v);
          break;
        }
        case '.':                                        // STOP
          if (stack_.size() != 1) fail(what_, ": the pickle ends with ", stack_.size(), " values on its stack");
          return pop();
        default:
          fail(what_, ": pickle opcode 0x", hex(op), " at offset ", at,
               " is not one a tensor state_dict uses; ignis reads tensors only and never runs pickled code");
      }
    }
  }

 private:
  static std::string hex(uint8_t v) {
    const char* h = "0123456789abcdef";
    return {h[v >> 4], h[v & 15]};
  }
  uint8_t u8() {
    if (pos_ >= n_) fail(what_, ": the pickle ends early (no STOP)");
    return d_[pos_++];
  }
  const uint8_t* bytes(size_t k) {
    if (k > n_ - pos_) fail(what_, ": the pickle ends early (", k, " bytes wanted at offset ", pos_, ")");
    const uint8_t* p = d_ + pos_;
    pos_ += k;
    return p;
  }
  uint64_t le(size_t k) {
    const uint8_t* b = bytes(k);
    uint64_t v = 0;
    for (size_t j = 0; j < k; ++j) v |= uint64_t(b[j]) << (8 * j);
    return v;
  }
  std::string line() {
    std::string s;
    for (;;) {
      const uint8_t c = u8();
      if (c == '\n') return s;
      if (s.size() > 256) fail(what_, ": GLOBAL name too long");
      s.push_back(char(c));
    }
  }
  void push(P o) {
    if (stack_.size() >= kMaxStack) fail(what_, ": pickle stack too deep");
    stack_.push_back(std::move(o));
  }
  void push_int(int64_t v) {
    P o = make(Obj::K::Int);
    o->i = v;
    push(o);
  }
  void push_str(size_t k) {
    P o = make(Obj::K::Str);
    const uint8_t* b = bytes(k);
    o->s.assign(reinterpret_cast<const char*>(b), k);
    push(o);
  }
  P pop() {
    if (stack_.empty() || stack_.back()->k == Obj::K::Mark) fail(what_, ": pickle stack underflow at offset ", pos_);
    P o = std::move(stack_.back());
    stack_.pop_back();
    return o;
  }
  P top() {
    if (stack_.empty() || stack_.back()->k == Obj::K::Mark) fail(what_, ": pickle stack underflow at offset ", pos_);
    return stack_.back();
  }
  std::vector<P> pop_mark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->k != Obj::K::Mark) --m;
    if (m == 0) fail(what_, ": pickle has no MARK to close at offset ", pos_);
    std::vector<P> items(std::make_move_iterator(stack_.begin() + std::ptrdiff_t(m)), std::make_move_iterator(stack_.end()));
    stack_.resize(m - 1);
    return items;
  }
  void memo_put(uint64_t idx) {
    if (idx >= kMaxMemo) fail(what_, ": pickle memo index ", idx, " is too large");
    memo_[idx] = top();
  }
  P memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail(what_, ": pickle memo ", idx, " is used before it is set");
    return it->second;
  }
  P finish(P o) {  // computes the nesting depth of a container
    int d = 1;
    for (const P& c : o->items) d = std::max(d, c->depth + 1), c->frozen = true;
    if (d > kMaxDepth) fail(what_, ": the pickle nests values more than ", kMaxDepth, " deep");
    o->depth = d;
    return o;
  }
  void set_items(const P& dict, const std::vector<P>& kv) {
    if (dict->k != Obj::K::Dict) fail(what_, ": SETITEM on a ", kind_name(dict->k));
    if (dict->frozen) fail(what_, ": SETITEM on a dict that is already inside another value");
    for (size_t j = 0; j + 1 < kv.size(); j += 2) {
      if (kv[j].get() == dict.get() || kv[j + 1].get() == dict.get()) fail(what_, ": a dict that contains itself");
      kv[j]->frozen = kv[j + 1]->frozen = true;
      dict->dict.emplace_back(kv[j], kv[j + 1]);
      const int d = std::max(kv[j]->depth, kv[j + 1]->depth) + 1;
      if (d > kMaxDepth) fail(what_, ": the pickle nests values more than ", kMaxDepth, " deep");
      dict->depth = std::max(dict->depth, d);
    }
  }
  void append(const P& list, const std::vector<P>& v) {
    if (list->k != Obj::K::List) fail(what_, ": APPEND on a ", kind_name(list->k));
    if (list->frozen) fail(what_, ": APPEND on a list that is already inside another value");
    for (const P& x : v) {
      if (x.get() == list.get()) fail(what_, ": a list that contains itself");
      x->frozen = true;
      list->items.push_back(x);
      if (x->depth + 1 > kMaxDepth) fail(what_, ": the pickle nests values more than ", kMaxDepth, " deep");
      list->depth = std::max(list->depth, x->depth + 1);
    }
  }
  P global(const std::string& name) {
    static const std::set<std::string> allowed = {
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"};
    StorageRef s;
    if (!allowed.count(name) && !storage_type(name, s))
      fail(what_, ": the pickle refers to '", name,
           "', which is not part of a tensor state_dict; ignis reads tensors only and never runs pickled code");
    P o = make(Obj::K::Global);
    o->s = name;
    return o;
  }
  int64_t as_int(const P& o, const char* what) {
    if (o->k != Obj::K::Int) fail(what_, ": ", what, " is a ", kind_name(o->k), ", expected an int");
    return o->i;
  }
  // ("storage", torch.FloatStorage, key, location, numel)
  P persistent(const P& pid) {
    if (pid->k != Obj::K::Tuple || pid->items.size() != 5 || pid->items[0]->k != Obj::K::Str ||
        pid->items[0]->s != "storage" || pid->items[1]->k != Obj::K::Global || pid->items[2]->k != Obj::K::Str)
      fail(what_, ": a persistent id that is not ('storage', type, key, location, numel)");
    auto s = std::make_shared<StorageRef>();
    if (!storage_type(pid->items[1]->s, *s)) fail(what_, ": '", pid->items[1]->s, "' is not a storage type");
    s->key = pid->items[2]->s;
    s->numel = as_int(pid->items[4], "a storage's numel");
    if (s->numel < 0) fail(what_, ": storage '", s->key, "' has negative size ", s->numel);
    P o = make(Obj::K::Storage);
    o->storage = s;
    return o;
  }
  P reduce(const P& fn, const P& args) {
    if (fn->k != Obj::K::Global) fail(what_, ": REDUCE on a ", kind_name(fn->k), ", not a known callable");
    if (args->k != Obj::K::Tuple) fail(what_, ": REDUCE arguments are a ", kind_name(args->k), ", not a tuple");
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") {
      if (!a.empty()) fail(what_, ": OrderedDict called with arguments");
      return make(Obj::K::Dict);
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      if (a.size() < 1 || a[0]->k != Obj::K::Tensor) fail(what_, ": _rebuild_parameter without a tensor");
      return a[0];
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      if (a.size() < 4 || a[0]->k != Obj::K::Storage || a[2]->k != Obj::K::Tuple || a[3]->k != Obj::K::Tuple)
        fail(what_, ": _rebuild_tensor_v2 arguments are not (storage, offset, sizes, strides, ...)");
      auto t = std::make_shared<TensorRef>();
      t->storage = *a[0]->storage;
      t->offset = as_int(a[1], "a tensor's storage offset");
      for (const P& x : a[2]->items) t->sizes.push_back(as_int(x, "a tensor size"));
      for (const P& x : a[3]->items) t->strides.push_back(as_int(x, "a tensor stride"));
      if (t->sizes.size() != t->strides.size()) fail(what_, ": a tensor has ", t->sizes.size(), " sizes and ", t->strides.size(), " strides");
      P o = make(Obj::K::Tensor);
      o->tensor = t;
      return o;
    }
    fail(what_, ": '", fn->s, "' cannot be called here");
  }

  const uint8_t* d_;
  size_t n_, pos_ = 0;
  std::string what_;
  std::vector<P> stack_;
  std::map<uint64_t, P> memo_;
};

// name -> tensor reference, from the unpickled root (a dict of str -> tensor).
std::vector<std::pair<std::string, TensorRef>> state_dict_entries(const P& root, const std::string& what) {
  if (root->k != Obj::K::Dict)
    fail(what, ": the checkpoint holds a ", kind_name(root->k), ", not a state_dict (a dict of tensors)");
  std::vector<std::pair<std::string, TensorRef>> out;
  for (const auto& [k, v] : root->dict) {
    if (k->k != Obj::K::Str) fail(what, ": a state_dict key is a ", kind_name(k->k), ", not a string");
    if (v->k != Obj::K::Tensor)
      fail(what, ": state_dict entry '", k->s, "' is a ", kind_name(v->k),
           ", not a tensor (a training checkpoint? save the model's state_dict alone)");
    out.emplace_back(k->s, *v->tensor);
  }
  return out;
}

P unpickle(const uint8_t* data, size_t size, const std::string& what) { return Unpickler(data, size, what).run(); }

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};

std::string read_entry(zip_t* z, zip_uint64_t idx, size_t archive_size, size_t cap, const std::string& what) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(z, idx, 0, &st) != 0) fail(what, ": cannot read a zip entry: ", zip_strerror(z));
  const char* name = st.name ? st.name : "?";
  if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE)) fail(what, ": zip entry ", name, " has no size");
  if (st.comp_size > archive_size) fail(what, ": zip entry ", name, " is larger than the archive");
  const bool stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
  if (stored ? st.size != st.comp_size : st.size / 1032 > st.comp_size)
    fail(what, ": zip entry ", name, " claims ", st.size, " bytes from ", st.comp_size);
  if (st.size > cap) fail(what, ": zip entry ", name, " of ", st.size, " bytes is too large");
  std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> f(zip_fopen_index(z, idx, 0), zip_fclose);
  if (!f) fail(what, ": cannot open zip entry ", name, ": ", zip_strerror(z));
  std::string buf(size_t(st.size), '\0');
  size_t got = 0;
  while (got < buf.size()) {
    const zip_int64_t r = zip_fread(f.get(), buf.data() + got, buf.size() - got);
    if (r < 0) fail(what, ": reading zip entry ", name, " failed: ", zip_file_strerror(f.get()));
    if (r == 0) break;
    got += size_t(r);
  }
  if (got != buf.size()) fail(what, ": zip entry ", name, " is truncated (", got, " of ", buf.size(), " bytes)");
  return buf;
}

Tensor materialize(const std::string& name, const TensorRef& t, const std::string& raw, const std::string& what) {
  const StorageRef& s = t.storage;
  if (s.numel > int64_t(raw.size() / s.elem))
    fail(what, ": storage '", s.key, "' holds ", raw.size(), " bytes, less than ", s.numel, " x ", s.elem);
  if (t.sizes.size() > 4) fail(what, ": tensor '", name, "' has ", t.sizes.size(), " dimensions (at most 4)");
  int64_t numel = 1, last = t.offset;
  for (size_t d = 0; d < t.sizes.size(); ++d) {
    if (t.sizes[d] < 0 || t.strides[d] < 0) fail(what, ": tensor '", name, "' has a negative size or stride");
    if (t.sizes[d] > (int64_t{1} << 40) || t.strides[d] > (int64_t{1} << 40))
      fail(what, ": tensor '", name, "' has an absurd size or stride");
    numel *= t.sizes[d];
    if (numel > (int64_t{1} << 40)) fail(what, ": tensor '", name, "' is too large");
    if (t.sizes[d] > 0) last += (t.sizes[d] - 1) * t.strides[d];
  }
  if (t.offset < 0) fail(what, ": tensor '", name, "' has a negative storage offset");
  if (numel > 0 && last >= s.numel)
    fail(what, ": tensor '", name, "' reads element ", last, " of storage '", s.key, "' which has ", s.numel);
  std::vector<int64_t> shape = t.sizes;
  if (shape.empty()) shape = {1};
  const DType out_dtype = s.dtype;
  Tensor out = Tensor::empty_like_shape(shape.data(), int(shape.size()), out_dtype);
  const uint8_t* src = reinterpret_cast<const uint8_t*>(raw.data());
  const size_t out_elem = s.is_f64 ? 4 : s.elem;
  uint8_t* dst = static_cast<uint8_t*>(out.data());
  // Walk the index space in row-major order (general strides: transposed views are legal).
  const size_t nd = t.sizes.size();
  std::vector<int64_t> idx(nd, 0);
  for (int64_t e = 0; e < numel; ++e) {
    int64_t off = t.offset;
    for (size_t d = 0; d < nd; ++d) off += idx[d] * t.strides[d];
    const uint8_t* p = src + size_t(off) * s.elem;
    if (s.is_f64) {
      double v;
      std::memcpy(&v, p, 8);
      const float f = float(v);
      std::memcpy(dst + size_t(e) * 4, &f, 4);
    } else {
      std::memcpy(dst + size_t(e) * out_elem, p, out_elem);
    }
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < t.sizes[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

std::string describe_torch_pickle(const uint8_t* data, size_t size, const std::string& what) {
  std::string out;
  for (const auto& [name, t] : state_dict_entries(unpickle(data, size, what), what))
    out += name + " -> " + t.storage.key + " " + t.storage.type_name + "\n";
  return out;
}

std::map<std::string, Tensor> parse_torch_state_dict(const uint8_t* data, size_t size, const std::string& what) {
  if (size >= 2 && data[0] == 0x80)
    fail(what, ": this is a legacy (pre-1.6) torch.save file; ignis reads the zip format only. Re-save it with "
               "torch >= 1.6, or better convert it to safetensors");
  zip_error_t zerr;
  zip_error_init(&zerr);
  zip_source_t* zs = zip_source_buffer_create(data, size, 0, &zerr);
  if (!zs) fail(what, ": cannot read as zip: ", zip_error_strerror(&zerr));
  std::unique_ptr<zip_t, ZipCloser> z(zip_open_from_source(zs, ZIP_RDONLY | ZIP_CHECKCONS, &zerr));
  if (!z) {
    zip_source_free(zs);
    const std::string msg = zip_error_strerror(&zerr);
    zip_error_fini(&zerr);
    fail(what, ": not a PyTorch checkpoint (not a zip archive: ", msg, ")");
  }
  zip_error_fini(&zerr);
  // Find ARCHIVE/data.pkl; ARCHIVE is any top-level folder name ("archive", "pytorch_model", ...).
  const zip_int64_t n = zip_get_num_entries(z.get(), 0);
  std::string prefix;
  zip_int64_t pkl = -1;
  std::map<std::string, zip_uint64_t> entries;
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* nm = zip_get_name(z.get(), zip_uint64_t(i), 0);
    if (!nm) continue;
    const std::string s = nm;
    entries[s] = zip_uint64_t(i);
    const size_t slash = s.find('/');
    if (slash != std::string::npos && s.compare(slash, std::string::npos, "/data.pkl") == 0 && pkl < 0) {
      pkl = i;
      prefix = s.substr(0, slash + 1);
    }
  }
  if (pkl < 0) fail(what, ": no ARCHIVE/data.pkl inside; not a torch.save checkpoint");
  const std::string pickle = read_entry(z.get(), zip_uint64_t(pkl), size, size_t(256) << 20, what + ":data.pkl");
  const auto refs = state_dict_entries(
      unpickle(reinterpret_cast<const uint8_t*>(pickle.data()), pickle.size(), what + ":data.pkl"), what);
  std::map<std::string, std::string> storages;  // key -> bytes, read once (tensors may share one)
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : refs) {
    if (!t.storage.supported) continue;
    auto it = storages.find(t.storage.key);
    if (it == storages.end()) {
      const std::string ename = prefix + "data/" + t.storage.key;
      auto e = entries.find(ename);
      if (e == entries.end()) fail(what, ": tensor '", name, "' needs ", ename, ", which is not in the archive");
      it = storages.emplace(t.storage.key, read_entry(z.get(), e->second, size, size, what)).first;
    }
    out[name] = materialize(name, t, it->second, what);
  }
  return out;
}

std::map<std::string, Tensor> read_torch_state_dict(const std::string& path) {
  auto f = MappedFile::open(path);
  return parse_torch_state_dict(f->data(), f->size(), path);
}

}  // namespace ignis
