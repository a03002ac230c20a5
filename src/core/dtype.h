// Element types. Plain types (f32, f16, bf16, i32) and the GGML block-quantized types:
// a quantized row is a sequence of fixed-size blocks, each holding `block_size` values
// in `block_bytes` bytes. The enum values are our own; `ggml_type` maps to GGUF ids.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ignis {

enum class DType : uint8_t {
  F32, F16, BF16, I32, I8,
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
  // CPU-only layouts of Q4_0 / Q4_1 / Q8_0 weights with 8 rows interleaved (ops/quant.h,
  // "x8"); never in a file. Same bytes per row as the plain type, but a row cannot be read
  // on its own: only the CPU matmul reads them.
  Q4_0x8, Q4_1x8, Q8_0x8,
  kCount
};

struct DTypeInfo {
  std::string_view name;
  int64_t block_size;   // values per block (1 for plain types)
  size_t block_bytes;   // bytes per block
  int ggml_type;        // id in GGUF files, -1 if none
  bool quantized;
};

const DTypeInfo& dtype_info(DType t);
inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }
inline bool is_quantized(DType t) { return dtype_info(t).quantized; }

// Bytes of a row of n values. Throws if n is not a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

// Maps a GGUF tensor type id to a DType; nullopt for ids we do not support.
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
// Name of a GGUF tensor type id, also for unsupported ones (for error messages).
std::string_view ggml_type_name(uint32_t ggml_type);

}  // namespace ignis
