// CPU fill of a float32 buffer from the shared Philox stream (element i uses counter offset + i).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/philox.h"
#include "normal_chunk.h"
#include "simd.h"

namespace rk {

RK_SIMD_CLONES void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t counter) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_normal(seed, counter + i);
}

namespace {

constexpr int64_t kGrain = 16384;

RK_SIMD_CLONES void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t counter) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_uniform(seed, counter + i);
}

void philox_fill_cpu(at::Tensor& out, int64_t seed, int64_t offset, bool normal) {
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_: out must be float32");
  TORCH_CHECK(out.is_contiguous(), "philox_fill_: out must be contiguous");
  float* data = out.data_ptr<float>();
  const uint64_t useed = static_cast<uint64_t>(seed), uoffset = static_cast<uint64_t>(offset);
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    (normal ? fill_normal : fill_uniform)(data + begin, end - begin, useed, uoffset + begin);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) { m.impl("philox_fill_", &philox_fill_cpu); }

}  // namespace rk
