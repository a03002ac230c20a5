// The x8 weight layouts (quant.h): packing, unpacking and the choice of layout per CPU.
// Plain byte moves, no arithmetic: a packed group is a permutation of its 8 rows' bytes.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops/quant.h"

namespace ignis::quant {
namespace {

constexpr int kRows = 8;

// Where the pieces of plain block `b` of group row `r` go inside the packed block: the
// f16 scale(s) and the 4-byte words of qs. `words` = qs bytes / 4 (4 for Q4, 8 for Q8_0).
struct X8Layout {
  size_t qs_offset;  // of qs inside a plain block
  size_t head;       // bytes of scales before the words in a packed block (16 or 32)
  int words;
  bool has_min;      // Q4_1: a second f16 (m) after d, both in the plain block and the head
};

X8Layout layout_of(DType packed) {
  switch (packed) {
    case DType::Q4_0x8: return {2, 16, 4, false};
    case DType::Q4_1x8: return {4, 32, 4, true};
    case DType::Q8_0x8: return {2, 16, 8, false};
    default: fail("x8: ", dtype_name(packed), " is not a packed type");
  }
}

// plain <-> packed for one block of 8 rows. `to_packed` picks the direction.
void move_block(const X8Layout& L, uint8_t* packed, uint8_t* const* plain, bool to_packed) {
  for (int r = 0; r < kRows; ++r) {
    uint8_t* p = plain[r];
    auto mv = [&](uint8_t* pk, uint8_t* pl, size_t n) { to_packed ? std::memcpy(pk, pl, n) : std::memcpy(pl, pk, n); };
    mv(packed + 2 * r, p, 2);                                      // d
    if (L.has_min) mv(packed + 16 + 2 * r, p + 2, 2);              // m
    for (int w = 0; w < L.words; ++w) mv(packed + L.head + 32 * w + 4 * r, p + L.qs_offset + 4 * w, 4);
  }
}

}  // namespace

std::optional<DType> packed_type(DType t) {
  switch (t) {
    case DType::Q4_0: return DType::Q4_0x8;
    case DType::Q4_1: return DType::Q4_1x8;
    case DType::Q8_0: return DType::Q8_0x8;
    default: return std::nullopt;
  }
}

bool is_packed(DType t) { return t == DType::Q4_0x8 || t == DType::Q4_1x8 || t == DType::Q8_0x8; }

DType unpacked_type(DType packed) {
  switch (packed) {
    case DType::Q4_0x8: return DType::Q4_0;
    case DType::Q4_1x8: return DType::Q4_1;
    case DType::Q8_0x8: return DType::Q8_0;
    default: fail("x8: ", dtype_name(packed), " is not a packed type");
  }
}

Tensor pack_x8(const Tensor& W, ThreadPool* pool) {
  IGNIS_CHECK(W.device() == Device::CPU && W.ndim() == 2, "pack_x8: expected a 2-D CPU weight, got ", W.shape_str());
  const auto pt = packed_type(W.dtype());
  IGNIS_CHECK(pt.has_value(), "pack_x8: weights of type ", dtype_name(W.dtype()), " have no packed layout");
  const int64_t N = W.rows(), K = W.cols();
  const int64_t groups = (N + kRows - 1) / kRows, nb = K / dtype_info(W.dtype()).block_size;
  const size_t bb = dtype_info(W.dtype()).block_bytes, rb = W.row_bytes();
  // Whole groups are allocated (the last one padded by repeating the last row); the
  // tensor keeps the shape [N, K] and the allocation alive.
  Tensor buf = Tensor::empty({groups * kRows, K}, *pt);
  const int64_t shape[2] = {N, K};
  Tensor P = Tensor::view(buf.data(), shape, 2, *pt, buf.owner());
  const X8Layout L = layout_of(*pt);
  auto pack_groups = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* dst = static_cast<uint8_t*>(P.data()) + size_t(g) * kRows * rb;
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* rows[kRows];
        for (int r = 0; r < kRows; ++r) {
          const int64_t src = std::min<int64_t>(g * kRows + r, N - 1);
          rows[r] = const_cast<uint8_t*>(W.row<const uint8_t>(src)) + size_t(b) * bb;
        }
        move_block(L, dst + size_t(b) * kRows * bb, rows, /*to_packed=*/true);
      }
    }
  };
  if (pool && groups > 1)
    pool->parallel_for(groups, 16, pack_groups);
  else
    pack_groups(0, groups);
  return P;
}

void unpack_x8_group(const Tensor& P, int64_t g, uint8_t* out) {
  const DType t = unpacked_type(P.dtype());
  IGNIS_CHECK(g >= 0 && g * kRows < std::max<int64_t>(P.rows(), 1), "unpack_x8_group: group ", g, " out of range");
  const X8Layout L = layout_of(P.dtype());
  const int64_t nb = P.cols() / dtype_info(t).block_size;
  const size_t bb = dtype_info(t).block_bytes, rb = P.row_bytes();
  uint8_t* src = static_cast<uint8_t*>(P.data()) + size_t(g) * kRows * rb;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* rows[kRows];
    for (int r = 0; r < kRows; ++r) rows[r] = out + size_t(r) * rb + size_t(b) * bb;
    move_block(L, src + size_t(b) * kRows * bb, rows, /*to_packed=*/false);
  }
}

Tensor unpack_x8(const Tensor& P) {
  IGNIS_CHECK(P.device() == Device::CPU && P.ndim() == 2, "unpack_x8: expected a 2-D CPU tensor");
  const DType t = unpacked_type(P.dtype());
  const int64_t N = P.rows(), K = P.cols();
  Tensor W = Tensor::empty({N, K}, t);
  const size_t rb = P.row_bytes();
  std::vector<uint8_t> group(kRows * rb);
  for (int64_t g = 0; g * kRows < N; ++g) {
    unpack_x8_group(P, g, group.data());
    const int64_t rows = std::min<int64_t>(kRows, N - g * kRows);
    std::memcpy(W.row<uint8_t>(g * kRows), group.data(), size_t(rows) * rb);
  }
  return W;
}

Tensor prepare_cpu_weight(const Tensor& W, ThreadPool* pool) {
  if (W.device() != Device::CPU || W.ndim() != 2 || !packed_type(W.dtype())) return W;
  const char* off = std::getenv("IGNIS_NO_REPACK");
  if (off && *off && std::strcmp(off, "0") != 0) return W;
  if (!using_avx2() || using_avx512_vnni()) return W;
  return pack_x8(W, pool);
}

}  // namespace ignis::quant
