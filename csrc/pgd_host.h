// Host-side pieces of the PGD step shared by the CPU and CUDA registrations.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "common/piece_layout.h"

namespace rk {

// x as [B, C, S]: rows are (sample, channel) pairs of S elements.
inline PieceLayout pgd_layout(const at::Tensor& x, const at::Tensor& lo, int64_t piece) {
  const int64_t batch = x.size(0), channels = lo.numel();
  const int64_t per_sample = batch > 0 ? x.numel() / batch : 0;
  return PieceLayout(x.numel(), channels, channels > 0 ? per_sample / channels : 0, false, piece);
}

inline void check_pgd_args(const at::Tensor& out, const at::Tensor& x_adv, const at::Tensor& x_nat,
                           const at::Tensor& grad, const at::Tensor& step, const at::Tensor& eps,
                           const at::Tensor& lo, const at::Tensor& hi) {
  TORCH_CHECK(x_adv.dim() >= 1, "pgd_step: x_adv needs a batch dimension");
  for (const at::Tensor* t : {&out, &x_nat, &grad}) {
    TORCH_CHECK(t->sizes() == x_adv.sizes() && t->scalar_type() == x_adv.scalar_type(),
                "pgd_step: out, x_nat and grad must match x_adv's shape and dtype");
  }
  for (const at::Tensor* t : {&out, &x_adv, &x_nat, &grad, &step, &eps, &lo, &hi}) {
    TORCH_CHECK(t->is_contiguous() && t->device() == x_adv.device(), "pgd_step: contiguous tensors on one device");
  }
  const auto opmath = x_adv.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  for (const at::Tensor* t : {&step, &eps, &lo, &hi}) {
    TORCH_CHECK(t->scalar_type() == opmath, "pgd_step: step, eps, lo, hi must be in the op-math dtype");
  }
  TORCH_CHECK(step.numel() == x_adv.size(0) && eps.numel() == x_adv.size(0), "pgd_step: step and eps are [B]");
  TORCH_CHECK(lo.numel() == hi.numel() && lo.numel() >= 1, "pgd_step: lo and hi have one value per channel");
  TORCH_CHECK(lo.numel() == 1 || (x_adv.dim() >= 2 && x_adv.size(1) == lo.numel()),
              "pgd_step: per-channel bounds need x.shape[1] == number of bounds");
}

// From per-sample sums [B, 3] = (||g||^2, <delta, g>, ||delta||^2) to (unit, scale) [B] each:
// unit = step / ||g|| (0 if g == 0); the stepped delta has squared norm
// ||delta||^2 + 2 unit <delta, g> + unit^2 ||g||^2, and scale = min(1, eps / its norm).
inline std::pair<at::Tensor, at::Tensor> l2_unit_and_scale(const at::Tensor& sums, const at::Tensor& step,
                                                           const at::Tensor& eps) {
  const at::Tensor gg = sums.select(1, 0), dg = sums.select(1, 1), dd = sums.select(1, 2);
  const at::Tensor g_norm = at::sqrt(gg);
  const at::Tensor unit = at::where(g_norm > 0, step.to(at::kDouble) / g_norm, at::zeros_like(g_norm));
  const at::Tensor new_norm = at::sqrt((dd + 2 * unit * dg + unit * unit * gg).clamp_min(0));
  const at::Tensor eps64 = eps.to(at::kDouble);
  const at::Tensor scale = at::where(new_norm > eps64, eps64 / new_norm, at::ones_like(new_norm));
  return {unit.to(step.scalar_type()), scale.to(step.scalar_type())};
}

}  // namespace rk
