// Stochastic LWTA on the CPU, forward and backward fused. The backward regenerates the Gumbel
// noise from (seed, offset) and recomputes the winner weights from h: nothing but the input is
// kept between the passes.
//
// Work unit: a tile = the U competing rows of one block for up to kTile positions, gathered into
// small arrays [U][kTile] so every stage is a vectorisable loop over positions (AVX2/AVX-512
// clones). Layouts: contiguous [outer, D, inner] (positions along inner), channels_last
// [B, P, D] for dim = 1 (positions along P, units contiguous), or [B, F] (inner 1: the tile's
// "positions" are up to kTile consecutive blocks of a row). The random counter of an element
// is always its row-major (NCHW) index, so both layouts give the same draws.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/fast_math.h"
#include "lwta/math.h"
#include "lwta/host.h"
#include "common/random_fill.h"
#include "common/simd.h"

namespace rk {
namespace {

constexpr int64_t kTile = 256;

// A tile: `length` positions j of `units` rows u; element (u, j) is at memory index
// mem_base + u * mem_unit_stride + j * mem_pos_stride and has the random counter offset +
// logical_base + u * logical_unit_stride + j * logical_pos_stride (its NCHW index).
struct Tile {
  int64_t mem_base, mem_unit_stride, mem_pos_stride, logical_base, logical_unit_stride, logical_pos_stride, length;
};

// [outer, D, 1] ([B, F] features): a row of positions would be one position long, so a tile is
// up to kTile consecutive blocks of one row instead (position j = block j, units adjacent).
bool blocks_along_row(const LwtaLayout& l) { return l.positions == 0 && l.inner == 1; }

int64_t tiles_per_row(const LwtaLayout& l) {
  const int64_t along = blocks_along_row(l) ? l.dim_size / l.competitors : (l.positions ? l.positions : l.inner);
  return (along + kTile - 1) / kTile;
}

Tile tile_at(const LwtaLayout& l, int64_t t) {
  const int64_t blocks = l.dim_size / l.competitors, per_row = tiles_per_row(l), chunk = t % per_row;
  if (blocks_along_row(l)) {  // [outer, D]: blocks chunk * kTile ... of row o
    const int64_t o = t / per_row, b0 = chunk * kTile;
    const int64_t base = o * l.dim_size + b0 * l.competitors;
    return {base, 1, l.competitors, base, 1, l.competitors, std::min(kTile, blocks - b0)};
  }
  const int64_t block = (t / per_row) % blocks, o = t / per_row / blocks;
  if (l.positions == 0) {  // contiguous [outer, D, inner]
    const int64_t base = (o * l.dim_size + block * l.competitors) * l.inner + chunk * kTile;
    return {base, l.inner, 1, base, l.inner, 1, std::min(kTile, l.inner - chunk * kTile)};
  }
  const int64_t p0 = chunk * kTile, unit0 = block * l.competitors;  // channels_last [B, P, D]
  return {(o * l.positions + p0) * l.dim_size + unit0, 1, l.dim_size,
          (o * l.dim_size + unit0) * l.positions + p0, l.positions, 1, std::min(kTile, l.positions - p0)};
}

int64_t tile_count(const LwtaLayout& l) {
  const int64_t blocks = blocks_along_row(l) ? 1 : l.dim_size / l.competitors;
  return l.outer * blocks * tiles_per_row(l);
}

// Per-thread scratch in the accumulation type A, [units][kTile] for h, g, z (xi), w; per
// position: running max, sum and winner (kept as A so every loop is a branch-free select).
template <typename A>
struct Scratch {
  std::vector<A> h, g, z, w, max, sum, winner, bad;
  std::vector<float> uniform, span;  // uniform: [units][kTile]; span: the tile's counters in a row
  explicit Scratch(int64_t units)
      : h(units * kTile), g(units * kTile), z(units * kTile), w(units * kTile), max(kTile), sum(kTile),
        winner(kTile), bad(kTile), uniform(units * kTile), span(units * kTile) {}
};

// s.uniform[u * kTile + j] = the uniform of unit u at position j, for u < units (the pair path
// asks for unit 0 only). Positions with consecutive counters: one fill per unit row. Otherwise
// (the [B, F] tiles) one fill of the tile's whole span of counters, so each Philox block's four
// outputs serve four elements, then picked out per unit.
template <typename A>
void tile_uniforms(Scratch<A>& s, const Tile& t, int64_t units, const LwtaParams& p) {
  const uint64_t first = p.offset + static_cast<uint64_t>(t.logical_base);
  if (t.logical_pos_stride == 1) {
    for (int64_t u = 0; u < units; ++u)
      fill_uniform4(s.uniform.data() + u * kTile, t.length, p.seed, first + u * t.logical_unit_stride);
    return;
  }
  const int64_t count = (t.length - 1) * t.logical_pos_stride + (units - 1) * t.logical_unit_stride + 1;
  fill_uniform4(s.span.data(), count, p.seed, first);
  for (int64_t u = 0; u < units; ++u)
    for (int64_t j = 0; j < t.length; ++j)
      s.uniform[u * kTile + j] = s.span[u * t.logical_unit_stride + j * t.logical_pos_stride];
}

template <typename scalar_t, typename A>
void gather(const scalar_t* src, const Tile& t, int64_t units, A* dst) {
  for (int64_t u = 0; u < units; ++u)
    for (int64_t j = 0; j < t.length; ++j)
      dst[u * kTile + j] = static_cast<A>(src[t.mem_base + u * t.mem_unit_stride + j * t.mem_pos_stride]);
}

// The loops of a tile over positions j, one function each so that every one vectorises: float
// versions are AVX2/AVX-512 clones; double versions (float64 inputs) are plain loops.
template <typename A>
RK_HOST_DEVICE void gumbel_logits_t(const A* __restrict__ h, const float* __restrict__ u, A* __restrict__ z,
                                    int64_t n, A temperature) {
  for (int64_t j = 0; j < n; ++j) z[j] = (h[j] + gumbel_of(u[j], A(0))) / temperature;
}

// max/winner updated with row `values` of competitor `index` (strict >: the first max wins; a
// NaN beats everything and the first NaN stays, as torch.argmax).
template <typename A>
RK_HOST_DEVICE void argmax_step_t(const A* __restrict__ values, A* __restrict__ max, A* __restrict__ winner, A index,
                                  int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const bool greater = values[j] > max[j] || (values[j] != values[j] && max[j] == max[j]);
    max[j] = greater ? values[j] : max[j];
    winner[j] = greater ? index : winner[j];
  }
}

// e = exp(z - max) in place, sum += e.
template <typename A>
RK_HOST_DEVICE void exp_accumulate_t(A* __restrict__ z, const A* __restrict__ max, A* __restrict__ sum, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    z[j] = exp_of(z[j] - max[j]);
    sum[j] = sum[j] + z[j];
  }
}

// xi = e / sum in place; w = xi (soft) or the one-hot of the winner (hard, argmax).
template <typename A>
RK_HOST_DEVICE void weights_t(A* __restrict__ z, const A* __restrict__ sum, const A* __restrict__ winner,
                              A* __restrict__ w, A index, bool normalize, bool one_hot, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const A xi = normalize ? z[j] / sum[j] : z[j];
    z[j] = xi;
    w[j] = one_hot ? (winner[j] == index ? A(1) : A(0)) : xi;
  }
}

// Backward: sum += (g * h) * xi; then grad = g * w + xi * (g * h - sum) / T into h.
template <typename A>
RK_HOST_DEVICE void grad_sum_t(const A* __restrict__ g, const A* __restrict__ h, const A* __restrict__ xi,
                               A* __restrict__ sum, int64_t n) {
  for (int64_t j = 0; j < n; ++j) sum[j] = sum[j] + (g[j] * h[j]) * xi[j];
}

template <typename A>
RK_HOST_DEVICE void grad_t(const A* __restrict__ g, A* __restrict__ h, const A* __restrict__ w,
                           const A* __restrict__ xi, const A* __restrict__ sum, A temperature, bool relaxed,
                           int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    h[j] = relaxed ? g[j] * w[j] + xi[j] * (g[j] * h[j] - sum[j]) / temperature : g[j] * w[j];
}

// Two competitors (soft and hard sampling), three loops per tile, so that no loop runs out of
// AVX2's 16 vector registers (fused into one, the log and exp polynomials spilled; split, the
// arithmetic per pair is 27-35% cheaper, the same operations in the same order): one logistic draw L per block;
// z = (h0 - h1 + L) / T and e = exp(-|z|); then xi0 = sigmoid(z) and xi1 = sigmoid(-z) from e
// (b = 1 / (1 + e) and e * b), w = xi, or the one-hot winner (unit 0 when z >= 0) when hard.
// Forward: h * w. Backward, the general formula with xi0 + xi1 = 1: c = xi0 xi1 (g0 h0 - g1 h1) / T,
// then g0 w0 + c and g1 w1 - c.
template <typename A>
struct PairWeights {
  A xi0, xi1, w0, w1;
};

template <typename A>
RK_HOST_DEVICE void logistic_noise_t(const float* __restrict__ u, A* __restrict__ noise, int64_t n) {
  for (int64_t j = 0; j < n; ++j) noise[j] = logistic_of(u[j], A(0));
}

// z (in place of the noise) and e = exp(-|z|).
template <typename A>
RK_HOST_DEVICE void pair_exponent_t(const A* __restrict__ h0, const A* __restrict__ h1, A* __restrict__ z,
                                    A* __restrict__ e, A temperature, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const A zj = ((h0[j] - h1[j]) + z[j]) / temperature;
    z[j] = zj;
    e[j] = exp_of(zj >= A(0) ? -zj : zj);
  }
}

// kHard is a template argument: a run-time bool in these selects stops GCC from vectorising.
template <bool kHard, typename A>
RK_HOST_DEVICE PairWeights<A> pair_weights_of(A z, A e) {
  const bool first = z >= A(0);
  const A sum = A(1) + e;
  const A big = A(1) / sum, small = e * big;
  const A xi0 = first ? big : small, xi1 = first ? small : big;
  return {xi0, xi1, kHard ? (first ? A(1) : A(0)) : xi0, kHard ? (first ? A(0) : A(1)) : xi1};
}

template <bool kHard, typename A>
RK_HOST_DEVICE void pair_forward_loop(const A* __restrict__ h0, const A* __restrict__ h1, const A* __restrict__ z,
                                      const A* __restrict__ e, A* __restrict__ y0, A* __restrict__ y1, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const PairWeights<A> w = pair_weights_of<kHard>(z[j], e[j]);
    const bool bad = !((h0[j] - h0[j]) + (h1[j] - h1[j]) == A(0));  // both finite: 0 + 0
    y0[j] = bad ? std::numeric_limits<A>::quiet_NaN() : h0[j] * w.w0;
    y1[j] = bad ? std::numeric_limits<A>::quiet_NaN() : h1[j] * w.w1;
  }
}

template <bool kHard, typename A>
RK_HOST_DEVICE void pair_backward_loop(const A* __restrict__ g0, const A* __restrict__ g1, const A* __restrict__ h0,
                                       const A* __restrict__ h1, const A* __restrict__ z, const A* __restrict__ e,
                                       A* __restrict__ d0, A* __restrict__ d1, A temperature, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const PairWeights<A> w = pair_weights_of<kHard>(z[j], e[j]);
    const A c = (w.xi0 * w.xi1) * ((g0[j] * h0[j] - g1[j] * h1[j]) / temperature);
    const bool bad = !((h0[j] - h0[j]) + (h1[j] - h1[j]) == A(0));
    d0[j] = bad ? std::numeric_limits<A>::quiet_NaN() : g0[j] * w.w0 + c;
    d1[j] = bad ? std::numeric_limits<A>::quiet_NaN() : g1[j] * w.w1 - c;
  }
}

template <typename A>
RK_HOST_DEVICE void pair_forward_t(const A* h0, const A* h1, const A* z, const A* e, A* y0, A* y1, bool hard,
                                   int64_t n) {
  if (hard)
    pair_forward_loop<true>(h0, h1, z, e, y0, y1, n);
  else
    pair_forward_loop<false>(h0, h1, z, e, y0, y1, n);
}

template <typename A>
RK_HOST_DEVICE void pair_backward_t(const A* g0, const A* g1, const A* h0, const A* h1, const A* z, const A* e, A* d0,
                                    A* d1, A temperature, bool hard, int64_t n) {
  if (hard)
    pair_backward_loop<true>(g0, g1, h0, h1, z, e, d0, d1, temperature, n);
  else
    pair_backward_loop<false>(g0, g1, h0, h1, z, e, d0, d1, temperature, n);
}

// The non-finite rule: a block holding a NaN or +-inf input gives NaN in all its units, forward
// and backward (x - x is 0 exactly when x is finite). bad[j] != 0 marks such a block.
template <typename A>
RK_HOST_DEVICE bool non_finite(A x) {
  return !(x - x == A(0));
}

template <typename A>
RK_HOST_DEVICE void mark_non_finite_t(const A* __restrict__ h, A* __restrict__ bad, int64_t n) {
  for (int64_t j = 0; j < n; ++j) bad[j] = non_finite(h[j]) ? A(1) : bad[j];
}

template <typename A>
RK_HOST_DEVICE void poison_t(A* __restrict__ h, const A* __restrict__ bad, int64_t n) {
  for (int64_t j = 0; j < n; ++j) h[j] = bad[j] != A(0) ? std::numeric_limits<A>::quiet_NaN() : h[j];
}

template <typename A>
RK_HOST_DEVICE void product_t(A* __restrict__ h, const A* __restrict__ w, int64_t n) {
  for (int64_t j = 0; j < n; ++j) h[j] = h[j] * w[j];
}

#define RK_TILE_LOOP(name, float_params, double_params, args) \
  RK_SIMD_FN(void, name, float_params, args) { name##_t args; } \
  inline void name double_params { name##_t args; }

RK_TILE_LOOP(gumbel_logits, (const float* h, const float* u, float* z, int64_t n, float t),
             (const double* h, const float* u, double* z, int64_t n, double t), (h, u, z, n, t))
RK_TILE_LOOP(argmax_step, (const float* v, float* m, float* w, float i, int64_t n),
             (const double* v, double* m, double* w, double i, int64_t n), (v, m, w, i, n))
RK_TILE_LOOP(exp_accumulate, (float* z, const float* m, float* s, int64_t n),
             (double* z, const double* m, double* s, int64_t n), (z, m, s, n))
RK_TILE_LOOP(weights, (float* z, const float* s, const float* wi, float* w, float i, bool nz, bool oh, int64_t n),
             (double* z, const double* s, const double* wi, double* w, double i, bool nz, bool oh, int64_t n),
             (z, s, wi, w, i, nz, oh, n))
RK_TILE_LOOP(grad_sum, (const float* g, const float* h, const float* x, float* s, int64_t n),
             (const double* g, const double* h, const double* x, double* s, int64_t n), (g, h, x, s, n))
RK_TILE_LOOP(grad, (const float* g, float* h, const float* w, const float* x, const float* s, float t, bool r, int64_t n),
             (const double* g, double* h, const double* w, const double* x, const double* s, double t, bool r,
              int64_t n),
             (g, h, w, x, s, t, r, n))
RK_TILE_LOOP(product, (float* h, const float* w, int64_t n), (double* h, const double* w, int64_t n), (h, w, n))
RK_TILE_LOOP(mark_non_finite, (const float* h, float* b, int64_t n), (const double* h, double* b, int64_t n), (h, b, n))
RK_TILE_LOOP(poison, (float* h, const float* b, int64_t n), (double* h, const double* b, int64_t n), (h, b, n))
RK_TILE_LOOP(logistic_noise, (const float* u, float* z, int64_t n), (const float* u, double* z, int64_t n), (u, z, n))
RK_TILE_LOOP(pair_exponent, (const float* h0, const float* h1, float* z, float* e, float t, int64_t n),
             (const double* h0, const double* h1, double* z, double* e, double t, int64_t n), (h0, h1, z, e, t, n))
RK_TILE_LOOP(pair_forward,
             (const float* h0, const float* h1, const float* z, const float* e, float* y0, float* y1, bool hard,
              int64_t n),
             (const double* h0, const double* h1, const double* z, const double* e, double* y0, double* y1, bool hard,
              int64_t n),
             (h0, h1, z, e, y0, y1, hard, n))
RK_TILE_LOOP(pair_backward,
             (const float* g0, const float* g1, const float* h0, const float* h1, const float* z, const float* e,
              float* d0, float* d1, float t, bool hard, int64_t n),
             (const double* g0, const double* g1, const double* h0, const double* h1, const double* z,
              const double* e, double* d0, double* d1, double t, bool hard, int64_t n),
             (g0, g1, h0, h1, z, e, d0, d1, t, hard, n))
#undef RK_TILE_LOOP

// One tile: xi into s.z and the forward weights into s.w (soft: xi; hard and argmax: one-hot);
// then s.h becomes the forward output h * w, or with `backward` the input gradient
// g * w + xi * (g * h - S) / T, S the in-order block sum of (g * h) * xi (argmax: g * w);
// NaN for every unit of a block with a non-finite input.
template <typename A>
void lwta_tile(Scratch<A>& s, int64_t units, const Tile& t, const LwtaParams& p, bool backward) {
  const int64_t n = t.length;
  auto row = [&](std::vector<A>& v, int64_t u) { return v.data() + u * kTile; };
  A *max = s.max.data(), *sum = s.sum.data(), *winner = s.winner.data();
  const A temperature = static_cast<A>(p.temperature);
  const bool relaxed = p.mode != kLwtaArgmax;
  std::vector<A>& ranked = relaxed ? s.z : s.h;  // what the winner is the argmax of
  A* bad = s.bad.data();
  std::fill(bad, bad + n, A(0));
  for (int64_t u = 0; u < units; ++u) mark_non_finite(row(s.h, u), bad, n);
  if (relaxed) {
    tile_uniforms(s, t, units, p);
    for (int64_t u = 0; u < units; ++u) gumbel_logits(row(s.h, u), s.uniform.data() + u * kTile, row(s.z, u), n, temperature);
  }
  std::copy(row(ranked, 0), row(ranked, 0) + n, max);
  std::fill(winner, winner + n, A(0));
  for (int64_t u = 1; u < units; ++u) argmax_step(row(ranked, u), max, winner, static_cast<A>(u), n);
  if (relaxed) {
    std::fill(sum, sum + n, A(0));
    for (int64_t u = 0; u < units; ++u) exp_accumulate(row(s.z, u), max, sum, n);
  }
  for (int64_t u = 0; u < units; ++u)
    weights(row(s.z, u), sum, winner, row(s.w, u), static_cast<A>(u), relaxed, p.mode != kLwtaSoft, n);
  if (!backward) {
    for (int64_t u = 0; u < units; ++u) product(row(s.h, u), row(s.w, u), n);
    for (int64_t u = 0; u < units; ++u) poison(row(s.h, u), bad, n);
    return;
  }
  std::fill(sum, sum + n, A(0));
  if (relaxed)
    for (int64_t u = 0; u < units; ++u) grad_sum(row(s.g, u), row(s.h, u), row(s.z, u), sum, n);
  for (int64_t u = 0; u < units; ++u) grad(row(s.g, u), row(s.h, u), row(s.w, u), row(s.z, u), sum, temperature, relaxed, n);
  for (int64_t u = 0; u < units; ++u) poison(row(s.h, u), bad, n);
}

template <typename scalar_t, typename A>
void scatter(const A* src, const Tile& t, int64_t units, scalar_t* dst) {
  for (int64_t u = 0; u < units; ++u)
    for (int64_t j = 0; j < t.length; ++j)
      dst[t.mem_base + u * t.mem_unit_stride + j * t.mem_pos_stride] = static_cast<scalar_t>(src[u * kTile + j]);
}

// One pass over all tiles: gather h (and g), compute, scatter the result from s.h.
template <typename scalar_t>
void run_tiles(const LwtaLayout& l, const LwtaParams& p, const scalar_t* h, const scalar_t* g, scalar_t* out) {
  using A = at::opmath_type<scalar_t>;
  at::parallel_for(0, tile_count(l), 1, [&](int64_t first, int64_t last) {
    Scratch<A> s(l.competitors);
    for (int64_t ti = first; ti < last; ++ti) {
      const Tile t = tile_at(l, ti);
      gather(h, t, l.competitors, s.h.data());
      if (g != nullptr) gather(g, t, l.competitors, s.g.data());
      lwta_tile(s, l.competitors, t, p, g != nullptr);
      scatter(s.h.data(), t, l.competitors, out);
    }
  });
}

// Two competitors, sampling: the pair loops. fp32/fp64 rows with unit stride are read and
// written in place; other dtypes and channels_last go through the scratch.
template <typename scalar_t>
void run_pair_tiles(const LwtaLayout& l, const LwtaParams& p, const scalar_t* h, const scalar_t* g, scalar_t* out) {
  using A = at::opmath_type<scalar_t>;
  const A temperature = static_cast<A>(p.temperature);
  const bool hard = p.mode == kLwtaHard;
  at::parallel_for(0, tile_count(l), 1, [&](int64_t first, int64_t last) {
    Scratch<A> s(2);
    for (int64_t ti = first; ti < last; ++ti) {
      const Tile t = tile_at(l, ti);
      tile_uniforms(s, t, 1, p);  // unit 0's: one logistic per pair
      A *z = s.w.data(), *e = s.max.data();  // scratch rows the pair path leaves free
      logistic_noise(s.uniform.data(), z, t.length);
      const A *h0 = s.h.data(), *g0 = s.g.data();
      A* y0 = s.z.data();
      int64_t stride = kTile;  // between the two rows
      bool direct = false;
      if constexpr (std::is_same_v<scalar_t, A>) {
        direct = t.mem_pos_stride == 1;
        if (direct) {
          h0 = h + t.mem_base, g0 = g == nullptr ? nullptr : g + t.mem_base, y0 = out + t.mem_base;
          stride = t.mem_unit_stride;
        }
      }
      if (!direct) {
        gather(h, t, 2, s.h.data());
        if (g != nullptr) gather(g, t, 2, s.g.data());
      }
      pair_exponent(h0, h0 + stride, z, e, temperature, t.length);
      if (g == nullptr)
        pair_forward(h0, h0 + stride, z, e, y0, y0 + stride, hard, t.length);
      else
        pair_backward(g0, g0 + stride, h0, h0 + stride, z, e, y0, y0 + stride, temperature, hard, t.length);
      if (!direct) scatter(s.z.data(), t, 2, out);
    }
  });
}

template <typename scalar_t>
void run(const LwtaLayout& l, const LwtaParams& p, const scalar_t* h, const scalar_t* g, scalar_t* out) {
  if (l.competitors == 2 && p.mode != kLwtaArgmax)
    run_pair_tiles(l, p, h, g, out);
  else
    run_tiles(l, p, h, g, out);
}

at::Tensor lwta_forward_cpu(const at::Tensor& h, int64_t competitors, int64_t dim_size, int64_t inner,
                            int64_t positions, double temperature, int64_t mode, const at::Tensor& seed,
                            int64_t offset) {
  const LwtaLayout l = check_lwta_args(h, competitors, dim_size, inner, positions, mode);
  const LwtaParams p{temperature, static_cast<int>(mode), cpu_seed(seed, h, "lwta_forward"),
                     static_cast<uint64_t>(offset)};
  at::Tensor out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "lwta_forward_cpu", [&] {
    run<scalar_t>(l, p, h.const_data_ptr<scalar_t>(), nullptr, out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor lwta_backward_cpu(const at::Tensor& grad, const at::Tensor& h, int64_t competitors, int64_t dim_size,
                             int64_t inner, int64_t positions, double temperature, int64_t mode,
                             const at::Tensor& seed, int64_t offset) {
  const LwtaLayout l = check_lwta_args(h, competitors, dim_size, inner, positions, mode);
  check_lwta_grad(grad, h);
  const LwtaParams p{temperature, static_cast<int>(mode), cpu_seed(seed, h, "lwta_backward"),
                     static_cast<uint64_t>(offset)};
  at::Tensor out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "lwta_backward_cpu", [&] {
    run<scalar_t>(l, p, h.const_data_ptr<scalar_t>(), grad.const_data_ptr<scalar_t>(),
                        out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) {
  m.impl("lwta_forward", &lwta_forward_cpu);
  m.impl("lwta_backward", &lwta_backward_cpu);
}

}  // namespace rk
