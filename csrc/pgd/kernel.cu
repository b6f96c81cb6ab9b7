// CUDA PGD step (raw pointers; compiles against csrc/common and CUDA headers only). x viewed as
// [B, C, S]. Linf: one kernel. L2: per-piece sums, one thread per sample for (unit, scale),
// then the elementwise kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "pgd/math.h"
#include "common/piece_layout.h"
#include "common/dtype.h"

namespace rk {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kPieceCuda = 4096;

// Linf: a = step, b = eps per sample. L2: a = unit, b = scale per sample.
template <typename T>
__global__ void pgd_step_kernel(T* out, const T* xa, const T* xn, const T* g, const typename OpMath<T>::type* a,
                                const typename OpMath<T>::type* b, const typename OpMath<T>::type* lo,
                                const typename OpMath<T>::type* hi, PieceLayout layout, bool l2) {
  using A = typename OpMath<T>::type;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < layout.n; i += stride) {
    const int64_t row = i / layout.inner, sample = row / layout.channels, channel = row % layout.channels;
    const A v = l2 ? pgd_l2<A>(to_opmath(xa[i]), to_opmath(xn[i]), to_opmath(g[i]), a[sample], b[sample], lo[channel],
                               hi[channel])
                   : pgd_linf<A>(to_opmath(xa[i]), to_opmath(xn[i]), to_opmath(g[i]), a[sample], b[sample],
                                 lo[channel], hi[channel]);
    out[i] = from_opmath<T>(v);
  }
}

// partial[3 * piece + k] = piece sums of (g^2, (xa - xn) g, (xa - xn)^2), in float64.
template <typename T>
__global__ void l2_sums_kernel(const T* xa, const T* xn, const T* g, double* partial, PieceLayout layout) {
  __shared__ double shared[3][kThreads];
  for (int64_t p = blockIdx.x; p < layout.pieces(); p += gridDim.x) {
    double gg = 0, dg = 0, dd = 0;
    for (int64_t i = layout.begin_of(p) + threadIdx.x; i < layout.end_of(p); i += blockDim.x) {
      const double d = static_cast<double>(to_opmath(xa[i])) - static_cast<double>(to_opmath(xn[i]));
      const double gi = finite_or_zero(static_cast<double>(to_opmath(g[i])));
      gg += gi * gi, dg += d * gi, dd += d * d;
    }
    shared[0][threadIdx.x] = gg, shared[1][threadIdx.x] = dg, shared[2][threadIdx.x] = dd;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
      if (threadIdx.x < width)
        for (int k = 0; k < 3; ++k) shared[k][threadIdx.x] += shared[k][threadIdx.x + width];
      __syncthreads();
    }
    if (threadIdx.x < 3) partial[3 * p + threadIdx.x] = shared[threadIdx.x][0];
    __syncthreads();
  }
}

// One thread per sample: sum its pieces' partials, then (unit, scale) as on the CPU.
template <typename A>
__global__ void l2_finish_kernel(const double* partial, int64_t batch, int64_t pieces_per_sample, const A* step,
                                 const A* eps, A* unit, A* scale) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  double sums[3] = {0.0, 0.0, 0.0}, u, s;
  for (int64_t p = b * pieces_per_sample; p < (b + 1) * pieces_per_sample; ++p)
    for (int k = 0; k < 3; ++k) sums[k] += partial[3 * p + k];
  l2_unit_and_scale(sums, step[b], eps[b], &u, &s);
  unit[b] = static_cast<A>(u);
  scale[b] = static_cast<A>(s);
}

int grid_for(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <typename T>
cudaError_t pgd_step_typed(void* out, const void* xa, const void* xn, const void* g, const void* a, const void* b,
                           const void* lo, const void* hi, PieceLayout layout, bool l2, cudaStream_t stream) {
  using A = typename OpMath<T>::type;
  pgd_step_kernel<T><<<grid_for(layout.n), kThreads, 0, stream>>>(
      static_cast<T*>(out), static_cast<const T*>(xa), static_cast<const T*>(xn), static_cast<const T*>(g),
      static_cast<const A*>(a), static_cast<const A*>(b), static_cast<const A*>(lo), static_cast<const A*>(hi), layout,
      l2);
  return cudaGetLastError();
}

template <typename T>
cudaError_t l2_scales_typed(const void* xa, const void* xn, const void* g, double* partial, const void* step,
                            const void* eps, void* unit, void* scale, int64_t batch, PieceLayout layout,
                            cudaStream_t stream) {
  using A = typename OpMath<T>::type;
  const int64_t pieces = layout.pieces();
  l2_sums_kernel<T><<<static_cast<int>(pieces < 65535 * 16 ? pieces : 65535 * 16), kThreads, 0, stream>>>(
      static_cast<const T*>(xa), static_cast<const T*>(xn), static_cast<const T*>(g), partial, layout);
  l2_finish_kernel<A><<<grid_for(batch), kThreads, 0, stream>>>(partial, batch, pieces / batch,
                                                                static_cast<const A*>(step), static_cast<const A*>(eps),
                                                                static_cast<A*>(unit), static_cast<A*>(scale));
  return cudaGetLastError();
}

}  // namespace

int64_t pgd_piece_cuda() { return kPieceCuda; }

cudaError_t launch_pgd_step(DType dtype, void* out, const void* xa, const void* xn, const void* g, const void* a,
                            const void* b, const void* lo, const void* hi, PieceLayout layout, bool l2,
                            cudaStream_t stream) {
  if (layout.n == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, pgd_step_typed, out, xa, xn, g, a, b, lo, hi, layout, l2, stream);
}

// L2: per-sample unit = step / ||g|| and scale = min(1, eps / ||new delta||) into unit/scale [B]
// (op-math dtype), using `partial` ([pieces, 3] float64) as scratch.
cudaError_t launch_pgd_l2_scales(DType dtype, const void* xa, const void* xn, const void* g, double* partial,
                                 const void* step, const void* eps, void* unit, void* scale, int64_t batch,
                                 PieceLayout layout, cudaStream_t stream) {
  if (layout.n == 0) return cudaSuccess;
  return RK_DISPATCH_DTYPE(dtype, l2_scales_typed, xa, xn, g, partial, step, eps, unit, scale, batch, layout, stream);
}

}  // namespace rk
