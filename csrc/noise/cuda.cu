// The CUDA registration of the noise kernels (built only with CUDA torch): argument checks,
// device guard and stream, then the raw-pointer launchers of kernel.cu.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cstdint>

#include "common/cuda_host.h"
#include "noise/host.h"

namespace rk {

int64_t noise_piece_cuda();
cudaError_t launch_noise_add(DType dtype, const void* x, const void* alpha, const void* std, void* out,
                             PieceLayout layout, const int64_t* seed_at, uint64_t offset, cudaStream_t stream);
cudaError_t launch_noise_alpha_grad(DType dtype, const void* grad, const void* std, void* out, PieceLayout layout,
                                    const int64_t* seed_at, uint64_t offset, cudaStream_t stream);

namespace {

at::Tensor noise_add_cuda(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& std, int64_t channels,
                          int64_t inner, bool elementwise, const at::Tensor& seed, int64_t offset) {
  check_noise_args(x, alpha, std, channels, inner, elementwise);
  check_seed(seed, x, "noise_add");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty_like(x);
  const PieceLayout layout(x.numel(), channels, inner, elementwise, noise_piece_cuda());
  check_launch(launch_noise_add(kernel_dtype(x.scalar_type()), x.data_ptr(), alpha.data_ptr(), std.data_ptr(),
                                out.data_ptr(), layout, seed.const_data_ptr<int64_t>(), static_cast<uint64_t>(offset),
                                c10::cuda::getCurrentCUDAStream().stream()),
               "noise_add");
  return out;
}

at::Tensor noise_alpha_grad_cuda(const at::Tensor& grad, const at::Tensor& alpha, const at::Tensor& std,
                                 int64_t channels, int64_t inner, bool elementwise, const at::Tensor& seed,
                                 int64_t offset) {
  check_noise_args(grad, alpha, std, channels, inner, elementwise);
  check_seed(seed, grad, "noise_alpha_grad");
  const c10::cuda::CUDAGuard guard(grad.device());
  const PieceLayout layout(grad.numel(), channels, inner, elementwise, noise_piece_cuda());
  at::Tensor out = elementwise ? at::empty_like(alpha) : at::empty({layout.pieces()}, grad.options().dtype(at::kDouble));
  check_launch(launch_noise_alpha_grad(kernel_dtype(grad.scalar_type()), grad.data_ptr(), std.data_ptr(),
                                       out.data_ptr(), layout, seed.const_data_ptr<int64_t>(),
                                       static_cast<uint64_t>(offset), c10::cuda::getCurrentCUDAStream().stream()),
               "noise_alpha_grad");
  return elementwise ? out : reduce_alpha_partials(out, layout, std, alpha.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CUDA, m) {
  m.impl("noise_add", &noise_add_cuda);
  m.impl("noise_alpha_grad", &noise_alpha_grad_cuda);
}

}  // namespace rk
