// CUDA kernel for the shared Philox stream. Raw pointers only, so it compiles with nvcc
// against csrc/common alone (CI compile-checks it without a CUDA build of torch).
#include <cuda_runtime.h>

#include <cstdint>

#include "common/philox.h"

namespace rk {

namespace {

// One draw per block: a thread per element. Four per block: a thread per Philox block, its four
// outputs written to the up to four elements it covers.
__global__ void philox_fill_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = normal ? philox_normal(seed, offset + i) : philox_uniform(seed, offset + i);
}

__global__ void philox_fill4_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal) {
  const uint64_t first = first_block(offset, 0);
  const int64_t count = block_count(offset, 0, n), stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < count; j += stride) {
    const Draws4 d = normal ? philox_normal4(seed, first + j) : philox_uniform4(seed, first + j);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = element_of(offset, first + j, k);
      if (i >= 0 && i < n) out[i] = select4(d, k);
    }
  }
}

}  // namespace

cudaError_t launch_philox_fill(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                               int per_block, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t work = per_block == 4 ? block_count(offset, 0, n) : n;  // threads: one per block or per draw
  const int64_t blocks_needed = (work + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(blocks_needed < 65535 * 8 ? blocks_needed : 65535 * 8);
  if (per_block == 4)
    philox_fill4_kernel<<<blocks, kThreads, 0, stream>>>(out, n, seed, offset, normal);
  else
    philox_fill_kernel<<<blocks, kThreads, 0, stream>>>(out, n, seed, offset, normal);
  return cudaGetLastError();
}

}  // namespace rk
