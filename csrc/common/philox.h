// Counter-based Philox4x32-10, bit-identical to Triton's `tl.randint4x` / `tl.rand` / `tl.randn`.
//
// One draw = one Philox block: counter (ctr_lo, ctr_hi, 0, 0), key (seed_lo, seed_hi), where
// ctr = offset + element index. Using the element index as the counter makes every backend's
// output independent of block and grid sizes.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace rk {

struct PhiloxBlock {
  uint32_t c0, c1, c2, c3;
};

RK_HOST_DEVICE uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

RK_HOST_DEVICE PhiloxBlock philox4x32_10(uint64_t seed, uint64_t counter) {
  constexpr uint32_t kKeyA = 0x9E3779B9u, kKeyB = 0xBB67AE85u;
  constexpr uint32_t kRoundA = 0xD2511F53u, kRoundB = 0xCD9E8D57u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint32_t old_c0 = c0, old_c2 = c2;
    c0 = mulhi32(kRoundB, old_c2) ^ c1 ^ k0;
    c2 = mulhi32(kRoundA, old_c0) ^ c3 ^ k1;
    c1 = kRoundB * old_c2;
    c3 = kRoundA * old_c0;
    k0 += kKeyA;
    k1 += kKeyB;
  }
  return {c0, c1, c2, c3};
}

// Triton's uint_to_uniform_float: reinterpret as int32, fold negatives with ~x, scale into [0, 1).
RK_HOST_DEVICE float uint_to_uniform(uint32_t bits) {
  int32_t x = static_cast<int32_t>(bits);
  x = x < 0 ? ~x : x;
  return static_cast<float>(x) * 4.6566127342e-10f;
}

// Triton's pair_uniform_to_normal, cosine branch (what `tl.randn` returns).
RK_HOST_DEVICE float box_muller_cos(float u1, float u2) {
  u1 = u1 > 1.0e-7f ? u1 : 1.0e-7f;
  const float theta = 6.283185307179586f * u2;
  const float radius = sqrtf(-2.0f * logf(u1));
  return radius * cosf(theta);
}

RK_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t counter) {
  return uint_to_uniform(philox4x32_10(seed, counter).c0);
}

RK_HOST_DEVICE float philox_normal(uint64_t seed, uint64_t counter) {
  const PhiloxBlock block = philox4x32_10(seed, counter);
  return box_muller_cos(uint_to_uniform(block.c0), uint_to_uniform(block.c1));
}

}  // namespace rk
