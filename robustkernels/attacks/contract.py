"""The last step of every attack call: its point held to the contract - finite, inside the
eps-ball around x and inside the bounds, in x's dtype.

Rounding: an attack computes in fp32 (or 16-bit arithmetic) and rounds, which can carry a point
up to about an ulp of its magnitude outside - in fp32 ``x + eps`` rounds up to half an ulp of
|x| (inputs in [0, 255]: 8e-6), in bf16 near 0.5 up to 0.004, 12% of eps 8/255. So the check
allows what rounding explains (``finfo(dtype).eps`` times the point's norm) and refuses the rest,
naming the attack: a ``perturb`` that forgot to project. 16-bit points, whose rounding matters at
the scale of eps, are then projected exactly: Linf and the bounds element by element (fp64, then
one ulp towards x where rounding carried an element out); L2 / L1 by the largest fp64 scale of
the perturbation whose rounded point is inside (bisection), so the budget is kept. fp32 / fp64
points are returned as they are.
"""

from __future__ import annotations

import torch

from ..threat import Bounds, ThreatModel, lp_norms

HALF = (torch.float16, torch.bfloat16)
BISECTIONS = 16  # L2 / L1: the scale to 2**-16 of its best value


def held_to_contract(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, bounds: Bounds,
                     who: str) -> torch.Tensor:
    """``x_adv`` [B, ...] checked (and for 16-bit, projected) as the module says."""
    _check_form(x_adv, x, who)
    half = x_adv.dtype in HALF  # 16 bits: measured in fp64; else in x's dtype, within the rounding slack
    a, xd = (x_adv.double(), x.double()) if half else (x_adv, x)
    if not bool(a.isfinite().all()):
        raise RuntimeError(f"{who} returned {int((~a.flatten(1).isfinite().all(dim=1)).sum())} of {len(a)} points that "
                           f"are not finite (NaN or inf; eps {threat.eps:g}, bounds {_short(threat.bounds)}): an eps "
                           "or bounds this attack cannot use, or a model that returned NaN")
    slack = torch.finfo(x_adv.dtype).eps * lp_norms(a, threat.norm).clamp(min=1.0)  # what rounding explains
    distance = lp_norms(a - xd, threat.norm)
    far = distance - (threat.eps * (1 + 1e-5) + 1e-7) - slack
    lo, hi = bounds.lo_b.to(a.dtype), bounds.hi_b.to(a.dtype)
    off = ((lo - a).clamp(min=0) + (a - hi).clamp(min=0)).flatten(1).amax(dim=1)
    bad = (far > 0) | (off > slack + 1e-7)
    if bool(bad.any()):
        raise RuntimeError(f"{who} returned {int(bad.sum())} of {len(bad)} points outside the eps-ball or the bounds "
                           f"(largest {threat.norm} distance {float(distance.max()):.6g}, eps {threat.eps:.6g}): its "
                           "perturb must project its iterates (ops.pgd_step, or threat.prepare(x).clamp)")
    return _projected(threat, x_adv, x, bounds) if half else x_adv


def _check_form(x_adv, x: torch.Tensor, who: str) -> None:
    """A RuntimeError naming the attack unless x_adv is a tensor of x's shape, dtype and device."""
    tensor = isinstance(x_adv, torch.Tensor)
    if tensor and (x_adv.shape, x_adv.dtype, x_adv.device) == (x.shape, x.dtype, x.device):
        return
    got = f"{list(x_adv.shape)} {x_adv.dtype} on {x_adv.device}" if tensor else type(x_adv).__name__
    raise RuntimeError(f"{who} returned {got} for x of {list(x.shape)} {x.dtype} on {x.device}: its perturb must "
                       "return a tensor of x's shape, dtype and device")


def _short(bounds) -> str:
    """The bounds on one line: per-channel tensors as their values (or shape, when large)."""
    def one(b):
        if not isinstance(b, torch.Tensor):
            return f"{b:g}" if isinstance(b, float) else repr(b)
        return str([round(v, 6) for v in b.flatten().tolist()]) if b.numel() <= 8 else f"tensor{list(b.shape)}"
    return f"({one(bounds[0])}, {one(bounds[1])})"


def _projected(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """The 16-bit point projected in fp64 and rounded back without leaving (see the module)."""
    a, xd = x_adv.double(), x.double()
    lo, hi = bounds.lo_b.double(), bounds.hi_b.double()
    if threat.norm == "linf":
        a = torch.minimum(torch.maximum(a, xd - threat.eps), xd + threat.eps)
        rounded = torch.minimum(torch.maximum(a, lo), hi).to(x_adv.dtype)  # x is inside: no further away
        return torch.where(_off(rounded, x, lo, hi, threat.eps), toward(rounded, x), rounded)
    delta = a - xd
    high = torch.ones(len(x), dtype=torch.float64, device=x.device)  # 1, or a scale whose rounded point is outside
    whole = _at(xd, delta, high, lo, hi, x_adv.dtype)
    inside = _inside(threat, whole, x)
    if inside.all():
        return whole
    low = torch.zeros_like(high)  # a scale whose rounded point is inside
    for _ in range(BISECTIONS):
        mid = (low + high) / 2
        ok = _inside(threat, _at(xd, delta, mid, lo, hi, x_adv.dtype), x)
        low, high = torch.where(ok, mid, low), torch.where(ok, high, mid)
    return _at(xd, delta, torch.where(inside, 1.0, low), lo, hi, x_adv.dtype)


def _at(xd, delta, scale, lo, hi, dtype) -> torch.Tensor:
    """x + scale * delta (scale [B]) within the bounds, rounded to ``dtype``."""
    point = xd + delta * scale.view(-1, *[1] * (delta.dim() - 1))
    return torch.minimum(torch.maximum(point, lo), hi).to(dtype)


def _inside(threat: ThreatModel, point: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] bool: the rounded point is inside the ball, exactly (fp64)."""
    return lp_norms(point.double() - x.double(), threat.norm) <= threat.eps


def _off(point, x, lo, hi, eps) -> torch.Tensor:
    """Elements [B, ...] of a rounded Linf point outside the box or the bounds (fp64)."""
    p = point.double()
    return ((p - x.double()).abs() > eps) | (p < lo) | (p > hi)


def toward(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The next 16-bit value after ``value`` towards ``target`` (``torch.nextafter`` on the bits:
    CUDA has nextafter for Half only from torch 2.6). Elements equal to their target become it
    (-0 towards +0 is +0, as C's nextafter)."""
    bits = value.view(torch.int16).to(torch.int32)
    up = target > value
    negative = bits < 0  # the sign bit: magnitude grows with the bits going down
    step = torch.where(up ^ negative, 1, -1)
    moved = torch.where(value == 0, torch.where(up, 1, -32767), bits + step)  # from +-0: the smallest subnormal
    moved = torch.where(target == value, target.view(torch.int16).to(torch.int32), moved)
    return moved.to(torch.int16).view(value.dtype)
