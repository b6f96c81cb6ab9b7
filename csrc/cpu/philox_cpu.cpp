// CPU fills of a float32 buffer from the shared Philox stream, one or four draws per block.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/philox.h"
#include "random_fill.h"
#include "simd.h"

namespace rk {
namespace {

constexpr int64_t kGrain = 16384;

RK_SIMD_FN(void, fill_uniform, (float* out, int64_t n, uint64_t seed, uint64_t counter), (out, n, seed, counter)) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_uniform(seed, counter + i);
}

RK_SIMD_FN(void, fill_normal, (float* out, int64_t n, uint64_t seed, uint64_t counter), (out, n, seed, counter)) {
  for (int64_t i = 0; i < n; ++i) out[i] = philox_normal(seed, counter + i);
}

template <Draws4 (*draws)(uint64_t, uint64_t)>
RK_HOST_DEVICE void fill_blocks(float* out, int64_t blocks, uint64_t seed, uint64_t first_block) {
  for (int64_t b = 0; b < blocks; ++b) {
    const Draws4 d = draws(seed, first_block + b);
    out[4 * b] = d.v0;
    out[4 * b + 1] = d.v1;
    out[4 * b + 2] = d.v2;
    out[4 * b + 3] = d.v3;
  }
}

RK_SIMD_FN(void, fill_uniform4_blocks, (float* out, int64_t blocks, uint64_t seed, uint64_t first_block),
           (out, blocks, seed, first_block)) {
  fill_blocks<philox_uniform4>(out, blocks, seed, first_block);
}

RK_SIMD_FN(void, fill_normal4_blocks, (float* out, int64_t blocks, uint64_t seed, uint64_t first_block),
           (out, blocks, seed, first_block)) {
  fill_blocks<philox_normal4>(out, blocks, seed, first_block);
}

// Four-per-block stream for elements offset .. offset + n - 1: whole blocks in the vectorised
// loop, the unaligned head and tail one element at a time.
void fill4(float* out, int64_t n, uint64_t seed, uint64_t offset, void (*blocks)(float*, int64_t, uint64_t, uint64_t),
           float (*element)(uint64_t, uint64_t)) {
  int64_t i = 0;
  for (; i < n && ((offset + i) & 3); ++i) out[i] = element(seed, offset + i);
  const int64_t full = (n - i) / 4;
  blocks(out + i, full, seed, (offset + i) >> 2);
  for (i += 4 * full; i < n; ++i) out[i] = element(seed, offset + i);
}

void philox_fill_cpu(at::Tensor& out, int64_t seed, int64_t offset, bool normal, int64_t per_block) {
  TORCH_CHECK(out.scalar_type() == at::kFloat, "philox_fill_: out must be float32");
  TORCH_CHECK(out.is_contiguous(), "philox_fill_: out must be contiguous");
  TORCH_CHECK(per_block == 1 || per_block == 4, "philox_fill_: per_block must be 1 or 4");
  float* data = out.data_ptr<float>();
  const uint64_t useed = static_cast<uint64_t>(seed), uoffset = static_cast<uint64_t>(offset);
  at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
    float* chunk = data + begin;
    const uint64_t counter = uoffset + begin;
    if (per_block == 1) {
      (normal ? fill_normal : fill_uniform)(chunk, end - begin, useed, counter);
    } else if (normal) {
      fill_normal4(chunk, end - begin, useed, counter);
    } else {
      fill_uniform4(chunk, end - begin, useed, counter);
    }
  });
}

}  // namespace

void fill_normal4(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  fill4(out, n, seed, offset, fill_normal4_blocks, philox_normal4_at);
}

void fill_uniform4(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  fill4(out, n, seed, offset, fill_uniform4_blocks, philox_uniform4_at);
}

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) { m.impl("philox_fill_", &philox_fill_cpu); }

}  // namespace rk
