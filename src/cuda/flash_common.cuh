// Device helpers shared by the two flash-attention kernels (encoder_attention.cu: non-causal over a
// ragged batch; attention_prefill.cu: causal prefill from the KV cache): cp.async copies to shared
// memory, ldmatrix, the m16n8k16 tensor-core product with fp32 accumulators, float pairs packed as
// half / bf16 pairs, and a one-instruction exp2. Header-only, nvcc only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace ignis::cuda::flash {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, asynchronously; valid = false zero-fills the destination (src must
// still be a valid address).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// D += A B for 16x16 A (row) and 16x8 B (col) of T (__half or __nv_bfloat16), fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "mma16816: half or bf16");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
// Two floats as a packed pair of T (lo in the low half).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}
// 2^x in one MUFU.EX2 (results below 2^-126 flush to 0: softmax terms that small do not count;
// 2^-inf = 0). exp2f() wraps the same instruction in a range test and two multiplies, 3 of the ~8
// instructions a score cost in the softmax (sm_90 SASS, 2026-12-07).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The pair (2^lo, 2^hi) packed as T (lo in the low half): one fp32 MUFU.EX2 each. (ex2.approx.f16x2
// is no cheaper on sm_90: ptxas splits it into two MUFU.EX2.F16 and a PRMT, after a conversion of
// the arguments; SASS of the encoder kernel, 2026-12-07.)
template <typename T>
__device__ __forceinline__ uint32_t exp2_pack(float lo, float hi) {
  return pack2<T>(fast_exp2(lo), fast_exp2(hi));
}
// A register of two T ones (a B fragment of ones: the mma then sums the rows of A).
template <typename T>
__device__ __forceinline__ constexpr uint32_t ones2() {
  return std::is_same_v<T, __half> ? 0x3C003C00u : 0x3F803F80u;
}

}  // namespace ignis::cuda::flash
