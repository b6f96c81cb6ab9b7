// Stochastic LWTA block math shared by the CPU and CUDA kernels (one definition, compiled by g++
// and nvcc), templated on the op-math type A: float for fp32/bf16/fp16 (the shared polynomials,
// bit-identical across backends) and double for fp64 (libm / libdevice in double, as the
// reference's torch.log / torch.exp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "fast_math.h"
#include "macros.h"
#include "philox.h"

namespace rk {

RK_HOST_DEVICE float gumbel_of(float u, float) { return gumbel_poly(u); }
RK_HOST_DEVICE double gumbel_of(float u, double) {
  return -log(-log(static_cast<double>(u) + 1e-10) + 1e-10);
}
RK_HOST_DEVICE float logistic_of(float u, float) { return logistic_poly(u); }
RK_HOST_DEVICE double logistic_of(float u, double) {
  const double ud = static_cast<double>(u);
  return log((ud + 1e-10) / ((1.0 - ud) + 1e-10));
}
RK_HOST_DEVICE float exp_of(float x) { return exp_poly(x); }
RK_HOST_DEVICE double exp_of(double x) { return exp(x); }

// IEEE round-to-nearest division (explicit on the device, whatever the flags).
RK_HOST_DEVICE float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
RK_HOST_DEVICE double div_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

template <typename A>
RK_HOST_DEVICE A quiet_nan() {
  return std::numeric_limits<A>::quiet_NaN();
}

// The first maximum wins; a NaN beats everything and the first NaN stays (as torch.argmax).
template <typename A>
RK_HOST_DEVICE bool beats(A v, A best) {
  return v > best || (v != v && best == best);
}

// A block holding a NaN or +-inf input: NaN in all its units (x - x is 0 exactly when x is finite).
template <typename A>
RK_HOST_DEVICE bool block_non_finite(const A* h, int units) {
  A sum = A(0);
  for (int u = 0; u < units; ++u) sum = sum + (h[u] - h[u]);
  return !(sum == A(0));
}

// One block of `units` (<= kMax) competitors: forward weights w[u] and relaxed xi[u] (argmax
// mode, 2: xi = w = the one-hot winner of h). Two competitors draw one logistic per block
// (unit 0's uniform); more draw one Gumbel per unit. logical[u]: the unit's NCHW index.
template <int kMax, typename A>
RK_HOST_DEVICE void block_weights(const A* h, const int64_t* logical, int units, A temperature, int mode,
                                  uint64_t seed, uint64_t offset, A* w, A* xi) {
  int winner = 0;
  if (mode == 2) {
    for (int u = 1; u < units; ++u)
      if (beats(h[u], h[winner])) winner = u;
    for (int u = 0; u < units; ++u) w[u] = xi[u] = u == winner ? A(1) : A(0);
    return;
  }
  if (units == 2) {  // d = (h0 - h1 + L) / T, xi = sigmoid(+-d) as b = 1 / (1 + e) and e * b
    const A d = div_rn((h[0] - h[1]) + logistic_of(philox_uniform4_at(seed, offset + logical[0]), A(0)),
                       temperature);
    const bool first = d >= A(0);
    const A e = exp_of(first ? -d : d), total = A(1) + e;
    const A big = div_rn(A(1), total), small = e * big;
    xi[0] = first ? big : small;
    xi[1] = first ? small : big;
    w[0] = mode == 1 ? (first ? A(1) : A(0)) : xi[0];
    w[1] = mode == 1 ? (first ? A(0) : A(1)) : xi[1];
    return;
  }
  A z[kMax];
  for (int u = 0; u < units; ++u) {
    z[u] = div_rn(h[u] + gumbel_of(philox_uniform4_at(seed, offset + logical[u]), A(0)), temperature);
    if (beats(z[u], z[winner])) winner = u;
  }
  const A top = z[winner];  // kept apart: the loop below overwrites z[winner]
  A total = A(0);
  for (int u = 0; u < units; ++u) {
    z[u] = exp_of(z[u] - top);
    total = total + z[u];
  }
  for (int u = 0; u < units; ++u) {
    xi[u] = div_rn(z[u], total);
    w[u] = mode == 1 ? (u == winner ? A(1) : A(0)) : xi[u];
  }
}

// The output of a block: forward h * w; backward the input gradient (two competitors, with
// xi0 + xi1 = 1: c = xi0 xi1 (g0 h0 - g1 h1) / T, then g0 w0 + c and g1 w1 - c; more:
// g * w + xi (g * h - S) / T with S the in-order sum of (g * h) * xi; argmax: g * w). NaN for a
// block with a non-finite input.
template <typename A>
RK_HOST_DEVICE void block_forward(const A* h, const A* w, int units, A* out) {
  const bool bad = block_non_finite(h, units);
  for (int u = 0; u < units; ++u) out[u] = bad ? quiet_nan<A>() : h[u] * w[u];
}

template <typename A>
RK_HOST_DEVICE void block_backward(const A* g, const A* h, const A* w, const A* xi, int units, A temperature,
                                   int mode, A* out) {
  const bool bad = block_non_finite(h, units);
  if (units == 2 && mode != 2) {
    const A c = (xi[0] * xi[1]) * div_rn(g[0] * h[0] - g[1] * h[1], temperature);
    out[0] = bad ? quiet_nan<A>() : g[0] * w[0] + c;
    out[1] = bad ? quiet_nan<A>() : g[1] * w[1] - c;
    return;
  }
  A total = A(0);
  if (mode != 2)
    for (int u = 0; u < units; ++u) total = total + (g[u] * h[u]) * xi[u];
  for (int u = 0; u < units; ++u) {
    A value = g[u] * w[u];
    if (mode != 2) value = value + div_rn(xi[u] * (g[u] * h[u] - total), temperature);
    out[u] = bad ? quiet_nan<A>() : value;
  }
}

}  // namespace rk
