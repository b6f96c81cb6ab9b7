// Branch-free float log, exp and sin/cos (Cephes polynomials, within 2 ulp on the ranges we use), so that
// loops calling them auto-vectorise on the CPU and give the same results as the CUDA build.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace rk {

RK_HOST_DEVICE uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return bits;
#endif
}

RK_HOST_DEVICE float bits_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
#endif
}

// Natural log of a positive normal float (Cephes logf).
RK_HOST_DEVICE float log_poly(float x) {
  const uint32_t bits = float_bits(x);
  int32_t exponent = static_cast<int32_t>(bits >> 23) - 127;
  float m = bits_float((bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool high = m > 1.41421356237f;                       // fold to [sqrt(1/2), sqrt(2))
  m = high ? 0.5f * m : m;
  exponent = high ? exponent + 1 : exponent;
  const float f = m - 1.0f, z = f * f, e = static_cast<float>(exponent);
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  return (f + y) + 0.693359375f * e;
}

// exp(x) (Cephes expf): x = n ln2 + r, polynomial in r, times 2^n built from bits. Inputs are
// clamped to [-87, 88]; below -87 the result is 0 (softmax weights that small do not matter).
RK_HOST_DEVICE float exp_poly(float x) {
  const float clamped = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = floorf(1.44269504088896341f * clamped + 0.5f);
  float r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = (y * z + r) + 1.0f;
  const float scale = bits_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : y * scale;
}

// Gumbel(0, 1) from a uniform u in [0, 1): -log(-log(u + 1e-10) + 1e-10), as the reference code.
RK_HOST_DEVICE float gumbel_poly(float u) { return -log_poly(-log_poly(u + 1.0e-10f) + 1.0e-10f); }

// Logistic(0, 1), the difference of two independent Gumbels, from one uniform u in [0, 1]:
// log((u + 1e-10) / ((1 - u) + 1e-10)). LWTA with two competitors draws this once per block.
RK_HOST_DEVICE float logistic_poly(float u) { return log_poly((u + 1.0e-10f) / ((1.0f - u) + 1.0e-10f)); }

// sin and cos of 0 <= theta < 2**20: Cody-Waite reduction by pi/2, then Cephes polynomials.
RK_HOST_DEVICE void sincos_poly(float theta, float* sin_out, float* cos_out) {
  const int32_t quadrant = static_cast<int32_t>(theta * 0.636619772367581f + 0.5f);
  const float q = static_cast<float>(quadrant);
  const float r = ((theta - q * 1.5703125f) - q * 4.837512969970703125e-4f) - q * 7.54978995489188216e-8f;
  const float z = r * r;
  const float sin_r = r + r * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
  const float cos_r =
      1.0f - 0.5f * z + z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f);
  const int32_t k = quadrant & 3;  // theta = k * pi/2 + r
  const float c = (k & 1) ? sin_r : cos_r, s = (k & 1) ? cos_r : sin_r;
  *cos_out = (k == 1 || k == 2) ? -c : c;
  *sin_out = (k >= 2) ? -s : s;
}

RK_HOST_DEVICE float cos_poly(float theta) {
  float s, c;
  sincos_poly(theta, &s, &c);
  return c;
}

}  // namespace rk
