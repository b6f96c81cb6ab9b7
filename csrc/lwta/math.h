// Stochastic LWTA block math and the work of one thread of the CUDA kernels (compiled by nvcc,
// and by g++ for a test that runs it on the CPU against the CPU kernel), templated on the op-math type A: float for fp32/bf16/fp16 (the shared polynomials,
// bit-identical across backends) and double for fp64 (libm / libdevice in double, as the
// reference's torch.log / torch.exp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "common/fast_math.h"
#include "common/macros.h"
#include "common/philox.h"

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
// (unit 0's uniform); more draw one Gumbel per unit. uniform[u]: the unit's draw of the
// four-per-block uniform stream (unused in argmax mode).
template <int kMax, typename A>
RK_HOST_DEVICE void block_weights(const A* h, const float* uniform, int units, A temperature, int mode, A* w,
                                  A* xi) {
  int winner = 0;
  if (mode == 2) {
    for (int u = 1; u < units; ++u)
      if (beats(h[u], h[winner])) winner = u;
    for (int u = 0; u < units; ++u) w[u] = xi[u] = u == winner ? A(1) : A(0);
    return;
  }
  if (units == 2) {  // d = (h0 - h1 + L) / T, xi = sigmoid(+-d) as b = 1 / (1 + e) and e * b
    const A d = div_rn((h[0] - h[1]) + logistic_of(uniform[0], A(0)), temperature);
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
    z[u] = div_rn(h[u] + gumbel_of(uniform[u], A(0)), temperature);
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

// ---- the work of one GPU thread (and of the host test that checks it) ----

// Draws first .. first + count - 1 of the four-per-block uniform stream into out[0], out[stride],
// ...: each Philox block they touch computed once and all its four outputs used.
RK_HOST_DEVICE void uniform4_run(uint64_t seed, uint64_t first, int count, float* out, int stride) {
  uint64_t block = first >> 2;
  Draws4 draws = philox_uniform4(seed, block);
  for (int i = 0, k = static_cast<int>(first & 3); i < count; ++i, ++k) {
    if (k == 4) {
      draws = philox_uniform4(seed, ++block);
      k = 0;
    }
    out[i * stride] = select4(draws, static_cast<uint64_t>(k));
  }
}

// An LWTA launch's shape, split into groups of kGroup: kGroup consecutive positions of one block
// of units (contiguous [outer, D, inner] or channels_last [outer, positions, D]), or, flat
// (inner 1, no positions: [B, F]), kGroup consecutive blocks, whose units follow one another in
// memory and in the random stream. A group's draws are one run per unit (flat: one run), so its
// Philox blocks are shared by its positions.
struct LwtaGeometry {
  int64_t outer, dim_size, inner, positions, competitors;
  RK_HOST_DEVICE bool flat() const { return positions == 0 && inner == 1; }
  RK_HOST_DEVICE int64_t length() const { return positions > 0 ? positions : inner; }
  RK_HOST_DEVICE int64_t blocks() const { return outer * (dim_size / competitors); }
  RK_HOST_DEVICE int64_t chunks(int group) const { return flat() ? 1 : (length() + group - 1) / group; }
  RK_HOST_DEVICE int64_t groups(int group) const {
    return flat() ? (blocks() + group - 1) / group : blocks() * chunks(group);
  }
  // Memory and logical (NCHW, the random counter) index of unit u of block b at position pos.
  RK_HOST_DEVICE void locate(int64_t b, int64_t pos, int u, int64_t* mem, int64_t* logical) const {
    const int64_t per = dim_size / competitors, o = b / per, unit = (b % per) * competitors + u;
    if (positions > 0) {
      *mem = (o * positions + pos) * dim_size + unit;
      *logical = (o * dim_size + unit) * positions + pos;
    } else {
      *mem = *logical = (o * dim_size + unit) * inner + pos;
    }
  }
};

// Positions (flat: blocks) per group: kGroup * kMax bounds a thread's draws, so U > 8 takes one
// position per thread (a flat layout's U consecutive draws still share their Philox blocks).
template <int kMax>
constexpr int kLwtaGroup = kMax <= 8 ? 4 : 1;

// Group `group` of the launch: io.h(mem) / io.g(mem) read the input and the incoming gradient
// (io.backward) in op math, io.put(mem, value) writes the output (forward h * w, or the input
// gradient). kMax bounds U.
template <int kMax, typename A, typename Io>
RK_HOST_DEVICE void lwta_group(Io& io, const LwtaGeometry& geo, A temperature, int mode, uint64_t seed,
                               uint64_t offset, int64_t group) {
  constexpr int kGroup = kLwtaGroup<kMax>;
  const int units = static_cast<int>(geo.competitors);
  const bool flat = geo.flat();
  const int64_t first = flat ? group * kGroup : (group % geo.chunks(kGroup)) * kGroup;  // block or position
  const int64_t block = flat ? 0 : group / geo.chunks(kGroup);
  const int64_t left = (flat ? geo.blocks() : geo.length()) - first;
  const int count = static_cast<int>(left < kGroup ? left : kGroup);
  float uniform[kMax * kGroup];  // uniform[k * units + u]: unit u of the group's element k
  int64_t mem[kMax], logical[kMax];
  if (mode != 2 && flat) {
    geo.locate(first, 0, 0, &mem[0], &logical[0]);
    uniform4_run(seed, offset + logical[0], count * units, uniform, 1);
  } else if (mode != 2) {
    for (int u = 0; u < (units == 2 ? 1 : units); ++u) {  // two competitors draw unit 0's only
      geo.locate(block, first, u, &mem[u], &logical[u]);
      uniform4_run(seed, offset + logical[u], count, uniform + u, units);
    }
  }
  for (int k = 0; k < count; ++k) {
    A h[kMax], g[kMax], w[kMax], xi[kMax], y[kMax];
    for (int u = 0; u < units; ++u) {
      geo.locate(flat ? first + k : block, flat ? 0 : first + k, u, &mem[u], &logical[u]);
      h[u] = io.h(mem[u]);
      if (io.backward) g[u] = io.g(mem[u]);
    }
    block_weights<kMax, A>(h, uniform + k * units, units, temperature, mode, w, xi);
    if (io.backward)
      block_backward(g, h, w, xi, units, temperature, mode, y);
    else
      block_forward(h, w, units, y);
    for (int u = 0; u < units; ++u) io.put(mem[u], y[u]);
  }
}

}  // namespace rk
