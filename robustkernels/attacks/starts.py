"""Random starts, from the call's generator: AutoAttack's uniform point in the ball (a normal
direction in L2 / L1) and Square's vertical stripes of +-eps (a vertex of the Linf ball)."""

from __future__ import annotations

import torch

from ..ops import draw_seed
from ..ops.philox import philox_normal, philox_uniform
from .context import Context

STARTS = ("uniform", "stripes")  # random starts: AutoAttack's, or Square's vertex stripes (Linf)


def checked_start(start: str, norm: str) -> str:
    """``start`` (one of ``STARTS``) if the threat model ``norm`` allows it."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if start == "stripes" and norm != "linf":
        raise ValueError("start='stripes' is a vertex of the Linf ball: it needs norm='linf'")
    return start


def random_direction(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    """[B, ...] like x, of unit norm per sample, from the shared Philox stream (one seed from
    the call's generator): uniform in [-1, 1] over its Linf norm, or a normal over its L2 (L1)
    norm. The random starts of APGD and FAB (scaled by eps and eps / 2)."""
    seed, n, batch = draw_seed(ctx.generator), x.numel(), x.shape[0]
    if ctx.norm in ("l2", "l1"):
        t = philox_normal(n, seed, 0, device=x.device, per_block=4).view(batch, -1)
        scale = t.norm(dim=1, keepdim=True) if ctx.norm == "l2" else t.abs().sum(dim=1, keepdim=True)
    else:
        t = (2 * philox_uniform(n, seed, 0, device=x.device, per_block=4) - 1).view(batch, -1)
        scale = t.abs().amax(dim=1, keepdim=True)
    return (t / (scale + 1e-12)).view(x.shape).to(x.dtype)


def random_signs(ctx: Context, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """Random +-1 of ``shape`` from the call's generator, on ``like``'s device and dtype."""
    return (torch.randint(0, 2, shape, generator=ctx.generator) * 2 - 1).to(like)


def stripes_start(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] moved by +-eps per (sample, channel, column), in bounds: Square's start."""
    b, c, _, w = x.shape
    return ctx.bounds.clamp(x + ctx.eps * random_signs(ctx, (b, c, 1, w), x))


def start_point(ctx: Context, x: torch.Tensor, how: str) -> torch.Tensor:
    """A random start (``how`` in ``STARTS``): ``"uniform"``, AutoAttack's - uniform in [-1, 1]
    scaled to Linf norm eps (L2 / L1: a normal direction scaled to norm eps), clamped to the
    bounds; ``"stripes"``, Square's vertical stripes of +-eps (images)."""
    if not x.numel():
        return x.clone()
    if how == "stripes":
        if x.dim() != 4:
            raise ValueError(f"x: start='stripes' needs images [B, C, H, W], got shape {list(x.shape)}")
        return stripes_start(ctx, x)
    return ctx.bounds.clamp(x + ctx.eps * random_direction(ctx, x))
