#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "core/error.h"

namespace ignis {

namespace {
void set_shape(std::array<int64_t, 4>& dst, int& ndim, const int64_t* shape, int n) {
  IGNIS_CHECK(n >= 0 && n <= 4, "tensors have at most 4 dimensions, got ", n);
  ndim = n;
  for (int i = 0; i < n; ++i) {
    IGNIS_CHECK(shape[i] >= 0, "negative tensor dimension ", shape[i]);
    dst[size_t(i)] = shape[i];
  }
}
}  // namespace

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape_[size_t(i)];
  return n;
}

size_t Tensor::row_bytes() const { return ignis::row_bytes(dtype_, cols()); }

std::string Tensor::shape_str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim_; ++i) os << (i ? ", " : "") << shape_[size_t(i)];
  os << ']';
  return os.str();
}

Tensor Tensor::empty_like_shape(const int64_t* shape, int ndim, DType dtype) {
  Tensor t;
  set_shape(t.shape_, t.ndim_, shape, ndim);
  t.dtype_ = dtype;
  const size_t bytes = t.nbytes();
  const size_t padded = (bytes + 63) / 64 * 64 + 64;
  void* p = std::aligned_alloc(64, padded);
  if (!p) fail("out of memory allocating a tensor of ", bytes, " bytes ", t.shape_str());
  t.data_ = p;
  t.owner_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  return t;
}

Tensor Tensor::empty(std::initializer_list<int64_t> shape, DType dtype) {
  return empty_like_shape(shape.begin(), int(shape.size()), dtype);
}

Tensor Tensor::zeros(std::initializer_list<int64_t> shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(void* data, const int64_t* shape, int ndim, DType dtype, std::shared_ptr<void> owner,
                    Device device) {
  Tensor t;
  set_shape(t.shape_, t.ndim_, shape, ndim);
  t.dtype_ = dtype;
  t.data_ = data;
  t.owner_ = std::move(owner);
  t.device_ = device;
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  IGNIS_CHECK(begin >= 0 && begin <= end && end <= rows(), "row slice [", begin, ", ", end,
              ") out of range for a tensor of ", rows(), " rows");
  const int64_t shape[2] = {end - begin, cols()};
  return view(static_cast<char*>(data_) + size_t(begin) * row_bytes(), shape, 2, dtype_, owner_, device_);
}

Tensor Tensor::reshape(std::initializer_list<int64_t> shape) const {
  Tensor t = *this;
  set_shape(t.shape_, t.ndim_, shape.begin(), int(shape.size()));
  IGNIS_CHECK(t.numel() == numel(), "cannot reshape ", shape_str(), " to ", t.shape_str());
  return t;
}

}  // namespace ignis
