"""Square Attack (Andriushchenko et al. 2020), Linf: a gradient-free random search. Each query
overwrites a random square window of the perturbation with +-eps per channel and keeps the
change if the margin loss improves; the window shrinks on the paper's schedule. Defaults are
AutoAttack's: 5000 queries, ``p_init = 0.8``, the schedule on the raw query count."""

from __future__ import annotations

import math

import torch

from ..common import positive_int
from .base import Attack

# (iteration out of 10,000, divisor of p_init) from the paper's code, rescaled to n_queries
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256),
             (10000, 512))


def square_fraction(p_init: float, query: int, n_queries: int, rescale: bool = False) -> float:
    """Fraction of the image the window covers at ``query`` (piecewise-constant halving). The
    schedule is written for 10,000 queries; ``rescale`` stretches it to ``n_queries`` (AutoAttack
    does not: ``resc_schedule=False``)."""
    it = int(query / n_queries * 10000) if rescale else query
    for limit, divisor in _SCHEDULE:
        if it <= limit:
            return p_init / divisor
    return p_init / 512


class Square(Attack):
    """``Square(model, eps=8/255, n_queries=5000, p_init=0.8)``; Linf only, inputs [B, C, H, W].
    Uses forward passes only (averaged over ``eot_iter`` for stochastic models) on the margin
    loss. A sample stops being queried - and leaves the batch - once it is misclassified, so
    ``early_stop`` is always on. ``rescale_schedule=True`` fits the window schedule to
    ``n_queries`` (the Square paper's code) instead of AutoAttack's raw query count."""

    def __init__(self, model, eps: float = 8 / 255, n_queries: int = 5000, p_init: float = 0.8,
                 rescale_schedule: bool = False, **kwargs):
        if kwargs.get("norm", "linf") != "linf":
            raise ValueError("norm: Square is implemented for 'linf' only")
        if kwargs.get("loss", "margin") != "margin":
            raise ValueError("loss: Square minimises the margin loss only")
        if not kwargs.get("early_stop", True):
            raise ValueError("early_stop: Square always stops querying a sample once it is fooled")
        kwargs.update(loss="margin", early_stop=True)
        super().__init__(model, eps=eps, **kwargs)
        self.n_queries = positive_int("n_queries", n_queries)
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init, self.rescale_schedule = float(p_init), bool(rescale_schedule)

    def _margin(self, x, y, target):
        """[B] the margin loss, < 0 where x fools the model (minimised). Under autocast, rows
        that look fooled get their fp32 margin: only a verdict fp32 agrees with stops a row."""
        margin = -self.objective(self.mean_logits(x), y, target)
        recheck = self.fp32_recheck(margin < 0, x)
        if recheck is not None:
            rows, precise = recheck
            t = None if target is None else target[rows]
            margin[rows] = -self.objective(precise, y[rows], t).to(margin.dtype)
        return margin

    @torch.no_grad()
    def perturb(self, x, y, target):
        if x.dim() != 4:
            raise ValueError(f"x: Square needs images [B, C, H, W], got shape {list(x.shape)}")
        b, c, h, w = x.shape
        lo, hi = self._bounds.lo_b.to(x.dtype), self._bounds.hi_b.to(x.dtype)
        gen, dev = self.generator, x.device

        def signs(*shape):
            return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(device=dev, dtype=x.dtype)

        x_best = torch.minimum(torch.maximum(x + self.eps * signs(b, c, 1, w), lo), hi)
        margin = self._margin(x_best, y, target)
        rows, cols = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
        for query in range(self.n_queries):
            active = (margin > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            p = square_fraction(self.p_init, query, self.n_queries, self.rescale_schedule)
            s = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1, w - 1)
            n = active.numel()
            top = torch.randint(0, h - s + 1, (n,), generator=gen).to(dev).view(n, 1, 1)
            left = torch.randint(0, w - s + 1, (n,), generator=gen).to(dev).view(n, 1, 1)
            window = ((rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)).unsqueeze(1)
            x0, current = x[active], x_best[active]
            proposal = torch.where(window, x0 + self.eps * signs(n, c, 1, 1), current)
            proposal = torch.minimum(torch.maximum(proposal, lo), hi)
            new_margin = self._margin(proposal, y[active], None if target is None else target[active])
            better = new_margin < margin[active]
            x_best[active[better]] = proposal[better]
            margin[active[better]] = new_margin[better]
        return x_best
