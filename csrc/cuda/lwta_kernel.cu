// CUDA Stochastic LWTA, forward and backward (raw pointers; csrc/common and CUDA headers only).
// One thread per (block of U units, position); the same fp32 operations in the same order as
// the CPU and Triton kernels (shared log/exp polynomials, in-order sums, IEEE division).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/fast_math.h"
#include "../common/philox.h"
#include "dtype.h"

namespace rk {

// The first maximum wins; a NaN beats everything and the first NaN stays (as torch.argmax, and
// the CPU kernel).
__device__ __forceinline__ bool beats(float v, float best) { return v > best || (v != v && best == best); }

// The non-finite rule of every backend: a block holding a NaN or +-inf input gives NaN in all its
// units, forward and backward (x - x is 0 exactly when x is finite).
__device__ __forceinline__ bool block_non_finite(const float* h, int units) {
  float sum = 0.0f;
  for (int u = 0; u < units; ++u) sum = sum + (h[u] - h[u]);
  return !(sum == 0.0f);
}

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

namespace {

constexpr int kThreads = 256;
constexpr int kMaxUnits = 32;  // per-thread arrays; larger U is rejected by the host glue

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

// h[u] -> w[u] (forward weights) and xi[u] (argmax mode: xi = w). Two competitors draw one
// logistic per block, as the CPU and Triton kernels.
__device__ void block_weights(const float* h, const int64_t* logical, int units, float temperature, int mode,
                              uint64_t seed, uint64_t offset, float* w, float* xi) {
  int winner = 0;
  if (mode == 2) {
    for (int u = 1; u < units; ++u)
      if (beats(h[u], h[winner])) winner = u;
    for (int u = 0; u < units; ++u) w[u] = xi[u] = u == winner ? 1.0f : 0.0f;
    return;
  }
  if (units == 2) {  // one logistic draw per block, d = (h0 - h1 + L) / T, xi = sigmoid(+-d)
    const float d = __fdiv_rn((h[0] - h[1]) + logistic_poly(philox_uniform4_at(seed, offset + logical[0])),
                              temperature);
    const bool first = d >= 0.0f;
    const float e = exp_poly(first ? -d : d), total = 1.0f + e;
    const float big = __fdiv_rn(1.0f, total), small = e * big;
    xi[0] = first ? big : small;
    xi[1] = first ? small : big;
    w[0] = mode == 1 ? (first ? 1.0f : 0.0f) : xi[0];
    w[1] = mode == 1 ? (first ? 0.0f : 1.0f) : xi[1];
    return;
  }
  float z[kMaxUnits];
  for (int u = 0; u < units; ++u) {
    z[u] = __fdiv_rn(h[u] + gumbel_poly(philox_uniform4_at(seed, offset + logical[u])), temperature);
    if (beats(z[u], z[winner])) winner = u;
  }
  float total = 0.0f;
  for (int u = 0; u < units; ++u) {
    z[u] = exp_poly(z[u] - z[winner]);
    total = total + z[u];
  }
  for (int u = 0; u < units; ++u) {
    xi[u] = __fdiv_rn(z[u], total);
    w[u] = mode == 1 ? (u == winner ? 1.0f : 0.0f) : xi[u];
  }
}

template <typename T>
__global__ void lwta_forward_kernel(const T* h_in, T* out, Geometry geo, float temperature, int mode, uint64_t seed,
                                    uint64_t offset) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < geo.tasks(); t += stride) {
    const int units = static_cast<int>(geo.competitors);
    int64_t mem[kMaxUnits], logical[kMaxUnits];
    float h[kMaxUnits], w[kMaxUnits], xi[kMaxUnits];
    for (int u = 0; u < units; ++u) {
      geo.locate(t, u, &mem[u], &logical[u]);
      h[u] = static_cast<float>(to_opmath(h_in[mem[u]]));
    }
    block_weights(h, logical, units, temperature, mode, seed, offset, w, xi);
    const bool bad = block_non_finite(h, units);
    for (int u = 0; u < units; ++u)
      out[mem[u]] = from_opmath<T>(static_cast<typename OpMath<T>::type>(bad ? quiet_nan() : h[u] * w[u]));
  }
}

template <typename T>
__global__ void lwta_backward_kernel(const T* g_in, const T* h_in, T* out, Geometry geo, float temperature, int mode,
                                     uint64_t seed, uint64_t offset) {
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < geo.tasks(); t += stride) {
    const int units = static_cast<int>(geo.competitors);
    int64_t mem[kMaxUnits], logical[kMaxUnits];
    float h[kMaxUnits], g[kMaxUnits], w[kMaxUnits], xi[kMaxUnits];
    for (int u = 0; u < units; ++u) {
      geo.locate(t, u, &mem[u], &logical[u]);
      h[u] = static_cast<float>(to_opmath(h_in[mem[u]]));
      g[u] = static_cast<float>(to_opmath(g_in[mem[u]]));
    }
    block_weights(h, logical, units, temperature, mode, seed, offset, w, xi);
    const bool bad = block_non_finite(h, units);
    if (units == 2 && mode != 2) {  // c = xi0 xi1 (g0 h0 - g1 h1) / T; g0 w0 + c and g1 w1 - c
      const float c = (xi[0] * xi[1]) * __fdiv_rn(g[0] * h[0] - g[1] * h[1], temperature);
      out[mem[0]] = from_opmath<T>(static_cast<typename OpMath<T>::type>(bad ? quiet_nan() : g[0] * w[0] + c));
      out[mem[1]] = from_opmath<T>(static_cast<typename OpMath<T>::type>(bad ? quiet_nan() : g[1] * w[1] - c));
      continue;
    }
    float total = 0.0f;
    if (mode != 2)
      for (int u = 0; u < units; ++u) total = total + (g[u] * h[u]) * xi[u];
    for (int u = 0; u < units; ++u) {
      float value = g[u] * w[u];
      if (mode != 2) value = value + __fdiv_rn(xi[u] * (g[u] * h[u] - total), temperature);
      if (bad) value = quiet_nan();
      out[mem[u]] = from_opmath<T>(static_cast<typename OpMath<T>::type>(value));
    }
  }
}

int grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <typename T>
cudaError_t forward_typed(const void* h, void* out, Geometry geo, int64_t tasks, float temperature, int mode,
                          uint64_t seed, uint64_t offset, cudaStream_t stream) {
  lwta_forward_kernel<T><<<grid_for(tasks), kThreads, 0, stream>>>(static_cast<const T*>(h), static_cast<T*>(out), geo,
                                                                    temperature, mode, seed, offset);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_typed(const void* g, const void* h, void* out, Geometry geo, int64_t tasks, float temperature,
                           int mode, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  lwta_backward_kernel<T><<<grid_for(tasks), kThreads, 0, stream>>>(
      static_cast<const T*>(g), static_cast<const T*>(h), static_cast<T*>(out), geo, temperature, mode, seed, offset);
  return cudaGetLastError();
}

}  // namespace

int64_t lwta_max_units_cuda() { return kMaxUnits; }

// grad == nullptr: forward (out = h * w); otherwise the backward into out.
cudaError_t launch_lwta(DType dtype, const void* grad, const void* h, void* out, int64_t outer, int64_t dim_size,
                        int64_t inner, int64_t positions, int64_t competitors, float temperature, int mode,
                        uint64_t seed, uint64_t offset, cudaStream_t stream) {
  const Geometry geo{outer, dim_size, inner, positions, competitors};
  const int64_t tasks = outer * (dim_size / competitors) * (positions > 0 ? positions : inner);
  if (tasks == 0) return cudaSuccess;
  if (grad == nullptr) {
    return RK_DISPATCH_DTYPE(dtype, forward_typed, h, out, geo, tasks, temperature, mode, seed, offset, stream);
  }
  return RK_DISPATCH_DTYPE(dtype, backward_typed, grad, h, out, geo, tasks, temperature, mode, seed, offset, stream);
}

}  // namespace rk
