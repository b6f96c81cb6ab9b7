// Host-side pieces of the LWTA ops shared by the CPU and CUDA registrations.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "common/seed_host.h"

namespace rk {

enum LwtaMode : int { kLwtaSoft = 0, kLwtaHard = 1, kLwtaArgmax = 2 };

// contiguous: h is [outer, dim_size, inner] (positions == 0); channels_last: h is
// [outer = B, positions, dim_size] in memory (dim = 1 of an NCHW tensor, inner == 1).
struct LwtaLayout {
  int64_t outer, dim_size, inner, positions, competitors;
};

struct LwtaParams {
  double temperature;  // used as float by the float kernels (the value every backend rounds to)
  int mode;
  uint64_t seed, offset;
};

inline LwtaLayout check_lwta_args(const at::Tensor& h, int64_t competitors, int64_t dim_size, int64_t inner,
                                  int64_t positions, int64_t mode) {
  TORCH_CHECK(h.is_contiguous(), "lwta: h must be contiguous in memory");
  TORCH_CHECK(competitors >= 2 && dim_size % competitors == 0, "lwta: competitors must divide dim_size");
  TORCH_CHECK(mode >= kLwtaSoft && mode <= kLwtaArgmax, "lwta: bad mode");
  const int64_t per_outer = dim_size * (positions > 0 ? positions : inner);
  TORCH_CHECK(per_outer > 0 && h.numel() % per_outer == 0, "lwta: layout does not match numel");
  return {h.numel() / per_outer, dim_size, positions > 0 ? 1 : inner, positions, competitors};
}

// The backward's incoming gradient: h's shape, dtype and device, contiguous.
inline void check_lwta_grad(const at::Tensor& grad, const at::Tensor& h) {
  TORCH_CHECK(grad.device() == h.device(), "lwta_backward: grad is on ", grad.device(), " but h is on ", h.device());
  TORCH_CHECK(grad.sizes() == h.sizes() && grad.scalar_type() == h.scalar_type() && grad.is_contiguous(),
              "lwta_backward: grad must match h");
}

}  // namespace rk
