// Unbiased std over a whole tensor: two passes (mean, then squared deviations about it). fp32
// data is summed in float over 512-element chunks (vectorised) and the chunks in float64, or all
// in float64 if the float chunks overflow; the fixed pieces make the result independent of the
// thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "common/simd.h"

namespace rk {
namespace {

constexpr int64_t kStdPiece = 32768;
constexpr int64_t kStdChunk = 512;  // float sums over short chunks (vectorised), chunks summed in double

// sum(x) or sum((x - shift)^2) over [begin, end) of float32 data.
RK_SIMD_FN(double, chunked_sum_f32, (const float* data, int64_t begin, int64_t end, float shift, bool squares),
           (data, begin, end, shift, squares)) {
  double total = 0.0;
  for (int64_t start = begin; start < end; start += kStdChunk) {
    const int64_t stop = std::min(end, start + kStdChunk);
    float chunk = 0.0f;
    if (squares) {
#pragma omp simd reduction(+ : chunk)
      for (int64_t i = start; i < stop; ++i) chunk += (data[i] - shift) * (data[i] - shift);
    } else {
#pragma omp simd reduction(+ : chunk)
      for (int64_t i = start; i < stop; ++i) chunk += data[i];
    }
    total += chunk;
  }
  return total;
}

template <typename scalar_t>
double chunked_sum(const scalar_t* data, int64_t begin, int64_t end, double shift, bool squares) {
  double total = 0.0;
  for (int64_t i = begin; i < end; ++i) {
    const double v = static_cast<double>(data[i]) - (squares ? shift : 0.0);
    total += squares ? v * v : v;
  }
  return total;
}

// wide: fp32 data summed in double too (the fallback when float chunks overflow).
template <typename scalar_t>
double piecewise_sum(const scalar_t* data, int64_t n, double shift, bool squares, bool wide = false) {
  const int64_t pieces = (n + kStdPiece - 1) / kStdPiece;
  std::vector<double> partial(pieces);
  at::parallel_for(0, pieces, 2, [&](int64_t first, int64_t last) {  // small tensors: one thread
    for (int64_t p = first; p < last; ++p) {
      const int64_t begin = p * kStdPiece;
      if constexpr (std::is_same_v<scalar_t, float>) {
        partial[p] = wide ? chunked_sum<float>(data, begin, std::min(n, begin + kStdPiece), shift, squares)
                          : chunked_sum_f32(data, begin, std::min(n, begin + kStdPiece), static_cast<float>(shift),
                                            squares);
      } else {
        partial[p] = chunked_sum<scalar_t>(data, begin, std::min(n, begin + kStdPiece), shift, squares);
      }
    }
  });
  double total = 0.0;
  for (double value : partial) total += value;
  return total;
}

at::Tensor tensor_std_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.is_contiguous(), "tensor_std: x must be contiguous");
  TORCH_CHECK(x.numel() >= 2, "tensor_std: needs at least 2 elements");
  const int64_t n = x.numel();
  at::Tensor out = at::empty({}, x.options().dtype(at::toOpMathType(x.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "tensor_std_cpu", [&] {
    const scalar_t* data = x.const_data_ptr<scalar_t>();
    double mean = piecewise_sum(data, n, 0.0, false) / static_cast<double>(n);
    double squares = piecewise_sum(data, n, mean, true);
    if (!std::isfinite(mean) || !std::isfinite(squares)) {  // float chunks overflowed (|x| > ~1e19): in double
      mean = piecewise_sum(data, n, 0.0, false, true) / static_cast<double>(n);
      squares = piecewise_sum(data, n, mean, true, true);
    }
    out.fill_(std::sqrt(squares / static_cast<double>(n - 1)));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) { m.impl("tensor_std", &tensor_std_cpu); }

}  // namespace rk
