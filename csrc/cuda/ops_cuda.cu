// Registers the CUDA implementations of the robustkernels_C schemas (built only with CUDA torch).
// Uses c10/cuda/CUDAStream.h rather than ATen/cuda/CUDAContext.h, which pulls in cuSPARSE.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cstdint>

#include "../lwta_host.h"
#include "../noise_host.h"
#include "../pgd_host.h"
#include "dtype.h"

namespace rk {

cudaError_t launch_philox_fill(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                               int per_block, cudaStream_t stream);

int64_t noise_piece_cuda();
cudaError_t launch_noise_add(DType dtype, const void* x, const void* alpha, const void* std, void* out,
                             PieceLayout layout, const int64_t* seed_at, uint64_t offset, cudaStream_t stream);
cudaError_t launch_noise_alpha_grad(DType dtype, const void* grad, const void* std, void* out, PieceLayout layout,
                                    const int64_t* seed_at, uint64_t offset, cudaStream_t stream);

int64_t pgd_piece_cuda();
cudaError_t launch_pgd_step(DType dtype, void* out, const void* xa, const void* xn, const void* g, const void* a,
                            const void* b, const void* lo, const void* hi, PieceLayout layout, bool l2,
                            cudaStream_t stream);
cudaError_t launch_pgd_l2_scales(DType dtype, const void* xa, const void* xn, const void* g, double* partial,
                                 const void* step, const void* eps, void* unit, void* scale, int64_t batch,
                                 PieceLayout layout, cudaStream_t stream);

int64_t lwta_max_units_cuda();
cudaError_t launch_lwta(DType dtype, const void* grad, const void* h, void* out, int64_t outer, int64_t dim_size,
                        int64_t inner, int64_t positions, int64_t competitors, double temperature, int mode,
                        const int64_t* seed_at, uint64_t offset, cudaStream_t stream);

namespace {

DType kernel_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    case at::kDouble: return DType::kFloat64;
    default: TORCH_CHECK(false, "robustkernels CUDA kernels take fp32/fp16/bf16/fp64, got ", type);
  }
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, " CUDA launch failed: ", cudaGetErrorString(err));
}

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

void philox_fill_cuda(at::Tensor& out, int64_t seed, int64_t offset, bool normal, int64_t per_block) {
  TORCH_CHECK(per_block == 1 || per_block == 4, "philox_fill_: per_block must be 1 or 4");
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_: out must be float32");
  TORCH_CHECK(out.is_contiguous(), "philox_fill_: out must be contiguous");
  const c10::cuda::CUDAGuard guard(out.device());
  check_launch(launch_philox_fill(out.data_ptr<float>(), out.numel(), static_cast<uint64_t>(seed),
                                  static_cast<uint64_t>(offset), normal, static_cast<int>(per_block),
                                  c10::cuda::getCurrentCUDAStream().stream()),
               "philox_fill_");
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CUDA, m) {
  m.impl("philox_fill_", &philox_fill_cuda);
  m.impl("noise_add", &noise_add_cuda);
  m.impl("noise_alpha_grad", &noise_alpha_grad_cuda);
  m.impl("pgd_step_", &pgd_step_cuda);
  m.impl("lwta_forward", &lwta_forward_cuda);
  m.impl("lwta_backward", &lwta_backward_cuda);
}

}  // namespace rk
