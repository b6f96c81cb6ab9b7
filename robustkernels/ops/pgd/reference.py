"""The PGD update in eager PyTorch: step, project onto the eps-ball around x_nat, clamp.

Math in fp32 (fp64 for fp64 inputs), result in the input dtype. ``step``/``eps`` are [B];
``lo``/``hi`` are [C] per-channel bounds along dim 1 (or [1] for scalar bounds).
"""

from __future__ import annotations

import torch


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (x.dim() - 1))


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if v.numel() == 1:
        return v.view([1] * x.dim())
    return v.view(1, -1, *[1] * (x.dim() - 2))


def pgd_step(x_adv, x_nat, grad, step, eps, lo, hi, l2: bool) -> torch.Tensor:
    """Linf: ``x_adv + step * sign(grad)``; L2: ``x_adv + step * grad / ||grad||_2`` per sample
    (no step where the gradient is zero); then projection onto the eps-ball and the clamp.
    Gradient entries that are NaN or +-inf count as 0; ``eps = inf`` means no projection. L2: a
    sample whose new perturbation has a NaN or infinite norm is projected onto x_nat (scale 0;
    its non-finite elements come out NaN). Linf: a NaN in x_nat propagates to its element."""
    if x_adv.numel() == 0:
        return x_adv.clone()
    compute = torch.float64 if x_adv.dtype == torch.float64 else torch.float32
    xa, xn, g = x_adv.to(compute), x_nat.to(compute), grad.to(compute)
    g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))  # NaN / inf entries count as 0
    s, e = _per_sample(step.to(compute), xa), _per_sample(eps.to(compute), xa)
    if l2:
        norm = _per_sample(g.reshape(len(g), -1).double().norm(dim=1).to(compute), xa)  # norms summed in fp64
        unit = torch.where(norm > 0, g / norm, torch.zeros_like(g))
        delta = xa + s * unit - xn
        delta_norm = _per_sample(delta.reshape(len(delta), -1).double().norm(dim=1).to(compute), xa)
        delta_norm = torch.where(delta_norm.isnan(), torch.inf, delta_norm)  # a NaN delta counts as infinitely far
        scale = torch.where(delta_norm > e, e / delta_norm, torch.ones_like(delta_norm))
        out = xn + delta * scale
    else:
        out = torch.min(torch.max(xa + s * torch.sign(g), xn - e), xn + e)
    out = torch.min(torch.max(out, _per_channel(lo.to(compute), xa)), _per_channel(hi.to(compute), xa))
    return out.to(x_adv.dtype)
