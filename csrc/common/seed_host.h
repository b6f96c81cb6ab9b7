// The random key of the stochastic ops (LWTA, noise injection): a one-element int64 tensor on the
// input's device, not an int. The CUDA and Triton kernels read it from device memory when they
// run, so a CUDA graph captures its address and each replay uses the key drawn for that replay
// (a draw inside the graph) instead of a number baked in at capture.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace rk {

inline void check_seed(const at::Tensor& seed, const at::Tensor& like, const char* op) {
  TORCH_CHECK(seed.scalar_type() == at::kLong && seed.numel() == 1, op,
              ": seed must be a one-element int64 tensor, got ", seed.scalar_type(), " with ", seed.numel(),
              " elements");
  TORCH_CHECK(seed.device() == like.device(), op, ": seed is on ", seed.device(), " but the input is on ",
              like.device());
}

// The key as a number, for the CPU kernels.
inline uint64_t cpu_seed(const at::Tensor& seed, const at::Tensor& like, const char* op) {
  check_seed(seed, like, op);
  return static_cast<uint64_t>(seed.item<int64_t>());
}

}  // namespace rk
