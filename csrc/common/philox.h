// Counter-based Philox4x32-10, bit-identical to Triton's `tl.randint4x` / `tl.rand` / `tl.randn`.
//
// One draw = one Philox block: counter (ctr_lo, ctr_hi, 0, 0), key (seed_lo, seed_hi), where
// ctr = offset + element index. Using the element index as the counter makes every backend's
// output independent of block and grid sizes.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/fast_math.h"
#include "common/macros.h"

namespace rk {

struct PhiloxBlock {
  uint32_t c0, c1, c2, c3;
};

RK_HOST_DEVICE PhiloxBlock philox4x32_10(uint64_t seed, uint64_t counter) {
  constexpr uint32_t kKeyA = 0x9E3779B9u, kKeyB = 0xBB67AE85u;
  constexpr uint32_t kRoundA = 0xD2511F53u, kRoundB = 0xCD9E8D57u;
#if defined(__CUDA_ARCH__)
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t old_c0 = c0, old_c2 = c2;
    c0 = __umulhi(kRoundB, old_c2) ^ c1 ^ k0;
    c2 = __umulhi(kRoundA, old_c0) ^ c3 ^ k1;
    c1 = kRoundB * old_c2;
    c3 = kRoundA * old_c0;
    k0 += kKeyA;
    k1 += kKeyB;
  }
  return {c0, c1, c2, c3};
#else
  // Host: each word lives in a 64-bit lane whose upper half may hold garbage (only the low
  // 32 bits are ever read), so a vectorised loop maps each 32x32->64 product onto one
  // vpmuludq with no masking or shuffles: 1.8x faster than the 32-bit form on AVX-512.
  uint64_t c0 = counter, c1 = counter >> 32, c2 = 0, c3 = 0;
  uint64_t k0 = static_cast<uint32_t>(seed), k1 = seed >> 32;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10  // straight-line code, so the element loop around it vectorises
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t product_b = static_cast<uint64_t>(static_cast<uint32_t>(c2)) * kRoundB;
    const uint64_t product_a = static_cast<uint64_t>(static_cast<uint32_t>(c0)) * kRoundA;
    c0 = (product_b >> 32) ^ c1 ^ k0;
    c2 = (product_a >> 32) ^ c3 ^ k1;
    c1 = product_b;
    c3 = product_a;
    k0 = static_cast<uint32_t>(k0 + kKeyA);
    k1 = static_cast<uint32_t>(k1 + kKeyB);
  }
  return {static_cast<uint32_t>(c0), static_cast<uint32_t>(c1), static_cast<uint32_t>(c2),
          static_cast<uint32_t>(c3)};
#endif
}

// Triton's uint_to_uniform_float: reinterpret as int32, fold negatives with ~x, scale into [0, 1).
RK_HOST_DEVICE float uint_to_uniform(uint32_t bits) {
  int32_t x = static_cast<int32_t>(bits);
  x = x < 0 ? ~x : x;
  return static_cast<float>(x) * 4.6566127342e-10f;
}

// max(u, 1e-7) compared as bits (same order for floats >= 0): a float select here stops GCC
// from vectorising the loops around it.
RK_HOST_DEVICE float clamp_uniform(float u) {
  const uint32_t min_bits = float_bits(1.0e-7f), u_bits = float_bits(u);
  return bits_float(u_bits < min_bits ? min_bits : u_bits);
}

// Triton's pair_uniform_to_normal: (r cos(theta), r sin(theta)) with r = sqrt(-2 log u1),
// theta = 2 pi u2. log, sin and cos are our polynomials (not libm) so that CPU loops vectorise
// and the CPU and CUDA builds agree.
RK_HOST_DEVICE void box_muller(float u1, float u2, float* normal_cos, float* normal_sin) {
  const float radius = sqrtf(-2.0f * log_poly(clamp_uniform(u1)));
  float s, c;
  sincos_poly(6.283185307179586f * u2, &s, &c);
  *normal_cos = radius * c;
  *normal_sin = radius * s;
}

// ---- one draw per Philox block: element i uses counter offset + i (tl.rand / tl.randn) ----

RK_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t counter) {
  return uint_to_uniform(philox4x32_10(seed, counter).c0);
}

RK_HOST_DEVICE float philox_normal(uint64_t seed, uint64_t counter) {
  const PhiloxBlock block = philox4x32_10(seed, counter);
  const float radius = sqrtf(-2.0f * log_poly(clamp_uniform(uint_to_uniform(block.c0))));
  return radius * cos_poly(6.283185307179586f * uint_to_uniform(block.c1));
}

// ---- four draws per Philox block (tl.rand4x / tl.randn4x): element i of a draw at `offset`
// is output (offset + i) % 4 of the block with counter (offset + i) / 4. ----

struct Draws4 {
  float v0, v1, v2, v3;
};

RK_HOST_DEVICE Draws4 philox_uniform4(uint64_t seed, uint64_t block_counter) {
  const PhiloxBlock b = philox4x32_10(seed, block_counter);
  return {uint_to_uniform(b.c0), uint_to_uniform(b.c1), uint_to_uniform(b.c2), uint_to_uniform(b.c3)};
}

RK_HOST_DEVICE Draws4 philox_normal4(uint64_t seed, uint64_t block_counter) {
  const Draws4 u = philox_uniform4(seed, block_counter);
  float n0, n1, n2, n3;  // locals, not struct members by address: keeps the loop vectorisable
  box_muller(u.v0, u.v1, &n0, &n1);
  box_muller(u.v2, u.v3, &n2, &n3);
  return {n0, n1, n2, n3};
}

RK_HOST_DEVICE float select4(const Draws4& d, uint64_t index) {
  const uint32_t k = static_cast<uint32_t>(index & 3);
  return k == 0 ? d.v0 : (k == 1 ? d.v1 : (k == 2 ? d.v2 : d.v3));
}

// Reading the four-per-block stream a Philox block at a time (each block's four outputs used,
// not one): the elements [begin, end) of a draw at `offset` lie in the blocks first_block(...)
// onwards, block_count(...) of them; output k of block b is element element_of(offset, b, k),
// to be skipped outside [begin, end).
RK_HOST_DEVICE uint64_t first_block(uint64_t offset, int64_t begin) { return (offset + begin) >> 2; }
RK_HOST_DEVICE int64_t block_count(uint64_t offset, int64_t begin, int64_t end) {
  return end > begin ? static_cast<int64_t>(((offset + end - 1) >> 2) - ((offset + begin) >> 2) + 1) : 0;
}
RK_HOST_DEVICE int64_t element_of(uint64_t offset, uint64_t block, int k) {
  return static_cast<int64_t>(4 * block + static_cast<uint64_t>(k) - offset);
}

// Element `index` (= offset + i) of the four-per-block streams.
RK_HOST_DEVICE float philox_uniform4_at(uint64_t seed, uint64_t index) {
  return select4(philox_uniform4(seed, index >> 2), index);
}

RK_HOST_DEVICE float philox_normal4_at(uint64_t seed, uint64_t index) {
  return select4(philox_normal4(seed, index >> 2), index);
}

}  // namespace rk
