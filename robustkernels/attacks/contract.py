"""The last step of every attack call: its point held to the contract - inside the eps-ball
around x and inside the bounds, in x's dtype.

16-bit inputs: an attack computes in fp32 or in 16-bit arithmetic and rounds, which can carry a
point up to about one ulp of its magnitude outside (bf16 near 0.5: 0.004, 12% of eps 8/255). Such
a point is projected exactly: onto the ball and the bounds in fp64, rounded to x's dtype, and each
element that rounding carried out moved one ulp towards x - no further than the fp64 point it
rounded from, so inside. A point further out than rounding explains, in any dtype, is a defect of
the attack: a RuntimeError naming it.
"""

from __future__ import annotations

import torch

from ..threat import Bounds, ThreatModel, lp_norms

HALF = (torch.float16, torch.bfloat16)


def held_to_contract(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, bounds: Bounds,
                     who: str) -> torch.Tensor:
    """``x_adv`` [B, ...] inside ``threat``'s ball around ``x`` and the bounds (see the module)."""
    a, xd = x_adv.double(), x.double()
    slack = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    if x_adv.dtype in HALF:  # what rounding to 16 bits can add, per sample
        slack = torch.finfo(x_adv.dtype).eps * lp_norms(a, threat.norm).clamp(min=1.0)
    far = lp_norms(a - xd, threat.norm) - (threat.eps * (1 + 1e-5) + 1e-7) - slack
    off = ((bounds.lo_b.double() - a).clamp(min=0) + (a - bounds.hi_b.double()).clamp(min=0)).flatten(1).amax(dim=1)
    bad = (far > 0) | (off > slack + 1e-7) | far.isnan()
    if bool(bad.any()):
        raise RuntimeError(f"{who} returned {int(bad.sum())} of {len(bad)} points outside the eps-ball or the bounds "
                           f"(largest {threat.norm} distance {float(lp_norms(a - xd, threat.norm).max()):.6g}, eps "
                           f"{threat.eps:.6g}): its perturb must project its iterates (ops.pgd_step, or "
                           "threat.prepare(x).clamp)")
    return _projected(threat, x_adv, x, bounds) if x_adv.dtype in HALF else x_adv


def _projected(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """The 16-bit point projected in fp64 and rounded back without leaving (see the module)."""
    a, xd = x_adv.double(), x.double()
    if threat.norm == "linf":
        a = torch.minimum(torch.maximum(a, xd - threat.eps), xd + threat.eps)
    else:
        norms = lp_norms(a - xd, threat.norm)
        scale = torch.where(norms > threat.eps, threat.eps / norms, torch.ones_like(norms))
        a = xd + (a - xd) * scale.view(-1, *[1] * (x.dim() - 1))
    a = torch.minimum(torch.maximum(a, bounds.lo_b.double()), bounds.hi_b.double())  # x is inside: no further away
    rounded = a.to(x_adv.dtype)
    outside = _outside(threat, rounded, x, bounds)
    return torch.where(outside, torch.nextafter(rounded, x), rounded)


def _outside(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """Elements [B, ...] that rounding may have carried out, decided exactly (fp64): outside the
    bounds, outside the Linf box, or the nonzero elements of an L2 / L1 sample outside the ball."""
    a, delta = x_adv.double(), x_adv.double() - x.double()
    outside = (a < bounds.lo_b.double()) | (a > bounds.hi_b.double())
    if threat.norm == "linf":
        return outside | (delta.abs() > threat.eps)
    over = lp_norms(delta, threat.norm) > threat.eps
    return outside | (over.view(-1, *[1] * (x.dim() - 1)) & (delta != 0))
