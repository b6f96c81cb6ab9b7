"""Carlini & Wagner's L2 attack (2017): Adam in tanh space, binary search over the constant c."""

from __future__ import annotations

import torch

from ..common import input_gradient, non_negative, positive, positive_int
from .base import Attack


class CW(Attack):
    """Carlini & Wagner's L2 attack (2017): minimise ``||x' - x||_2^2 + c * max(z_y - max_{j != y}
    z_j, -kappa)`` over ``x' = lo + (hi - lo) (tanh(w) + 1) / 2`` with Adam; a per-sample binary
    search over ``c`` (``binary_search_steps`` rounds from ``c``) keeps the smallest successful
    perturbation. A minimum-norm attack: a success counts only within ``eps`` (default infinity,
    any success); samples not fooled within eps are returned unchanged.

    Threat model: L2 (minimum norm), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: the radius within which a success counts.
        c, kappa: the margin term's initial weight and confidence; steps, lr: Adam's per round.
        binary_search_steps: rounds of the search over c.
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = CW(model, c=1.0, steps=100)(x, y)
    """

    def __init__(self, model, eps: float = float("inf"), c: float = 1.0, kappa: float = 0.0, steps: int = 100,
                 lr: float = 0.01, binary_search_steps: int = 5, **kwargs):
        if kwargs.get("norm", "l2") != "l2":
            raise ValueError("norm: CW is an L2 attack (for Linf use PGD(..., loss='margin'), CW-inf)")
        if kwargs.get("early_stop", False):
            raise ValueError("early_stop: CW minimises the perturbation of fooled samples; it cannot stop them")
        if kwargs.get("loss", "margin") not in ("margin",):
            raise ValueError("loss: CW optimises its own margin term")
        kwargs.pop("loss", None)
        kwargs["norm"] = "l2"
        super().__init__(model, eps=eps, **kwargs)
        self.c = non_negative("c", c)
        self.kappa = non_negative("kappa", kappa)
        self.steps = positive_int("steps", steps)
        self.lr = positive("lr", lr)
        self.binary_search_steps = positive_int("binary_search_steps", binary_search_steps)

    def _margin(self, ctx, logits, y, target):
        ctx.oracle.check_output(logits, y, target)
        labels = target if self.targeted else y
        own = logits.gather(1, labels[:, None]).squeeze(1)
        other = logits.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
        gap = other - own if self.targeted else own - other
        return gap.clamp_min(-self.kappa)

    def perturb(self, ctx, x, y, target):
        lo, hi = ctx.bounds.lo_b.to(x.dtype), ctx.bounds.hi_b.to(x.dtype)
        span = (hi - lo).clamp_min(1e-12)
        to_tanh = lambda v: torch.atanh(((v - lo) / span * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))  # noqa: E731
        from_tanh = lambda w: lo + span * (torch.tanh(w) + 1) / 2  # noqa: E731
        batch = x.shape[0]
        const = torch.full((batch,), self.c, device=x.device)
        lower, upper = torch.zeros_like(const), torch.full_like(const, 1e10)
        best_l2 = torch.full_like(const, float("inf"))
        best = x.clone()
        w_start = to_tanh(x)
        for _ in range(self.binary_search_steps):
            w = w_start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros(batch, dtype=torch.bool, device=x.device)
            for _ in range(self.steps):
                with torch.enable_grad():
                    x_adv = from_tanh(w)
                    l2 = (x_adv - x).flatten(1).pow(2).sum(dim=1)
                    margin, logits = 0.0, 0.0
                    for _ in range(self.eot_iter):
                        out = ctx.oracle.logits(x_adv)
                        margin = margin + self._margin(ctx, out, y, target)
                        logits = logits + out.detach()
                    loss = (l2 + const * margin / self.eot_iter).sum()
                    grad = input_gradient(loss, w)
                w.grad = grad
                optimizer.step()
                with torch.no_grad():
                    success = ctx.oracle.succeeded(logits, y, target, x_adv.detach())
                    found |= success
                    improved = success & (l2 < best_l2) & (l2 <= self.eps**2 * (1 + 1e-6))
                    best_l2 = torch.where(improved, l2.detach(), best_l2)
                    best[improved] = x_adv.detach()[improved]
            # binary search on c: smaller where it worked, larger where it did not
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
        return best
