// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator, so the sampler's random number for (seed, step, sequence) is a pure
// function computed identically on the device and on the host (tests).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define IGNIS_PHILOX_HD __host__ __device__ __forceinline__
#else
#define IGNIS_PHILOX_HD inline
#endif

namespace ignis::cuda {

IGNIS_PHILOX_HD uint32_t philox_mulhi(uint32_t a, uint32_t b) {
  return uint32_t((uint64_t(a) * uint64_t(b)) >> 32);
}

// Returns the first 32-bit word of Philox4x32-10 on counter (c0, c1, 0, 0) with key (k0, k1).
IGNIS_PHILOX_HD uint32_t philox4x32_10(uint32_t c0, uint32_t c1, uint32_t k0, uint32_t k1) {
  uint32_t c2 = 0, c3 = 0;
  for (int r = 0; r < 10; ++r) {
    const uint32_t lo0 = 0xD2511F53u * c0, hi0 = philox_mulhi(0xD2511F53u, c0);
    const uint32_t lo1 = 0xCD9E8D57u * c2, hi1 = philox_mulhi(0xCD9E8D57u, c2);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

// Uniform float in [0, 1) for (seed, counter, stream): 24 random bits.
IGNIS_PHILOX_HD float philox_uniform(uint32_t seed_lo, uint32_t seed_hi, uint32_t counter, uint32_t stream) {
  return float(philox4x32_10(counter, stream, seed_lo, seed_hi) >> 8) * (1.0f / 16777216.0f);
}

}  // namespace ignis::cuda
