// Storage dtypes of the CUDA kernels and their fp32 (fp64) op-math, without torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace rk {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

template <typename T>
struct OpMath {
  using type = float;
};
template <>
struct OpMath<double> {
  using type = double;
};

__device__ __forceinline__ float to_opmath(float v) { return v; }
__device__ __forceinline__ double to_opmath(double v) { return v; }
__device__ __forceinline__ float to_opmath(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_opmath(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_opmath(typename OpMath<T>::type v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_opmath<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_opmath<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls fn<T>(args...) for the storage type named by `dtype`.
#define RK_DISPATCH_DTYPE(dtype, fn, ...)                                  \
  ((dtype) == ::rk::DType::kFloat32    ? fn<float>(__VA_ARGS__)            \
   : (dtype) == ::rk::DType::kFloat16  ? fn<__half>(__VA_ARGS__)           \
   : (dtype) == ::rk::DType::kBFloat16 ? fn<__nv_bfloat16>(__VA_ARGS__)    \
   : (dtype) == ::rk::DType::kFloat64  ? fn<double>(__VA_ARGS__)           \
                                       : cudaErrorInvalidValue)

}  // namespace rk
