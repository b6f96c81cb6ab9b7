// CUDA noise injection (raw pointers; compiles against csrc/common and CUDA headers only).
// out = x + std * alpha * eta with eta = philox_normal4_at(seed, offset + i); the alpha gradient
// regenerates eta. Storage fp32/fp16/bf16/fp64, math in fp32 (fp64 for fp64).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/piece_layout.h"
#include "../common/philox.h"
#include "dtype.h"

namespace rk {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPieceCuda = 2048;  // elements per block in the alpha reduction

template <typename T>
__global__ void noise_add_kernel(const T* x, const typename OpMath<T>::type* alpha,
                                 const typename OpMath<T>::type* std, T* out, PieceLayout layout, uint64_t seed,
                                 uint64_t offset) {
  using A = typename OpMath<T>::type;
  const A scale = *std;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < layout.n; i += stride) {
    const A a = layout.elementwise ? alpha[i] : alpha[(i / layout.inner) % layout.channels];
    const A eta = static_cast<A>(philox_normal4_at(seed, offset + i));
    out[i] = from_opmath<T>(to_opmath(x[i]) + scale * a * eta);
  }
}

template <typename T>
__global__ void noise_alpha_grad_elementwise_kernel(const T* grad, const typename OpMath<T>::type* std,
                                                    typename OpMath<T>::type* out, int64_t n, uint64_t seed,
                                                    uint64_t offset) {
  using A = typename OpMath<T>::type;
  const A scale = *std;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = (to_opmath(grad[i]) * static_cast<A>(philox_normal4_at(seed, offset + i))) * scale;
}

// One block per piece: partial[piece] = sum of grad * eta over the piece (float64).
template <typename T>
__global__ void noise_alpha_partial_kernel(const T* grad, double* partial, PieceLayout layout, uint64_t seed,
                                           uint64_t offset) {
  __shared__ double shared[kThreads];
  for (int64_t p = blockIdx.x; p < layout.pieces(); p += gridDim.x) {
    double total = 0.0;
    for (int64_t i = layout.begin_of(p) + threadIdx.x; i < layout.end_of(p); i += blockDim.x)
      total += static_cast<double>(to_opmath(grad[i]) * philox_normal4_at(seed, offset + i));
    shared[threadIdx.x] = total;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x == 0) partial[p] = shared[0];
    __syncthreads();
  }
}

int blocks_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <typename T>
cudaError_t noise_add_typed(const void* x, const void* alpha, const void* std, void* out, PieceLayout layout,
                            uint64_t seed, uint64_t offset, cudaStream_t stream) {
  using A = typename OpMath<T>::type;
  noise_add_kernel<T><<<blocks_for(layout.n), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const A*>(alpha), static_cast<const A*>(std), static_cast<T*>(out), layout,
      seed, offset);
  return cudaGetLastError();
}

template <typename T>
cudaError_t noise_alpha_grad_typed(const void* grad, const void* std, void* out, PieceLayout layout, uint64_t seed,
                                   uint64_t offset, cudaStream_t stream) {
  using A = typename OpMath<T>::type;
  if (layout.elementwise) {
    noise_alpha_grad_elementwise_kernel<T><<<blocks_for(layout.n), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const A*>(std), static_cast<A*>(out), layout.n, seed, offset);
  } else {
    const int64_t pieces = layout.pieces();
    noise_alpha_partial_kernel<T><<<static_cast<int>(pieces < 65535 * 16 ? pieces : 65535 * 16), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<double*>(out), layout, seed, offset);
  }
  return cudaGetLastError();
}

}  // namespace

int64_t noise_piece_cuda() { return kPieceCuda; }

cudaError_t launch_noise_add(DType dtype, const void* x, const void* alpha, const void* std, void* out,
                             PieceLayout layout, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  if (layout.n == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, noise_add_typed, x, alpha, std, out, layout, seed, offset, stream);
}

// Element-wise: out[i] (op-math dtype) = std * grad[i] * eta_i. Otherwise out[piece] (float64)
// holds per-piece partial sums of grad * eta, reduced on the host side.
cudaError_t launch_noise_alpha_grad(DType dtype, const void* grad, const void* std, void* out, PieceLayout layout,
                                    uint64_t seed, uint64_t offset, cudaStream_t stream) {
  if (layout.n == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, noise_alpha_grad_typed, grad, std, out, layout, seed, offset, stream);
}

}  // namespace rk
