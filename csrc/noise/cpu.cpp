// Fused noise injection on the CPU: out = x + std * alpha[(i / inner) % channels] * eta_i, with
// eta_i = philox_normal(seed, offset + i) generated in-kernel; the backward regenerates eta.
//
// x is contiguous with n elements. Layer-wise alpha: channels = 1, inner = n. Per-channel:
// channels = C, inner = elements per channel slice. Element-wise: `elementwise`, alpha[i].
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "noise/host.h"
#include "common/random_fill.h"

namespace rk {
namespace {

constexpr int64_t kPiece = 16384;  // elements per parallel task

// Runs body(piece, begin, end, channel) in parallel over the pieces of the layout.
template <typename Body>
void for_each_piece(const PieceLayout& layout, Body&& body) {
  // at least 4 pieces (64K elements) per task: small tensors stay on one thread
  at::parallel_for(0, layout.pieces(), 65536 / kPiece, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) body(p, layout.begin_of(p), layout.end_of(p), layout.channel_of(p));
  });
}

// sum(g * eta): each product in the op-math type, summed in double (as the CUDA and Triton
// kernels), in a fixed lane-wise order (a strictly sequential sum would not vectorise).
template <typename scalar_t, typename opmath_t>
double dot(const scalar_t* g, const float* eta, int64_t count) {
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < count; ++j)
    total += static_cast<double>(static_cast<opmath_t>(g[j]) * static_cast<opmath_t>(eta[j]));
  return total;
}

at::Tensor noise_add_cpu(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& std, int64_t channels,
                         int64_t inner, bool elementwise, const at::Tensor& seed_tensor, int64_t offset) {
  check_noise_args(x, alpha, std, channels, inner, elementwise);
  const uint64_t seed = cpu_seed(seed_tensor, x, "noise_add");
  at::Tensor out = at::empty_like(x);
  if (x.numel() == 0) return out;
  const PieceLayout layout(x.numel(), channels, inner, elementwise, kPiece);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "noise_add_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* x_data = x.const_data_ptr<scalar_t>();
    const opmath_t* a_data = alpha.const_data_ptr<opmath_t>();
    const opmath_t scale = std.item<opmath_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    for_each_piece(layout, [&](int64_t, int64_t begin, int64_t end, int64_t channel) {
      for_each_normal_chunk(begin, end, seed, offset, [&](int64_t start, int64_t count, const float* eta) {
        const scalar_t* xs = x_data + start;
        scalar_t* os = out_data + start;
        if (layout.elementwise) {
          const opmath_t* as = a_data + start;
          for (int64_t j = 0; j < count; ++j)
            os[j] = static_cast<scalar_t>(static_cast<opmath_t>(xs[j]) + scale * as[j] * static_cast<opmath_t>(eta[j]));
        } else {
          const opmath_t s = scale * a_data[channel];
          for (int64_t j = 0; j < count; ++j)
            os[j] = static_cast<scalar_t>(static_cast<opmath_t>(xs[j]) + s * static_cast<opmath_t>(eta[j]));
        }
      });
    });
  });
  return out;
}

// d loss / d alpha (flat, op-math dtype): the sum of grad * eta over what each alpha covers, times
// std; elementwise (grad * eta) * std - one association on every backend.
at::Tensor noise_alpha_grad_cpu(const at::Tensor& grad, const at::Tensor& alpha, const at::Tensor& std,
                                int64_t channels, int64_t inner, bool elementwise, const at::Tensor& seed_tensor,
                                int64_t offset) {
  check_noise_args(grad, alpha, std, channels, inner, elementwise);
  const uint64_t seed = cpu_seed(seed_tensor, grad, "noise_alpha_grad");
  const PieceLayout layout(grad.numel(), channels, inner, elementwise, kPiece);
  at::Tensor result;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "noise_alpha_grad_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* g_data = grad.const_data_ptr<scalar_t>();
    const opmath_t scale = std.item<opmath_t>();
    if (elementwise) {
      result = at::empty_like(alpha);
      opmath_t* r_data = result.data_ptr<opmath_t>();
      for_each_piece(layout, [&](int64_t, int64_t begin, int64_t end, int64_t) {
        for_each_normal_chunk(begin, end, seed, offset, [&](int64_t start, int64_t count, const float* eta) {
          for (int64_t j = 0; j < count; ++j)
            r_data[start + j] = (static_cast<opmath_t>(g_data[start + j]) * static_cast<opmath_t>(eta[j])) * scale;
        });
      });
      return;
    }
    // One partial sum per piece (in double), reduced afterwards: deterministic for any thread count.
    at::Tensor partial = at::empty({layout.pieces()}, grad.options().dtype(at::kDouble));
    double* p_data = partial.data_ptr<double>();
    for_each_piece(layout, [&](int64_t piece, int64_t begin, int64_t end, int64_t) {
      double total = 0.0;
      for_each_normal_chunk(begin, end, seed, offset, [&](int64_t start, int64_t count, const float* eta) {
        total += dot<scalar_t, opmath_t>(g_data + start, eta, count);
      });
      p_data[piece] = total;
    });
    result = reduce_alpha_partials(partial, layout, std, alpha.scalar_type());
  });
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) {
  m.impl("noise_add", &noise_add_cpu);
  m.impl("noise_alpha_grad", &noise_alpha_grad_cpu);
}

}  // namespace rk
