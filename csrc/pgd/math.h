// Elementwise PGD update, shared by the CPU and CUDA kernels (math in float, or double).
#pragma once

#include <cmath>

#include "common/macros.h"

namespace rk {

template <typename T>
RK_HOST_DEVICE T clamp_between(T v, T lo, T hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// A gradient entry that is NaN or +-inf counts as 0 (no move along it, no share of ||g||), on every
// backend. g - g is 0 exactly for finite g; it vectorises to a compare and a blend.
template <typename T>
RK_HOST_DEVICE T finite_or_zero(T g) {
  return g - g == T(0) ? g : T(0);
}

// Linf: x_adv + step * sign(g), clipped to [x_nat - eps, x_nat + eps], then to [lo, hi].
template <typename T>
RK_HOST_DEVICE T pgd_linf(T xa, T xn, T g, T step, T eps, T lo, T hi) {
  g = finite_or_zero(g);
  const T sign = static_cast<T>((g > T(0)) - (g < T(0)));
  const T moved = xa + step * sign;
  const T clipped = clamp_between(clamp_between(moved, xn - eps, xn + eps), lo, hi);
  return xn == xn ? clipped : xn;  // a NaN in x_nat propagates, as torch's min/max do
}

// L2, given per-sample unit = step / ||g|| (0 for a zero gradient) and scale = min(1, eps /
// ||new delta||): x_nat + ((x_adv - x_nat) + unit * g) * scale, then clamped to [lo, hi].
template <typename T>
RK_HOST_DEVICE T pgd_l2(T xa, T xn, T g, T unit, T scale, T lo, T hi) {
  return clamp_between(xn + ((xa - xn) + unit * finite_or_zero(g)) * scale, lo, hi);
}

// Per sample, from (||g||^2, <delta, g>, ||delta||^2): unit = step / ||g|| (0 if g == 0) and
// scale = min(1, eps / ||delta + unit g||), with ||delta + unit g||^2 expanded from the sums.
RK_HOST_DEVICE void l2_unit_and_scale(const double sums[3], double step, double eps, double* unit, double* scale) {
  const double g_norm = sqrt(sums[0]);
  *unit = g_norm > 0 ? step / g_norm : 0.0;
  // No step: ||delta|| alone (0 * inf would make an infinite delta's norm NaN and skip the projection).
  double squared = *unit > 0 ? sums[2] + 2 * *unit * sums[1] + *unit * *unit * sums[0] : sums[2];
  // NaN sums come from an infinite or NaN delta: its norm counts as infinite (projected onto x_nat).
  const double norm = squared != squared ? HUGE_VAL : sqrt(squared > 0 ? squared : 0.0);
  *scale = norm > eps ? eps / norm : 1.0;
}

}  // namespace rk
