// Tensor: a contiguous, row-major array of up to 4 dimensions with a dtype and a device.
// The last dimension is the fastest-moving one ("columns"); a weight of a linear layer
// y = W x has shape {out_features, in_features}. Memory is kept alive by `owner`, which
// may be an allocation, a memory-mapped model file, or a device buffer.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace ignis {

enum class Device : uint8_t { CPU, CUDA };

class Tensor {
 public:
  Tensor() = default;

  // A new, uninitialised tensor on the CPU (64-byte aligned).
  static Tensor empty(std::initializer_list<int64_t> shape, DType dtype = DType::F32);
  static Tensor empty_like_shape(const int64_t* shape, int ndim, DType dtype);
  static Tensor zeros(std::initializer_list<int64_t> shape, DType dtype = DType::F32);
  // A view of memory owned by someone else (e.g. an mmap); `owner` keeps it alive.
  static Tensor view(void* data, const int64_t* shape, int ndim, DType dtype,
                     std::shared_ptr<void> owner, Device device = Device::CPU);

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int ndim() const { return ndim_; }
  int64_t dim(int i) const { return shape_[size_t(i < 0 ? i + ndim_ : i)]; }
  const int64_t* shape() const { return shape_.data(); }
  int64_t numel() const;
  int64_t cols() const { return ndim_ ? shape_[size_t(ndim_ - 1)] : 1; }
  int64_t rows() const { return cols() ? numel() / cols() : 0; }
  size_t row_bytes() const;
  size_t nbytes() const { return row_bytes() * size_t(rows()); }
  bool defined() const { return data_ != nullptr || numel() == 0; }
  std::string shape_str() const;

  void* data() const { return data_; }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data_); }
  // Pointer to row r (counting rows over all leading dimensions).
  template <typename T>
  T* row(int64_t r) const { return reinterpret_cast<T*>(static_cast<char*>(data_) + size_t(r) * row_bytes()); }
  // The rows [begin, end) of the flattened leading dimensions, as a 2-D view.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Same memory, another shape with the same number of elements.
  Tensor reshape(std::initializer_list<int64_t> shape) const;
  const std::shared_ptr<void>& owner() const { return owner_; }

 private:
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  int ndim_ = 0;
  std::array<int64_t, 4> shape_{};
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

}  // namespace ignis
