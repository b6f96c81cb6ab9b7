// Qualifiers that let one definition compile for the host (g++) and the device (nvcc).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RK_HOST_DEVICE inline
#endif
