// Qualifiers that let one definition compile for the host (g++) and the device (nvcc).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RK_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
// Forced, so the helpers are compiled into each ISA variant (RK_SIMD_FN) that calls them.
#define RK_HOST_DEVICE inline __attribute__((always_inline))
#else
#define RK_HOST_DEVICE inline
#endif
