// CUDA Stochastic LWTA, forward and backward (raw pointers; csrc/common and CUDA headers only).
// One thread per group of kGroup positions of a block of U units (flat [B, F]: kGroup blocks):
// the group's draws come from whole Philox blocks, each computed once and its four outputs used
// (csrc/lwta/math.h's lwta_group, which a CPU test runs too). The same operations in the
// same order as the CPU and Triton kernels (shared log/exp polynomials, in-order sums, IEEE
// division).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "lwta/math.h"
#include "common/dtype.h"

namespace rk {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxUnits = 32;  // larger U is rejected by the host glue

// Storage T read and written in op math A (float, or double for float64 storage, whose block
// math then runs in double as on the CPU); g == nullptr: the forward.
template <typename T>
struct DeviceIo {
  using A = typename OpMath<T>::type;
  const T* grad;
  const T* input;
  T* out;
  bool backward;
  __device__ A h(int64_t i) const { return static_cast<A>(to_opmath(input[i])); }
  __device__ A g(int64_t i) const { return static_cast<A>(to_opmath(grad[i])); }
  __device__ void put(int64_t i, A v) { out[i] = from_opmath<T>(v); }
};

template <int kMax, typename T>
__global__ void lwta_kernel(DeviceIo<T> io, LwtaGeometry geo, double temperature, int mode, const int64_t* seed_at,
                            uint64_t offset) {
  using A = typename OpMath<T>::type;
  const uint64_t seed = static_cast<uint64_t>(*seed_at);  // read on the device: graph-safe
  const int64_t groups = geo.groups(kLwtaGroup<kMax>), stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < groups; t += stride)
    lwta_group<kMax, A>(io, geo, static_cast<A>(temperature), mode, seed, offset, t);
}

int grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <int kMax, typename T>
void launch_sized(DeviceIo<T> io, LwtaGeometry geo, double temperature, int mode, const int64_t* seed_at, uint64_t offset,
                  cudaStream_t stream) {
  lwta_kernel<kMax, T><<<grid_for(geo.groups(kLwtaGroup<kMax>)), kThreads, 0, stream>>>(io, geo, temperature, mode,
                                                                                         seed_at, offset);
}

template <typename T>
cudaError_t launch_typed(const void* g, const void* h, void* out, LwtaGeometry geo, double temperature, int mode,
                         const int64_t* seed_at, uint64_t offset, cudaStream_t stream) {
  const DeviceIo<T> io{static_cast<const T*>(g), static_cast<const T*>(h), static_cast<T*>(out), g != nullptr};
  const int64_t u = geo.competitors;
  if (u == 2)
    launch_sized<2, T>(io, geo, temperature, mode, seed_at, offset, stream);
  else if (u <= 4)
    launch_sized<4, T>(io, geo, temperature, mode, seed_at, offset, stream);
  else if (u <= 8)
    launch_sized<8, T>(io, geo, temperature, mode, seed_at, offset, stream);
  else
    launch_sized<kMaxUnits, T>(io, geo, temperature, mode, seed_at, offset, stream);
  return cudaGetLastError();
}

}  // namespace

int64_t lwta_max_units_cuda() { return kMaxUnits; }

// grad == nullptr: forward (out = h * w); otherwise the backward into out.
cudaError_t launch_lwta(DType dtype, const void* grad, const void* h, void* out, int64_t outer, int64_t dim_size,
                        int64_t inner, int64_t positions, int64_t competitors, double temperature, int mode,
                        const int64_t* seed_at, uint64_t offset, cudaStream_t stream) {
  const LwtaGeometry geo{outer, dim_size, inner, positions, competitors};
  if (geo.blocks() * geo.length() == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, launch_typed, grad, h, out, geo, temperature, mode, seed_at, offset, stream);
}

}  // namespace rk
