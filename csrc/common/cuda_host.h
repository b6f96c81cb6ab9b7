// Host helpers every CUDA registration (csrc/<op>/cuda.cu) uses: the kernels' storage dtype of a
// tensor and the launch check. Uses c10/cuda headers rather than ATen/cuda/CUDAContext.h, which
// pulls in cuSPARSE.
#pragma once

#include <ATen/core/Tensor.h>
#include <cuda_runtime.h>

#include "common/dtype.h"

namespace rk {

inline DType kernel_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kDouble: return DType::kFloat64;
    default: TORCH_CHECK(false, "robustkernels CUDA kernels take fp32/fp16/bf16/fp64, got ", type);
  }
}

inline void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " CUDA launch failed: ", cudaGetErrorString(err));
}

}  // namespace rk
