// Stochastic LWTA on the CPU, forward and backward fused. The backward regenerates the Gumbel
// noise from (seed, offset) and recomputes the winner weights from h: nothing but the input is
// kept between the passes.
//
// Work unit: a tile = the U competing rows of one block for up to kTile positions, gathered into
// small arrays [U][kTile] so every stage is a vectorisable loop over positions (AVX2/AVX-512
// clones). Layouts: contiguous [outer, D, inner] (positions along inner), or channels_last
// [B, P, D] for dim = 1 (positions along P, units contiguous). The random counter of an element
// is always its row-major (NCHW) index, so both layouts give the same draws.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/fast_math.h"
#include "../lwta_host.h"
#include "random_fill.h"
#include "simd.h"

namespace rk {
namespace {

constexpr int64_t kTile = 256;

// z = (h + gumbel(u)) / T. float: the shared polynomials (bit-identical across backends);
// double (float64 inputs, e.g. gradcheck): libm log/exp in double.
RK_SIMD_CLONES void gumbel_logits(const float* h, const float* u, float* z, int64_t n, float temperature) {
  for (int64_t j = 0; j < n; ++j) z[j] = (h[j] + gumbel_poly(u[j])) / temperature;
}

void gumbel_logits(const double* h, const float* u, double* z, int64_t n, double temperature) {
  for (int64_t j = 0; j < n; ++j)
    z[j] = (h[j] - std::log(-std::log(static_cast<double>(u[j]) + 1e-10) + 1e-10)) / temperature;
}

// e = exp(z - m), total += e (called per competitor, in order)
RK_SIMD_CLONES void exp_accumulate(const float* z, const float* m, float* e, float* total, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    e[j] = exp_poly(z[j] - m[j]);
    total[j] = total[j] + e[j];
  }
}

void exp_accumulate(const double* z, const double* m, double* e, double* total, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    e[j] = std::exp(z[j] - m[j]);
    total[j] = total[j] + e[j];
  }
}

struct Tile {
  int64_t mem_base, mem_unit_stride, mem_pos_stride, logical_base, logical_unit_stride, length;
};

Tile tile_at(const LwtaLayout& l, int64_t t) {
  const int64_t blocks = l.dim_size / l.competitors;
  if (l.positions == 0) {  // contiguous [outer, D, inner]
    const int64_t tiles_per_row = (l.inner + kTile - 1) / kTile;
    const int64_t chunk = t % tiles_per_row, block = (t / tiles_per_row) % blocks, o = t / tiles_per_row / blocks;
    const int64_t base = (o * l.dim_size + block * l.competitors) * l.inner + chunk * kTile;
    return {base, l.inner, 1, base, l.inner, std::min(kTile, l.inner - chunk * kTile)};
  }
  const int64_t tiles_per_row = (l.positions + kTile - 1) / kTile;  // channels_last [B, P, D]
  const int64_t chunk = t % tiles_per_row, block = (t / tiles_per_row) % blocks, b = t / tiles_per_row / blocks;
  const int64_t p0 = chunk * kTile, unit0 = block * l.competitors;
  return {(b * l.positions + p0) * l.dim_size + unit0, 1, l.dim_size,
          (b * l.dim_size + unit0) * l.positions + p0, l.positions, std::min(kTile, l.positions - p0)};
}

int64_t tile_count(const LwtaLayout& l) {
  const int64_t blocks = l.dim_size / l.competitors;
  if (l.positions == 0) return l.outer * blocks * ((l.inner + kTile - 1) / kTile);
  return l.outer * blocks * ((l.positions + kTile - 1) / kTile);
}

// Per-thread scratch in the accumulation type A: h, z (then e, then xi), winner weights, grad,
// per-position max/sum/argmax, and the uniforms (always float: the shared stream).
template <typename A>
struct Scratch {
  std::vector<A> h, z, w, g, max, sum;
  std::vector<float> uniform;
  std::vector<int32_t> winner;
  explicit Scratch(int64_t units)
      : h(units * kTile), z(units * kTile), w(units * kTile), g(units * kTile), max(kTile), sum(kTile),
        uniform(kTile), winner(kTile) {}
};

template <typename scalar_t, typename A>
void gather(const scalar_t* src, const Tile& t, int64_t units, A* dst) {
  for (int64_t u = 0; u < units; ++u)
    for (int64_t j = 0; j < t.length; ++j)
      dst[u * kTile + j] = static_cast<A>(src[t.mem_base + u * t.mem_unit_stride + j * t.mem_pos_stride]);
}

// Winner weights of one tile into s.w (soft: xi; hard/argmax: one-hot), with s.z holding xi
// (soft and hard modes) for the backward.
template <typename A>
void winner_weights(const LwtaLayout& l, const Tile& t, const LwtaParams& p, Scratch<A>& s) {
  const int64_t units = l.competitors, n = t.length;
  A* z = s.z.data();
  if (p.mode == kLwtaArgmax) {
    for (int64_t j = 0; j < n; ++j) s.max[j] = s.h[j], s.winner[j] = 0;
    for (int64_t u = 1; u < units; ++u)
      for (int64_t j = 0; j < n; ++j)
        if (s.h[u * kTile + j] > s.max[j]) s.max[j] = s.h[u * kTile + j], s.winner[j] = static_cast<int32_t>(u);
    for (int64_t u = 0; u < units; ++u)
      for (int64_t j = 0; j < n; ++j) s.w[u * kTile + j] = s.winner[j] == u ? A(1) : A(0);
    return;
  }
  for (int64_t u = 0; u < units; ++u) {
    fill_uniform4(s.uniform.data(), n, p.seed,
                  p.offset + static_cast<uint64_t>(t.logical_base + u * t.logical_unit_stride));
    gumbel_logits(s.h.data() + u * kTile, s.uniform.data(), z + u * kTile, n, static_cast<A>(p.temperature));
  }
  for (int64_t j = 0; j < n; ++j) s.max[j] = z[j], s.winner[j] = 0, s.sum[j] = A(0);
  for (int64_t u = 1; u < units; ++u)
    for (int64_t j = 0; j < n; ++j)
      if (z[u * kTile + j] > s.max[j]) s.max[j] = z[u * kTile + j], s.winner[j] = static_cast<int32_t>(u);
  for (int64_t u = 0; u < units; ++u) exp_accumulate(z + u * kTile, s.max.data(), z + u * kTile, s.sum.data(), n);
  for (int64_t u = 0; u < units; ++u)
    for (int64_t j = 0; j < n; ++j) {
      const A xi = z[u * kTile + j] / s.sum[j];
      z[u * kTile + j] = xi;
      s.w[u * kTile + j] = p.mode == kLwtaHard ? (s.winner[j] == u ? A(1) : A(0)) : xi;
    }
}

at::Tensor lwta_forward_cpu(const at::Tensor& h, int64_t competitors, int64_t dim_size, int64_t inner,
                            int64_t positions, double temperature, int64_t mode, int64_t seed, int64_t offset) {
  const LwtaLayout l = check_lwta_args(h, competitors, dim_size, inner, positions, mode);
  const LwtaParams p{temperature, static_cast<int>(mode), static_cast<uint64_t>(seed),
                     static_cast<uint64_t>(offset)};
  at::Tensor out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "lwta_forward_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* src = h.const_data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, tile_count(l), 1, [&](int64_t first, int64_t last) {
      Scratch<A> s(competitors);
      for (int64_t ti = first; ti < last; ++ti) {
        const Tile t = tile_at(l, ti);
        gather(src, t, competitors, s.h.data());
        winner_weights(l, t, p, s);
        for (int64_t u = 0; u < competitors; ++u)
          for (int64_t j = 0; j < t.length; ++j)
            dst[t.mem_base + u * t.mem_unit_stride + j * t.mem_pos_stride] =
                static_cast<scalar_t>(s.h[u * kTile + j] * s.w[u * kTile + j]);
      }
    });
  });
  return out;
}

// grad_h = g * w + xi * (g * h - S) / T with S = sum over the block of (g * h) * xi (soft and
// hard, the straight-through gradient of the relaxation); argmax mode: g * w.
at::Tensor lwta_backward_cpu(const at::Tensor& grad, const at::Tensor& h, int64_t competitors, int64_t dim_size,
                             int64_t inner, int64_t positions, double temperature, int64_t mode, int64_t seed,
                             int64_t offset) {
  const LwtaLayout l = check_lwta_args(h, competitors, dim_size, inner, positions, mode);
  TORCH_CHECK(grad.sizes() == h.sizes() && grad.scalar_type() == h.scalar_type() && grad.is_contiguous(),
              "lwta_backward: grad must match h");
  const LwtaParams p{temperature, static_cast<int>(mode), static_cast<uint64_t>(seed),
                     static_cast<uint64_t>(offset)};
  at::Tensor out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, h.scalar_type(), "lwta_backward_cpu", [&] {
    const scalar_t *src = h.const_data_ptr<scalar_t>(), *gsrc = grad.const_data_ptr<scalar_t>();
    using A = at::opmath_type<scalar_t>;
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, tile_count(l), 1, [&](int64_t first, int64_t last) {
      Scratch<A> s(competitors);
      for (int64_t ti = first; ti < last; ++ti) {
        const Tile t = tile_at(l, ti);
        gather(src, t, competitors, s.h.data());
        gather(gsrc, t, competitors, s.g.data());
        winner_weights(l, t, p, s);
        const int64_t n = t.length;
        if (p.mode != kLwtaArgmax) {
          for (int64_t j = 0; j < n; ++j) s.sum[j] = A(0);
          for (int64_t u = 0; u < competitors; ++u)
            for (int64_t j = 0; j < n; ++j)
              s.sum[j] = s.sum[j] + (s.g[u * kTile + j] * s.h[u * kTile + j]) * s.z[u * kTile + j];
        }
        for (int64_t u = 0; u < competitors; ++u)
          for (int64_t j = 0; j < n; ++j) {
            const int64_t k = u * kTile + j;
            A value = s.g[k] * s.w[k];
            if (p.mode != kLwtaArgmax) value = value + s.z[k] * (s.g[k] * s.h[k] - s.sum[j]) / static_cast<A>(p.temperature);
            dst[t.mem_base + u * t.mem_unit_stride + j * t.mem_pos_stride] = static_cast<scalar_t>(value);
          }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) {
  m.impl("lwta_forward", &lwta_forward_cpu);
  m.impl("lwta_backward", &lwta_backward_cpu);
}

}  // namespace rk
