// CUDA Stochastic LWTA, forward and backward (raw pointers; csrc/common and CUDA headers only).
// One thread per (block of U units, position); the same operations in the same order as the CPU
// and Triton kernels (shared log/exp polynomials, in-order sums, IEEE division).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/lwta_math.h"
#include "dtype.h"

namespace rk {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxUnits = 32;  // larger U is rejected by the host glue

struct Geometry {
  int64_t outer, dim_size, inner, positions, competitors;
  __device__ int64_t length() const { return positions > 0 ? positions : inner; }
  __device__ int64_t tasks() const { return outer * (dim_size / competitors) * length(); }
  // Memory and logical (NCHW) index of unit u of task t.
  __device__ void locate(int64_t t, int64_t u, int64_t* mem, int64_t* logical) const {
    const int64_t pos = t % length(), block = (t / length()) % (dim_size / competitors),
                  o = t / length() / (dim_size / competitors), unit = block * competitors + u;
    if (positions > 0) {
      *mem = (o * positions + pos) * dim_size + unit;
      *logical = (o * dim_size + unit) * positions + pos;
    } else {
      *mem = (o * dim_size + unit) * inner + pos;
      *logical = *mem;
    }
  }
};

// One thread per (block, position). kMax bounds the per-thread arrays (2, 4, 8 or 32: sized to
// U, not to the largest U); A is the op-math type (float, or double for float64 storage, whose
// block math then runs in double as on the CPU). The block math is csrc/common/lwta_math.h.
template <int kMax, typename T>
__global__ void lwta_forward_kernel(const T* h_in, T* out, Geometry geo, double temperature, int mode, uint64_t seed,
                                    uint64_t offset) {
  using A = typename OpMath<T>::type;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < geo.tasks(); t += stride) {
    const int units = static_cast<int>(geo.competitors);
    int64_t mem[kMax], logical[kMax];
    A h[kMax], w[kMax], xi[kMax], y[kMax];
    for (int u = 0; u < units; ++u) {
      geo.locate(t, u, &mem[u], &logical[u]);
      h[u] = static_cast<A>(to_opmath(h_in[mem[u]]));
    }
    block_weights<kMax, A>(h, logical, units, static_cast<A>(temperature), mode, seed, offset, w, xi);
    block_forward(h, w, units, y);
    for (int u = 0; u < units; ++u) out[mem[u]] = from_opmath<T>(y[u]);
  }
}

template <int kMax, typename T>
__global__ void lwta_backward_kernel(const T* g_in, const T* h_in, T* out, Geometry geo, double temperature, int mode,
                                     uint64_t seed, uint64_t offset) {
  using A = typename OpMath<T>::type;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < geo.tasks(); t += stride) {
    const int units = static_cast<int>(geo.competitors);
    int64_t mem[kMax], logical[kMax];
    A h[kMax], g[kMax], w[kMax], xi[kMax], d[kMax];
    for (int u = 0; u < units; ++u) {
      geo.locate(t, u, &mem[u], &logical[u]);
      h[u] = static_cast<A>(to_opmath(h_in[mem[u]]));
      g[u] = static_cast<A>(to_opmath(g_in[mem[u]]));
    }
    const A temp = static_cast<A>(temperature);
    block_weights<kMax, A>(h, logical, units, temp, mode, seed, offset, w, xi);
    block_backward(g, h, w, xi, units, temp, mode, d);
    for (int u = 0; u < units; ++u) out[mem[u]] = from_opmath<T>(d[u]);
  }
}

int grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <int kMax, typename T>
void launch_sized(const void* g, const void* h, void* out, Geometry geo, int64_t tasks, double temperature, int mode,
                  uint64_t seed, uint64_t offset, cudaStream_t stream) {
  if (g == nullptr)
    lwta_forward_kernel<kMax, T><<<grid_for(tasks), kThreads, 0, stream>>>(
        static_cast<const T*>(h), static_cast<T*>(out), geo, temperature, mode, seed, offset);
  else
    lwta_backward_kernel<kMax, T><<<grid_for(tasks), kThreads, 0, stream>>>(
        static_cast<const T*>(g), static_cast<const T*>(h), static_cast<T*>(out), geo, temperature, mode, seed,
        offset);
}

template <typename T>
cudaError_t launch_typed(const void* g, const void* h, void* out, Geometry geo, int64_t tasks, double temperature,
                         int mode, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  const int64_t u = geo.competitors;
  if (u == 2)
    launch_sized<2, T>(g, h, out, geo, tasks, temperature, mode, seed, offset, stream);
  else if (u <= 4)
    launch_sized<4, T>(g, h, out, geo, tasks, temperature, mode, seed, offset, stream);
  else if (u <= 8)
    launch_sized<8, T>(g, h, out, geo, tasks, temperature, mode, seed, offset, stream);
  else
    launch_sized<kMaxUnits, T>(g, h, out, geo, tasks, temperature, mode, seed, offset, stream);
  return cudaGetLastError();
}

}  // namespace

int64_t lwta_max_units_cuda() { return kMaxUnits; }

// grad == nullptr: forward (out = h * w); otherwise the backward into out.
cudaError_t launch_lwta(DType dtype, const void* grad, const void* h, void* out, int64_t outer, int64_t dim_size,
                        int64_t inner, int64_t positions, int64_t competitors, double temperature, int mode,
                        uint64_t seed, uint64_t offset, cudaStream_t stream) {
  const Geometry geo{outer, dim_size, inner, positions, competitors};
  const int64_t tasks = outer * (dim_size / competitors) * (positions > 0 ? positions : inner);
  if (tasks == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, launch_typed, grad, h, out, geo, tasks, temperature, mode, seed, offset, stream);
}

}  // namespace rk
