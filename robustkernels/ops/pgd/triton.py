"""Triton PGD step. Programs (rows x pieces, on grid axis 0) over x viewed as [B, C, S]: a
program stays inside one (sample, channel) row, so it loads one step/eps and one pair of bounds.
L2 first reduces (||g||^2, <delta, g>, ||delta||^2) per program in float64 (delta formed in
float64, as on the CPU), then the caller turns the per-sample sums into (unit, scale) and the
elementwise kernel applies them."""

import torch
import triton
import triton.language as tl

from ...kernels.triton.launch import launch, programs

_MAX_BLOCK = 1024


@triton.jit
def _clamp(v, lo, hi):
    v = tl.where(v < lo, lo, v)  # selects, not tl.maximum/minimum: a NaN stays NaN, as in the C++ kernels
    return tl.where(v > hi, hi, v)


@triton.jit
def _pgd_step_kernel(out_ptr, xa_ptr, xn_ptr, g_ptr, a_ptr, b_ptr, lo_ptr, hi_ptr, inner, channels, pieces,
                     L2: tl.constexpr, BLOCK: tl.constexpr):
    """Linf: a = step, b = eps. L2: a = step / ||g||, b = scale (per sample)."""
    pid = tl.program_id(0).to(tl.int64)
    row = pid // pieces
    in_row = (pid % pieces) * BLOCK + tl.arange(0, BLOCK)
    mask = in_row < inner
    idx = row * inner + in_row
    sample, channel = row // channels, row % channels
    xa = tl.load(xa_ptr + idx, mask=mask).to(tl.float32)
    xn = tl.load(xn_ptr + idx, mask=mask).to(tl.float32)
    g = tl.load(g_ptr + idx, mask=mask).to(tl.float32)
    g = tl.where(g - g == 0, g, 0.0)  # NaN / inf entries count as 0, as on every backend
    a, b = tl.load(a_ptr + sample), tl.load(b_ptr + sample)
    if L2:
        v = xn + ((xa - xn) + a * g) * b
    else:
        sign = (g > 0).to(tl.float32) - (g < 0).to(tl.float32)
        v = _clamp(xa + a * sign, xn - b, xn + b)
    v = _clamp(v, tl.load(lo_ptr + channel), tl.load(hi_ptr + channel))
    v = tl.where(xn == xn, v, xn)  # a NaN in x_nat propagates, as torch's min/max do
    tl.store(out_ptr + idx, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _l2_sums_kernel(xa_ptr, xn_ptr, g_ptr, sums_ptr, inner, pieces, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    row = pid // pieces
    in_row = (pid % pieces) * BLOCK + tl.arange(0, BLOCK)
    mask = in_row < inner
    idx = row * inner + in_row
    xa = tl.load(xa_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    xn = tl.load(xn_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    g = tl.where(g - g == 0, g, 0.0).to(tl.float64)  # sums in fp64: squares of |d| > 1e19 overflow fp32
    d = xa.to(tl.float64) - xn.to(tl.float64)  # widened first: |x_adv - x_nat| may exceed fp32's range
    base = sums_ptr + pid * 3
    tl.store(base, tl.sum(g * g, axis=0))
    tl.store(base + 1, tl.sum(d * g, axis=0))
    tl.store(base + 2, tl.sum(d * d, axis=0))


def _l2_unit_and_scale(sums, step, eps):
    """Per-sample (step / ||g||, min(1, eps / ||delta + step * g / ||g||||)) from [B, 3] sums."""
    gg, dg, dd = sums.unbind(1)
    g_norm = gg.sqrt()
    unit = torch.where(g_norm > 0, step.double() / g_norm, torch.zeros_like(g_norm))
    moved = torch.where(unit > 0, dd + 2 * unit * dg + unit * unit * gg, dd)  # no step: ||delta|| alone
    new_norm = torch.where(moved.isnan(), torch.inf, moved.clamp_min(0).sqrt())  # NaN: an infinite or NaN delta
    scale = torch.where(new_norm > eps.double(), eps.double() / new_norm, torch.ones_like(new_norm))
    return unit.to(step.dtype), scale.to(step.dtype)


def pgd_step(out, x_adv, x_nat, grad, step, eps, lo, hi, l2):
    if x_adv.dtype == torch.float64:
        raise TypeError("the triton PGD kernels take fp32/bf16/fp16 (math in fp32), not float64")
    n = x_adv.numel()
    if n == 0:
        return
    batch, channels = x_adv.shape[0], lo.numel()
    inner = n // (batch * channels)
    block = min(_MAX_BLOCK, triton.next_power_of_2(inner))
    rows, pieces = batch * channels, triton.cdiv(inner, block)
    grid = programs(rows, pieces)
    a, b = step, eps
    if l2:
        partial = torch.empty((rows, pieces, 3), dtype=torch.float64, device=x_adv.device)
        launch(_l2_sums_kernel, grid, x_adv, x_nat, grad, partial, inner, pieces, BLOCK=block)
        a, b = _l2_unit_and_scale(partial.view(batch, -1, 3).sum(1), step, eps)
    launch(_pgd_step_kernel, grid, out, x_adv, x_nat, grad, a, b, lo, hi, inner, channels, pieces, L2=l2,
           BLOCK=block)
