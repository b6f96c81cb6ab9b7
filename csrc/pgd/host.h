// Host-side pieces of the PGD step shared by the CPU and CUDA registrations.
#pragma once

#include <ATen/core/Tensor.h>

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

}  // namespace rk
