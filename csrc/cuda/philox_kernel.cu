// CUDA kernel for the shared Philox stream. Raw pointers only, so it compiles with nvcc
// against csrc/common alone (CI compile-checks it without a CUDA build of torch).
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/philox.h"

namespace rk {

namespace {

__global__ void philox_fill_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset,
                                   bool normal, bool four_per_block) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const uint64_t index = offset + i;
    if (four_per_block) {
      out[i] = normal ? philox_normal4_at(seed, index) : philox_uniform4_at(seed, index);
    } else {
      out[i] = normal ? philox_normal(seed, index) : philox_uniform(seed, index);
    }
  }
}

}  // namespace

cudaError_t launch_philox_fill(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                               int per_block, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks_needed = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(blocks_needed < 65535 * 8 ? blocks_needed : 65535 * 8);
  philox_fill_kernel<<<blocks, kThreads, 0, stream>>>(out, n, seed, offset, normal, per_block == 4);
  return cudaGetLastError();
}

}  // namespace rk
