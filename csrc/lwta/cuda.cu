// The CUDA registration of the lwta kernels (built only with CUDA torch): argument checks,
// device guard and stream, then the raw-pointer launchers of kernel.cu.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cstdint>

#include "common/cuda_host.h"
#include "lwta/host.h"

namespace rk {

int64_t lwta_max_units_cuda();
cudaError_t launch_lwta(DType dtype, const void* grad, const void* h, void* out, int64_t outer, int64_t dim_size,
                        int64_t inner, int64_t positions, int64_t competitors, double temperature, int mode,
                        const int64_t* seed_at, uint64_t offset, cudaStream_t stream);

namespace {

at::Tensor lwta_cuda(const at::Tensor* grad, const at::Tensor& h, int64_t competitors, int64_t dim_size, int64_t inner,
                     int64_t positions, double temperature, int64_t mode, const at::Tensor& seed, int64_t offset) {
  const LwtaLayout l = check_lwta_args(h, competitors, dim_size, inner, positions, mode);
  check_seed(seed, h, "lwta");
  TORCH_CHECK(competitors <= lwta_max_units_cuda(), "lwta: the CUDA kernel takes at most ", lwta_max_units_cuda(),
              " competitors");
  const c10::cuda::CUDAGuard guard(h.device());
  at::Tensor out = at::empty_like(h);
  check_launch(launch_lwta(kernel_dtype(h.scalar_type()), grad ? grad->data_ptr() : nullptr, h.data_ptr(),
                           out.data_ptr(), l.outer, dim_size, l.inner, positions, competitors,
                           temperature, static_cast<int>(mode), seed.const_data_ptr<int64_t>(),
                           static_cast<uint64_t>(offset), c10::cuda::getCurrentCUDAStream().stream()),
               "lwta");
  return out;
}

at::Tensor lwta_forward_cuda(const at::Tensor& h, int64_t competitors, int64_t dim_size, int64_t inner,
                             int64_t positions, double temperature, int64_t mode, const at::Tensor& seed,
                             int64_t offset) {
  return lwta_cuda(nullptr, h, competitors, dim_size, inner, positions, temperature, mode, seed, offset);
}

at::Tensor lwta_backward_cuda(const at::Tensor& grad, const at::Tensor& h, int64_t competitors, int64_t dim_size,
                              int64_t inner, int64_t positions, double temperature, int64_t mode,
                              const at::Tensor& seed, int64_t offset) {
  check_lwta_grad(grad, h);
  return lwta_cuda(&grad, h, competitors, dim_size, inner, positions, temperature, mode, seed, offset);
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CUDA, m) {
  m.impl("lwta_forward", &lwta_forward_cuda);
  m.impl("lwta_backward", &lwta_backward_cuda);
}

}  // namespace rk
