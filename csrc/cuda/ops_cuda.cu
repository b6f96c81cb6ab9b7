// Registers the CUDA implementations of the robustkernels_C schemas (built only with CUDA torch).
// Uses c10/cuda/CUDAStream.h rather than ATen/cuda/CUDAContext.h, which pulls in cuSPARSE.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>

namespace rk {

cudaError_t launch_philox_fill(float* out, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                               cudaStream_t stream);

namespace {

void philox_fill_cuda(at::Tensor& out, int64_t seed, int64_t offset, bool normal) {
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_: out must be float32");
  TORCH_CHECK(out.is_contiguous(), "philox_fill_: out must be contiguous");
  const c10::cuda::CUDAGuard guard(out.device());
  const cudaError_t err = launch_philox_fill(
      out.data_ptr<float>(), out.numel(), static_cast<uint64_t>(seed),
      static_cast<uint64_t>(offset), normal, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "philox_fill_ CUDA launch failed: ", cudaGetErrorString(err));
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CUDA, m) { m.impl("philox_fill_", &philox_fill_cuda); }

}  // namespace rk
