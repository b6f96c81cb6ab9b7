// CUDA noise injection (raw pointers; compiles against csrc/common and CUDA headers only).
// out = x + std * alpha * eta with eta = philox_normal4_at(seed, offset + i), one thread per Philox
// block (its four normals serve four elements); the alpha gradient regenerates eta the same way.
// Storage fp32/fp16/bf16/fp64, math in fp32 (fp64 for fp64).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/piece_layout.h"
#include "common/philox.h"
#include "common/dtype.h"

namespace rk {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPieceCuda = 2048;  // elements per block in the alpha reduction

// Every kernel here reads the normal stream a Philox block at a time: a thread computes one
// block (four normals, both Box-Muller pairs) and serves the up to four elements it covers.

template <typename T>
__global__ void noise_add_kernel(const T* x, const typename OpMath<T>::type* alpha,
                                 const typename OpMath<T>::type* std, T* out, PieceLayout layout, const int64_t* seed_at,
                                 uint64_t offset) {
  const uint64_t seed = static_cast<uint64_t>(*seed_at);  // read on the device: graph-safe
  using A = typename OpMath<T>::type;
  const A scale = *std;
  const uint64_t first = first_block(offset, 0);
  const int64_t count = block_count(offset, 0, layout.n), stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < count; j += stride) {
    const Draws4 eta = philox_normal4(seed, first + j);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = element_of(offset, first + j, k);
      if (i < 0 || i >= layout.n) continue;
      const A a = layout.elementwise ? alpha[i] : alpha[(i / layout.inner) % layout.channels];
      out[i] = from_opmath<T>(to_opmath(x[i]) + scale * a * static_cast<A>(select4(eta, k)));
    }
  }
}

template <typename T>
__global__ void noise_alpha_grad_elementwise_kernel(const T* grad, const typename OpMath<T>::type* std,
                                                    typename OpMath<T>::type* out, int64_t n, const int64_t* seed_at,
                                                    uint64_t offset) {
  const uint64_t seed = static_cast<uint64_t>(*seed_at);  // read on the device: graph-safe
  using A = typename OpMath<T>::type;
  const A scale = *std;
  const uint64_t first = first_block(offset, 0);
  const int64_t count = block_count(offset, 0, n), stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < count; j += stride) {
    const Draws4 eta = philox_normal4(seed, first + j);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = element_of(offset, first + j, k);
      if (i >= 0 && i < n) out[i] = (to_opmath(grad[i]) * static_cast<A>(select4(eta, k))) * scale;
    }
  }
}

// One CUDA block per piece: partial[piece] = sum of grad * eta over the piece (float64).
template <typename T>
__global__ void noise_alpha_partial_kernel(const T* grad, double* partial, PieceLayout layout, const int64_t* seed_at,
                                           uint64_t offset) {
  const uint64_t seed = static_cast<uint64_t>(*seed_at);  // read on the device: graph-safe
  __shared__ double shared[kThreads];
  for (int64_t p = blockIdx.x; p < layout.pieces(); p += gridDim.x) {
    const int64_t begin = layout.begin_of(p), end = layout.end_of(p);
    const uint64_t first = first_block(offset, begin);
    const int64_t count = block_count(offset, begin, end);
    double total = 0.0;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
      const Draws4 eta = philox_normal4(seed, first + j);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int64_t i = element_of(offset, first + j, k);
        if (i >= begin && i < end) total += static_cast<double>(to_opmath(grad[i]) * select4(eta, k));
      }
    }
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
                            const int64_t* seed_at, uint64_t offset, cudaStream_t stream) {
  using A = typename OpMath<T>::type;
  noise_add_kernel<T><<<blocks_for(block_count(offset, 0, layout.n)), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const A*>(alpha), static_cast<const A*>(std), static_cast<T*>(out), layout,
      seed_at, offset);
  return cudaGetLastError();
}

template <typename T>
cudaError_t noise_alpha_grad_typed(const void* grad, const void* std, void* out, PieceLayout layout, const int64_t* seed_at,
                                   uint64_t offset, cudaStream_t stream) {
  using A = typename OpMath<T>::type;
  if (layout.elementwise) {
    noise_alpha_grad_elementwise_kernel<T><<<blocks_for(block_count(offset, 0, layout.n)), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const A*>(std), static_cast<A*>(out), layout.n, seed_at, offset);
  } else {
    const int64_t pieces = layout.pieces();
    noise_alpha_partial_kernel<T><<<static_cast<int>(pieces < 65535 * 16 ? pieces : 65535 * 16), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<double*>(out), layout, seed_at, offset);
  }
  return cudaGetLastError();
}

}  // namespace

int64_t noise_piece_cuda() { return kPieceCuda; }

cudaError_t launch_noise_add(DType dtype, const void* x, const void* alpha, const void* std, void* out,
                             PieceLayout layout, const int64_t* seed_at, uint64_t offset, cudaStream_t stream) {
  if (layout.n == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, noise_add_typed, x, alpha, std, out, layout, seed_at, offset, stream);
}

// Element-wise: out[i] (op-math dtype) = std * grad[i] * eta_i. Otherwise out[piece] (float64)
// holds per-piece partial sums of grad * eta, reduced on the host side.
cudaError_t launch_noise_alpha_grad(DType dtype, const void* grad, const void* std, void* out, PieceLayout layout,
                                    const int64_t* seed_at, uint64_t offset, cudaStream_t stream) {
  if (layout.n == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, noise_alpha_grad_typed, grad, std, out, layout, seed_at, offset, stream);
}

}  // namespace rk
