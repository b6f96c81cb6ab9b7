// Host-side pieces of the noise-injection ops shared by the CPU and CUDA registrations.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include "common/piece_layout.h"
#include "common/seed_host.h"

namespace rk {

inline void check_noise_args(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& std, int64_t channels,
                             int64_t inner, bool elementwise) {
  TORCH_CHECK(x.is_contiguous() && alpha.is_contiguous(), "noise: x and alpha must be contiguous");
  TORCH_CHECK(alpha.scalar_type() == at::toOpMathType(x.scalar_type()) && std.scalar_type() == alpha.scalar_type(),
              "noise: alpha and std must be in the op-math dtype of x");
  TORCH_CHECK(std.numel() == 1, "noise: std must have one element");
  TORCH_CHECK(alpha.device() == x.device() && std.device() == x.device(), "noise: all tensors on one device");
  TORCH_CHECK(elementwise ? alpha.numel() == x.numel() : alpha.numel() == channels, "noise: alpha has ",
              alpha.numel(), " elements, expected ", elementwise ? x.numel() : channels);
  TORCH_CHECK(elementwise || (inner > 0 && channels > 0 && x.numel() % (inner * channels) == 0),
              "noise: channels * inner must divide numel");
}

// Per-piece partial sums of grad * eta (float64, [pieces]) -> d loss / d alpha ([channels]).
inline at::Tensor reduce_alpha_partials(const at::Tensor& partial, const PieceLayout& layout, const at::Tensor& std,
                                        at::ScalarType alpha_dtype) {
  return partial.view({layout.rows / layout.channels, layout.channels, layout.pieces_per_row})
      .sum(at::IntArrayRef{0, 2})
      .mul_(std.to(at::kDouble))
      .to(alpha_dtype);
}

}  // namespace rk
