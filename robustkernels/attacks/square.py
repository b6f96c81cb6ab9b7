"""Square Attack (Andriushchenko et al. 2020), Linf: a gradient-free random search. Each query
overwrites a random square window of the perturbation with +-eps per channel and keeps the
change if the margin loss improves; the window shrinks on the paper's schedule."""

from __future__ import annotations

import math

import torch

from ..ops.pgd import broadcast_bounds
from .base import Attack, _positive_int

# (iteration out of 10,000, divisor of p_init) from the paper's code, rescaled to n_queries
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256),
             (10000, 512))


def square_fraction(p_init: float, query: int, n_queries: int) -> float:
    """Fraction of the image the window covers at ``query`` (piecewise-constant halving)."""
    it = int(query / n_queries * 10000)
    for limit, divisor in _SCHEDULE:
        if it <= limit:
            return p_init / divisor
    return p_init / 512


class Square(Attack):
    """``Square(model, eps=8/255, n_queries=1000, p_init=0.8)``; Linf only, inputs [B, C, H, W].
    Uses forward passes only (averaged over ``eot_iter`` for stochastic models); a sample stops
    being queried once it is misclassified."""

    def __init__(self, model, eps: float = 8 / 255, n_queries: int = 1000, p_init: float = 0.8, **kwargs):
        if kwargs.get("norm", "linf") != "linf":
            raise ValueError("norm: Square is implemented for 'linf' only")
        kwargs.pop("loss", None)
        super().__init__(model, eps=eps, loss="margin", **kwargs)
        self.n_queries = _positive_int("n_queries", n_queries)
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init = float(p_init)

    @torch.no_grad()
    def _margin(self, x, y, target):
        logits = sum(self.logits(x).float() for _ in range(self.eot_iter)) / self.eot_iter
        return -self.objective(logits, y, target)  # < 0 means fooled; minimised

    @torch.no_grad()
    def perturb(self, x, y, target):
        if x.dim() != 4:
            raise ValueError(f"x: Square needs images [B, C, H, W], got shape {list(x.shape)}")
        b, c, h, w = x.shape
        lo, hi = (t.to(x.dtype) for t in broadcast_bounds(self.bounds, x))
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
            s = min(max(int(round(math.sqrt(square_fraction(self.p_init, query, self.n_queries) * h * w))), 1), h - 1, w - 1)
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
