#include "core/dtype.h"

#include <array>

#include "core/error.h"

namespace ignis {
namespace {
// Block layouts follow GGML (ggml-common.h): e.g. Q4_0 = f16 scale + 16 bytes of nibbles.
constexpr std::array<DTypeInfo, size_t(DType::kCount)> kInfo = {{
    {"f32", 1, 4, 0, false},
    {"f16", 1, 2, 1, false},
    {"bf16", 1, 2, 30, false},
    {"i32", 1, 4, 26, false},
    {"i8", 1, 1, 24, false},
    {"q4_0", 32, 2 + 16, 2, true},
    {"q4_1", 32, 2 + 2 + 16, 3, true},
    {"q5_0", 32, 2 + 4 + 16, 6, true},
    {"q5_1", 32, 2 + 2 + 4 + 16, 7, true},
    {"q8_0", 32, 2 + 32, 8, true},
    {"q8_1", 32, 2 + 2 + 32, 9, true},
    {"q2_k", 256, 16 + 64 + 2 + 2, 10, true},
    {"q3_k", 256, 32 + 64 + 12 + 2, 11, true},
    {"q4_k", 256, 2 + 2 + 12 + 128, 12, true},
    {"q5_k", 256, 2 + 2 + 12 + 32 + 128, 13, true},
    {"q6_k", 256, 128 + 64 + 16 + 2, 14, true},
    {"q8_k", 256, 4 + 256 + 32, 15, true},
    {"q4_0x8", 32, 2 + 16, -1, true},
    {"q4_1x8", 32, 2 + 2 + 16, -1, true},
    {"q8_0x8", 32, 2 + 32, -1, true},
}};
}  // namespace

const DTypeInfo& dtype_info(DType t) {
  IGNIS_CHECK(size_t(t) < kInfo.size(), "invalid dtype id ", int(t));
  return kInfo[size_t(t)];
}

size_t row_bytes(DType t, int64_t n) {
  const auto& info = dtype_info(t);
  IGNIS_CHECK(n >= 0 && n % info.block_size == 0, "a row of ", n, " values is not a whole number of ",
              info.name, " blocks (", info.block_size, " values each)");
  return size_t(n / info.block_size) * info.block_bytes;
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  for (size_t i = 0; i < kInfo.size(); ++i)
    if (kInfo[i].ggml_type >= 0 && uint32_t(kInfo[i].ggml_type) == ggml_type) return DType(i);
  return std::nullopt;
}

std::string_view ggml_type_name(uint32_t t) {
  static constexpr std::array<std::string_view, 40> names = {
      "F32",  "F16",    "Q4_0",   "Q4_1",   "Q4_2", "Q4_3",  "Q5_0",  "Q5_1",  "Q8_0",  "Q8_1",
      "Q2_K", "Q3_K",   "Q4_K",   "Q5_K",   "Q6_K", "Q8_K",  "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
      "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",   "I16",   "I32",   "I64",   "F64",   "IQ1_M",
      "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
      "IQ4_NL_8_8", "MXFP4"};
  return t < names.size() ? names[t] : std::string_view("unknown");
}

}  // namespace ignis
