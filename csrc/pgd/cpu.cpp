// Fused PGD step on the CPU. Linf: one pass. L2: one pass of per-piece sums (||g||^2,
// <delta, g>, ||delta||^2), then one elementwise pass; no second pass for the new delta's norm.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "pgd/math.h"
#include "pgd/host.h"
#include "common/simd.h"

#include <cmath>
#include <vector>

namespace rk {
namespace {

constexpr int64_t kPiece = 16384;

RK_SIMD_FN(void, linf_run_f32,
           (float* out, const float* xa, const float* xn, const float* g, int64_t n, float step, float eps, float lo,
            float hi),
           (out, xa, xn, g, n, step, eps, lo, hi)) {
  for (int64_t i = 0; i < n; ++i) out[i] = pgd_linf(xa[i], xn[i], g[i], step, eps, lo, hi);
}

RK_SIMD_FN(void, l2_run_f32,
           (float* out, const float* xa, const float* xn, const float* g, int64_t n, float unit, float scale, float lo,
            float hi),
           (out, xa, xn, g, n, unit, scale, lo, hi)) {
  for (int64_t i = 0; i < n; ++i) out[i] = pgd_l2(xa[i], xn[i], g[i], unit, scale, lo, hi);
}

RK_SIMD_FN(void, l2_sums_f32, (const float* xa, const float* xn, const float* g, int64_t n, double* sums),
           (xa, xn, g, n, sums)) {
  float gg = 0, dg = 0, dd = 0;
#pragma omp simd reduction(+ : gg, dg, dd)
  for (int64_t i = 0; i < n; ++i) {
    const float d = xa[i] - xn[i], gi = finite_or_zero(g[i]);
    gg += gi * gi;
    dg += d * gi;
    dd += d * d;
  }
  sums[0] += gg, sums[1] += dg, sums[2] += dd;
}

// One run of a row: Linf (a = step, b = eps) or L2 (a = unit, b = scale); float goes through the
// AVX2/AVX-512 clones, other dtypes convert element by element.
template <typename scalar_t, typename opmath_t>
void step_run(bool l2, scalar_t* out, const scalar_t* xa, const scalar_t* xn, const scalar_t* g, int64_t n,
              opmath_t a, opmath_t b, opmath_t lo, opmath_t hi) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    (l2 ? l2_run_f32 : linf_run_f32)(out, xa, xn, g, n, a, b, lo, hi);
  } else {
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<scalar_t>(l2 ? pgd_l2<opmath_t>(xa[i], xn[i], g[i], a, b, lo, hi)
                                        : pgd_linf<opmath_t>(xa[i], xn[i], g[i], a, b, lo, hi));
  }
}

template <typename scalar_t>
void l2_sums_double(const scalar_t* xa, const scalar_t* xn, const scalar_t* g, int64_t n, double* sums) {
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(xa[i]) - static_cast<double>(xn[i]),
                 gi = finite_or_zero(static_cast<double>(g[i]));
    sums[0] += gi * gi, sums[1] += d * gi, sums[2] += d * d;
  }
}

template <typename scalar_t>
void l2_sums(const scalar_t* xa, const scalar_t* xn, const scalar_t* g, int64_t n, double* sums) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    constexpr int64_t kChunk = 1024;  // float lanes per chunk, chunks accumulated in double
    for (int64_t start = 0; start < n; start += kChunk) {
      const int64_t len = std::min(kChunk, n - start);
      double chunk[3] = {0.0, 0.0, 0.0};
      l2_sums_f32(xa + start, xn + start, g + start, len, chunk);
      if (!std::isfinite(chunk[0] + chunk[1] + chunk[2])) {  // float squares overflowed (|d| > ~1e19)
        chunk[0] = chunk[1] = chunk[2] = 0.0;
        l2_sums_double(xa + start, xn + start, g + start, len, chunk);
      }
      for (int k = 0; k < 3; ++k) sums[k] += chunk[k];
    }
  } else {
    l2_sums_double(xa, xn, g, n, sums);
  }
}

// Many small samples (B in the millions, 1-D inputs), scalar bounds: one pass per sample over its
// few elements, samples split across threads, instead of one piece per sample.
constexpr int64_t kSmallSample = 256;
constexpr int64_t kBlockSamples = 256, kBlockElements = 4096;

// L2 on small float samples, vectorised across samples: a block's sums (in double, each sample's
// elements in order, as l2_sums_double), then l2_unit_and_scale written out with selects for
// branches (calling it through its array and pointers left this loop 1.3-1.7x slower on AVX-512),
// then one contiguous elementwise pass. Same operations in the same order: the same bits as the
// per-sample path (no FMA contraction in this build).
RK_SIMD_FN(void, l2_small_f32,
           (float* out, const float* xa, const float* xn, const float* g, int64_t count, int64_t per,
            const float* step, const float* eps, float lo, float hi),
           (out, xa, xn, g, count, per, step, eps, lo, hi)) {
  const int64_t block = std::min(kBlockSamples, std::max<int64_t>(1, kBlockElements / per));
  double gg[kBlockSamples], dg[kBlockSamples], dd[kBlockSamples];
  float unit[kBlockElements], scale[kBlockElements];
  for (int64_t b0 = 0; b0 < count; b0 += block) {
    const int64_t nb = std::min(block, count - b0), base = b0 * per;
    for (int64_t k = 0; k < nb; ++k) gg[k] = dg[k] = dd[k] = 0.0;
    for (int64_t i = 0; i < per; ++i) {
#pragma omp simd
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t at = base + k * per + i;
        const double d = static_cast<double>(xa[at]) - static_cast<double>(xn[at]),
                     gi = finite_or_zero(static_cast<double>(g[at]));
        gg[k] += gi * gi, dg[k] += d * gi, dd[k] += d * d;
      }
    }
#pragma omp simd
    for (int64_t k = 0; k < nb; ++k) {
      const double g_norm = std::sqrt(gg[k]), e = static_cast<double>(eps[b0 + k]);
      const double u = g_norm > 0 ? static_cast<double>(step[b0 + k]) / g_norm : 0.0;
      const double squared = u > 0 ? dd[k] + 2 * u * dg[k] + u * u * gg[k] : dd[k];
      const double norm = squared != squared ? HUGE_VAL : std::sqrt(squared > 0 ? squared : 0.0);
      gg[k] = u, dd[k] = norm > e ? e / norm : 1.0;
    }
    for (int64_t k = 0; k < nb; ++k)
      for (int64_t i = 0; i < per; ++i)
        unit[k * per + i] = static_cast<float>(gg[k]), scale[k * per + i] = static_cast<float>(dd[k]);
#pragma omp simd
    for (int64_t j = 0; j < nb * per; ++j)
      out[base + j] = pgd_l2(xa[base + j], xn[base + j], g[base + j], unit[j], scale[j], lo, hi);
  }
}

template <typename scalar_t, typename opmath_t>
void small_samples(bool l2, scalar_t* o, const scalar_t* xa, const scalar_t* xn, const scalar_t* g, int64_t batch,
                   int64_t per, const opmath_t* step, const opmath_t* eps, opmath_t lo, opmath_t hi) {
  at::parallel_for(0, batch, std::max<int64_t>(1, 65536 / per), [&](int64_t first, int64_t last) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (l2) return l2_small_f32(o + first * per, xa + first * per, xn + first * per, g + first * per, last - first,
                                  per, step + first, eps + first, lo, hi);
    }
    for (int64_t b = first; b < last; ++b) {
      const int64_t base = b * per;
      opmath_t a = step[b], c = eps[b];
      if (l2) {
        double sums[3] = {0.0, 0.0, 0.0}, u, s;
        l2_sums_double(xa + base, xn + base, g + base, per, sums);
        l2_unit_and_scale(sums, step[b], eps[b], &u, &s);
        a = static_cast<opmath_t>(u), c = static_cast<opmath_t>(s);
      }
      for (int64_t i = base; i < base + per; ++i)
        o[i] = static_cast<scalar_t>(l2 ? pgd_l2<opmath_t>(xa[i], xn[i], g[i], a, c, lo, hi)
                                        : pgd_linf<opmath_t>(xa[i], xn[i], g[i], a, c, lo, hi));
    }
  });
}

template <typename Body>
void for_each_piece(const PieceLayout& layout, Body&& body) {
  at::parallel_for(0, layout.pieces(), 65536 / kPiece, [&](int64_t first, int64_t last) {  // small: one thread
    for (int64_t p = first; p < last; ++p) body(p, layout.begin_of(p), layout.end_of(p));
  });
}

void pgd_step_cpu(at::Tensor& out, const at::Tensor& x_adv, const at::Tensor& x_nat, const at::Tensor& grad,
                  const at::Tensor& step, const at::Tensor& eps, const at::Tensor& lo, const at::Tensor& hi, bool l2) {
  check_pgd_args(out, x_adv, x_nat, grad, step, eps, lo, hi);
  if (x_adv.numel() == 0) return;
  const PieceLayout layout = pgd_layout(x_adv, lo, kPiece);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x_adv.scalar_type(), "pgd_step_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t *xa = x_adv.const_data_ptr<scalar_t>(), *xn = x_nat.const_data_ptr<scalar_t>(),
                   *g = grad.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const opmath_t *lo_p = lo.const_data_ptr<opmath_t>(), *hi_p = hi.const_data_ptr<opmath_t>();
    const int64_t per_sample = x_adv.numel() / x_adv.size(0);
    if (per_sample < kSmallSample && lo.numel() == 1) {
      small_samples<scalar_t, opmath_t>(l2, o, xa, xn, g, x_adv.size(0), per_sample, step.const_data_ptr<opmath_t>(),
                                        eps.const_data_ptr<opmath_t>(), lo_p[0], hi_p[0]);
      return;
    }
    if (!l2) {
      const opmath_t *step_p = step.const_data_ptr<opmath_t>(), *eps_p = eps.const_data_ptr<opmath_t>();
      for_each_piece(layout, [&](int64_t p, int64_t begin, int64_t end) {
        const int64_t b = layout.sample_of(p), c = layout.channel_of(p);
        step_run<scalar_t, opmath_t>(false, o + begin, xa + begin, xn + begin, g + begin, end - begin, step_p[b],
                                     eps_p[b], lo_p[c], hi_p[c]);
      });
      return;
    }
    const int64_t batch = x_adv.size(0), pieces_per_sample = layout.pieces() / batch;
    const opmath_t *step_p = step.const_data_ptr<opmath_t>(), *eps_p = eps.const_data_ptr<opmath_t>();
    if (pieces_per_sample == 1 && lo.numel() == 1) {  // a sample is one piece: step it while it is in cache
      for_each_piece(layout, [&](int64_t p, int64_t begin, int64_t end) {
        double sums[3] = {0.0, 0.0, 0.0}, u, s;
        l2_sums<scalar_t>(xa + begin, xn + begin, g + begin, end - begin, sums);
        l2_unit_and_scale(sums, step_p[p], eps_p[p], &u, &s);
        step_run<scalar_t, opmath_t>(true, o + begin, xa + begin, xn + begin, g + begin, end - begin,
                                     static_cast<opmath_t>(u), static_cast<opmath_t>(s), lo_p[0], hi_p[0]);
      });
      return;
    }
    // Pass 1: per-piece sums, reduced per sample in a fixed order, then per-sample (unit, scale).
    std::vector<double> partial(3 * layout.pieces(), 0.0);
    for_each_piece(layout, [&](int64_t p, int64_t begin, int64_t end) {
      l2_sums<scalar_t>(xa + begin, xn + begin, g + begin, end - begin, partial.data() + 3 * p);
    });
    std::vector<opmath_t> unit(batch), scale(batch);
    for (int64_t b = 0; b < batch; ++b) {
      double sums[3] = {0.0, 0.0, 0.0}, u, s;
      for (int64_t p = b * pieces_per_sample; p < (b + 1) * pieces_per_sample; ++p)
        for (int k = 0; k < 3; ++k) sums[k] += partial[3 * p + k];
      l2_unit_and_scale(sums, step_p[b], eps_p[b], &u, &s);
      unit[b] = static_cast<opmath_t>(u), scale[b] = static_cast<opmath_t>(s);
    }
    const opmath_t *unit_p = unit.data(), *scale_p = scale.data();
    // Pass 2: step, project, clamp.
    for_each_piece(layout, [&](int64_t p, int64_t begin, int64_t end) {
      const int64_t b = layout.sample_of(p), c = layout.channel_of(p);
      step_run<scalar_t, opmath_t>(true, o + begin, xa + begin, xn + begin, g + begin, end - begin, unit_p[b],
                                   scale_p[b], lo_p[c], hi_p[c]);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(robustkernels_C, CPU, m) { m.impl("pgd_step_", &pgd_step_cpu); }

}  // namespace rk
