"""The L1 threat model's projection: ``project_l1(x, x_nat, eps=, bounds=)`` is the Euclidean
projection of x onto ``{z : ||z - x_nat||_1 <= eps, lo <= z <= hi}`` per sample (the ball and the
box at once, as the L1 attacks of Croce & Hein, "Mind the box", ICML 2021, need).

With ``v = x - x_nat``, the room ``u_i`` to the box on ``v_i``'s side, the projection is
``d_i = sign(v_i) clip(|v_i| - lam, 0, u_i)`` with the smallest ``lam >= 0`` that brings
``sum_i |d_i|`` to ``eps`` (``lam = 0`` when the box-clipped v is inside the ball already).
``f(lam) = sum_i clip(|v_i| - lam, 0, u_i)`` is piecewise linear and non-increasing, with
breakpoints ``|v_i| - u_i`` (a coordinate starts shrinking) and ``|v_i|`` (it reaches 0): lam
comes from the sorted breakpoints and one cumulative sum, in float64.

Why this op is eager and not one of our kernels: the Linf and L2 projections are elementwise
once a per-sample norm is known, so one fused pass carries them (``pgd_step``); the L1 projection
needs a per-sample threshold chosen among 2D breakpoints - a sort or a selection over each
sample - so a fused kernel would be a per-row sort, which is what ``torch.sort`` already is,
followed by one elementwise pass. The same holds for APGD-L1's sparse step (a per-sample top-k).
"""

from __future__ import annotations

import torch

from ..threat import broadcast_bounds, per_sample
from ._validation import check_float_tensor


def l1_threshold(magnitude: torch.Tensor, room: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """[B, 1] the lam >= 0 with ``sum_i clip(magnitude_i - lam, 0, room_i) = eps`` (0 where the
    sum at lam = 0 is within eps already). magnitude, room: [B, D] >= 0, float64; eps: [B]."""
    start = (magnitude - room).clamp_min(0)  # where a coordinate starts shrinking
    inside = torch.minimum(magnitude, room).sum(1) <= eps
    events = torch.cat((start, magnitude), 1)
    slope_change = torch.cat((-torch.ones_like(start), torch.ones_like(magnitude)), 1)
    t, order = events.sort(dim=1)
    slope = slope_change.gather(1, order).cumsum(1)  # slope of f just after each event
    gaps = torch.diff(t, dim=1, append=t[:, -1:])
    f_at = torch.minimum(magnitude, room).sum(1, keepdim=True) + torch.cat(
        (torch.zeros_like(t[:, :1]), (slope * gaps).cumsum(1)[:, :-1]), 1)  # f(t_k)
    k = (f_at > eps[:, None]).sum(1, keepdim=True).clamp(1, t.shape[1]) - 1  # last event with f above eps
    lam = t.gather(1, k) + (f_at.gather(1, k) - eps[:, None]) / (-slope.gather(1, k)).clamp_min(1)
    return torch.where(inside[:, None], torch.zeros_like(lam), lam)


def project_l1(x: torch.Tensor, x_nat: torch.Tensor, *, eps, bounds=(0.0, 1.0)) -> torch.Tensor:
    """The projection of ``x`` [B, ...] onto the L1 ball of radius ``eps`` (a float or [B]) around
    ``x_nat`` intersected with ``bounds`` (floats or per-channel tensors along dim 1). ``x_nat``
    must lie within the bounds. Math in float64; the result in x's dtype."""
    check_float_tensor("x", x)
    check_float_tensor("x_nat", x_nat)
    if x.shape != x_nat.shape or x.device != x_nat.device:
        raise ValueError(f"x {list(x.shape)} on {x.device} and x_nat {list(x_nat.shape)} on {x_nat.device} differ")
    if x.dim() < 1 or x.numel() == 0:
        return x.clone()
    eps_t = per_sample(eps, "eps", x).double()
    lo, hi = (b.double() for b in broadcast_bounds(bounds, x))
    nat = x_nat.double()
    v = x.double() - nat
    room = torch.where(v >= 0, hi - nat, nat - lo).clamp_min(0).expand_as(v)
    rows = x.shape[0]  # a 1-D x is B samples of one element, as for pgd_step
    magnitude, flat_room = v.abs().reshape(rows, -1), room.reshape(rows, -1)
    magnitude = torch.where(torch.isfinite(magnitude), magnitude, flat_room)  # +-inf: as far as the box allows
    lam = l1_threshold(magnitude, flat_room, eps_t)
    d = torch.sign(v).reshape(rows, -1) * torch.minimum((magnitude - lam).clamp_min(0), flat_room)
    return (nat + d.view(x.shape)).to(x.dtype)

