// The CUDA registration of the philox kernels (built only with CUDA torch): argument checks,
// device guard and stream, then the raw-pointer launchers of kernel.cu.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

#include "common/cuda_host.h"

namespace rk {

cudaError_t launch_philox_fill(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                               int per_block, cudaStream_t stream);

namespace {

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
}

}  // namespace rk
