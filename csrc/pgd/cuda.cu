// The CUDA registration of the pgd kernels (built only with CUDA torch): argument checks,
// device guard and stream, then the raw-pointer launchers of kernel.cu.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cstdint>

#include "common/cuda_host.h"
#include "pgd/host.h"

namespace rk {

int64_t pgd_piece_cuda();
cudaError_t launch_pgd_step(DType dtype, void* out, const void* xa, const void* xn, const void* g, const void* a,
                            const void* b, const void* lo, const void* hi, PieceLayout layout, bool l2,
                            cudaStream_t stream);
cudaError_t launch_pgd_l2_scales(DType dtype, const void* xa, const void* xn, const void* g, double* partial,
                                 const void* step, const void* eps, void* unit, void* scale, int64_t batch,
                                 PieceLayout layout, cudaStream_t stream);

namespace {

void pgd_step_cuda(at::Tensor& out, const at::Tensor& x_adv, const at::Tensor& x_nat, const at::Tensor& grad,
                   const at::Tensor& step, const at::Tensor& eps, const at::Tensor& lo, const at::Tensor& hi, bool l2) {
  check_pgd_args(out, x_adv, x_nat, grad, step, eps, lo, hi);
  const c10::cuda::CUDAGuard guard(x_adv.device());
  const PieceLayout layout = pgd_layout(x_adv, lo, pgd_piece_cuda());
  const DType dtype = kernel_dtype(x_adv.scalar_type());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  at::Tensor a = step, b = eps;
  if (l2) {
    at::Tensor partial = at::empty({layout.pieces(), 3}, x_adv.options().dtype(at::kDouble));
    a = at::empty_like(step), b = at::empty_like(eps);
    check_launch(launch_pgd_l2_scales(dtype, x_adv.data_ptr(), x_nat.data_ptr(), grad.data_ptr(),
                                      partial.data_ptr<double>(), step.data_ptr(), eps.data_ptr(), a.data_ptr(),
                                      b.data_ptr(), x_adv.size(0), layout, stream),
                 "pgd_step_ (L2 scales)");
  }
  check_launch(launch_pgd_step(dtype, out.data_ptr(), x_adv.data_ptr(), x_nat.data_ptr(), grad.data_ptr(),
                               a.data_ptr(), b.data_ptr(), lo.data_ptr(), hi.data_ptr(), layout, l2, stream),
               "pgd_step_");
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CUDA, m) {
  m.impl("pgd_step_", &pgd_step_cuda);
}

}  // namespace rk
