"""Square Attack (Andriushchenko et al. 2020): a gradient-free random search on the margin loss,
kept when it improves; the window shrinks on the paper's schedule. Defaults are AutoAttack's:
5000 queries, ``p_init = 0.8``, the schedule on the raw query count.

Linf: each query overwrites a random square window of the perturbation with +-eps per channel.
L2 follows the original (fra31/auto-attack ``square.py``): the start is a grid of s x s tiles
(s = h // 5) of the paper's "meta-pseudo-Gaussian" pattern with random signs per channel, scaled
to norm eps; each query moves the mass of a second random window into a first one, adds a new
pattern with random signs there and rescales that window so the perturbation keeps norm eps.
L1 is the original's L1 version of the same search: the pattern's rectangles weigh 1 / (k + 1)^4
at unit L1 norm, the window gets the L1 budget, and the start and every query are projected onto
the L1 ball and the box at once (:func:`~robustkernels.ops.project_l1`)."""

from __future__ import annotations

import functools
import math

import torch

from ..common import flag, positive_int
from ..ops import project_l1
from .base import Attack, finite_eps
from .starts import random_signs, stripes_start

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
    """Square Attack (Andriushchenko et al. 2020): gradient-free random search on the margin loss,
    forward passes only (averaged over ``eot_iter`` for stochastic models). A sample stops being
    queried - and leaves the batch - once it is misclassified, so ``early_stop`` is always on.

    Threat model: Linf, L2 or L1 (``norm``), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; n_queries: queries per sample; p_init: the first window's share.
        rescale_schedule: fit the window schedule to ``n_queries`` (the Square paper's code)
            instead of AutoAttack's raw query count.
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, C, H, W] images in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = Square(model, eps=8/255, n_queries=5000)(x, y)
    """

    NORMS = ("linf", "l2", "l1")

    def __init__(self, model, eps: float = 8 / 255, n_queries: int = 5000, p_init: float = 0.8,
                 rescale_schedule: bool = False, **kwargs):
        if kwargs.get("loss", "margin") != "margin":
            raise ValueError("loss: Square minimises the margin loss only")
        if not kwargs.get("early_stop", True):
            raise ValueError("early_stop: Square always stops querying a sample once it is fooled")
        kwargs.update(loss="margin", early_stop=True)
        super().__init__(model, eps=eps, **kwargs)
        if self.norm == "l2":
            finite_eps(eps, "Square in L2", "its squares' perturbations are scaled to eps")
        self.n_queries = positive_int("n_queries", n_queries)
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init, self.rescale_schedule = float(p_init), flag("rescale_schedule", rescale_schedule)

    @staticmethod
    def _margin(ctx, x, y, target):
        """[B] the margin loss, < 0 where x fools the model (minimised). Under autocast, rows
        that look fooled get their fp32 margin: only a verdict fp32 agrees with stops a row."""
        oracle = ctx.oracle
        margin = -oracle.objective(oracle.mean_logits(x), y, target)
        recheck = oracle.fp32_recheck(margin < 0, x)
        if recheck is not None:
            rows, precise = recheck
            t = None if target is None else target[rows]
            margin[rows] = -oracle.objective(precise, y[rows], t).to(margin.dtype)
        return margin

    @torch.no_grad()
    def perturb(self, ctx, x, y, target):
        if x.dim() != 4:
            raise ValueError(f"x: Square needs images [B, C, H, W], got shape {list(x.shape)}")
        return self._perturb_linf(ctx, x, y, target) if self.norm == "linf" else self._perturb_lp(ctx, x, y, target)

    def _perturb_linf(self, ctx, x, y, target):
        c, h, w = x.shape[1:]
        gen, dev = ctx.generator, x.device
        x_best = stripes_start(ctx, x)
        margin = self._margin(ctx, x_best, y, target)
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
            proposal = torch.where(window, x0 + self.eps * random_signs(ctx, (n, c, 1, 1), x), current)
            proposal = ctx.bounds.clamp(proposal)
            new_margin = self._margin(ctx, proposal, y[active], None if target is None else target[active])
            better = new_margin < margin[active]
            x_best[active[better]] = proposal[better]
            margin[active[better]] = new_margin[better]
        return x_best

    # -- L2 and L1, as the original ---------------------------------------------------------------

    @staticmethod
    def _randint(ctx, high: int) -> int:
        """A window corner in [0, high) (0 when high is 0), as the original's ``random_int``."""
        return int(torch.randint(0, max(high, 1), (1,), generator=ctx.generator))

    def _eta(self, ctx, s: int, like: torch.Tensor) -> torch.Tensor:
        """[s, s] the paper's pattern: two stacked rectangles of opposite sign, unit norm (L2 or
        L1), transposed with probability 1/2."""
        p = 2 if self.norm == "l2" else 1
        delta = torch.cat([_rectangles(s // 2, s, p), -_rectangles(s - s // 2, s, p)])
        delta = delta / delta.abs().pow(p).sum().pow(1 / p).clamp_min(1e-12)
        if float(torch.rand(1, generator=ctx.generator)) > 0.5:
            delta = delta.t()
        return delta.to(like)

    def _start(self, ctx, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = max(h // 5, 1)
        top0 = (h - s * 5) // 2 if h >= 5 else 0
        delta = torch.zeros_like(x)
        for i in range(h // s):
            for j in range(w // s):
                rows, cols = slice(top0 + i * s, top0 + (i + 1) * s), slice(top0 + j * s, top0 + (j + 1) * s)
                patch = delta[:, :, rows, cols]
                patch += self._eta(ctx, s, x)[: patch.shape[2], : patch.shape[3]] * random_signs(ctx, (b, c, 1, 1), x)
        return delta

    def _inside(self, ctx, x0: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """x0 + delta brought into the threat model: L2 rescaled to norm eps and clamped, L1
        projected onto the ball (radius eps (1 - 1e-6), as the original) and the box."""
        if self.norm == "l1":
            return project_l1(x0 + delta, x0, eps=self.eps * (1 - 1e-6), bounds=self.bounds)
        return ctx.bounds.clamp(x0 + _unit(delta) * self.eps)

    def _perturb_lp(self, ctx, x, y, target):
        b, c, h, w = x.shape
        x_best = self._inside(ctx, x, self._start(ctx, x))
        margin = self._margin(ctx, x_best, y, target)
        for query in range(self.n_queries):
            active = (margin > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            x0, current = x[active], x_best[active]
            x_new = self._inside(ctx, x0, self._moved(ctx, current - x0, query, c, h, w))
            new_margin = self._margin(ctx, x_new, y[active], None if target is None else target[active])
            better = (new_margin < margin[active]) | (new_margin <= 0)
            x_best[active[better]] = x_new[better]
            margin[active[better]] = new_margin[better]
        return x_best

    def _moved(self, ctx, delta: torch.Tensor, query: int, c: int, h: int, w: int) -> torch.Tensor:
        """One query's perturbation: window 2's mass moved into window 1 with a new pattern."""
        n = delta.shape[0]
        p = square_fraction(self.p_init, query, self.n_queries, self.rescale_schedule)
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s = min(s + 1 if s % 2 == 0 else s, h, w)
        vh, vw, vh2, vw2 = (self._randint(ctx, n) for n in (h - s, w - s, h - s, w - s))
        one, two = (slice(vh, vh + s), slice(vw, vw + s)), (slice(vh2, vh2 + s), slice(vw2, vw2 + s))
        mask = torch.zeros_like(delta[:1])
        mask[:, :, one[0], one[1]] = 1.0
        mask[:, :, two[0], two[1]] = 1.0
        l1 = self.norm == "l1"

        def norm(t, dims):  # the threat model's norm over dims
            return t.abs().sum(dim=dims, keepdim=True) if l1 else t.pow(2).sum(dim=dims, keepdim=True).sqrt()

        norm_one = norm(delta[:, :, one[0], one[1]], (-2, -1))
        norm_image = norm(delta.flatten(1), 1).view(n, 1, 1, 1)
        norm_windows = norm(delta * mask, (-2, -1))
        new = self._eta(ctx, s, delta).view(1, 1, s, s) * random_signs(ctx, (n, c, 1, 1), delta)
        new = new + delta[:, :, one[0], one[1]] / (1e-12 + norm_one)
        if l1:  # the original's L1 budget, its factor c included
            budget = ((self.eps - norm_image).clamp_min(0) / c + norm_windows) * c
        else:
            budget = ((self.eps**2 - norm_image.pow(2)).clamp_min(0) / c + norm_windows.pow(2)).sqrt()
        new = new / (1e-12 + norm(new, (-2, -1))) * budget
        delta = delta.clone()
        delta[:, :, two[0], two[1]] = 0.0
        delta[:, :, one[0], one[1]] = new
        return delta


@functools.lru_cache(maxsize=256)
def _rectangles(a: int, b: int, p: int = 2) -> torch.Tensor:
    """[a, b] nested rectangles centred in the window, weight 1 / (k + 1)^2 for the k-th at unit
    L2 norm (p = 2), or 1 / (k + 1)^4 at unit L1 norm (p = 1): the original's ``eta_rectangles``;
    cached, never modified by its callers."""
    delta = torch.zeros(a, b, dtype=torch.float64)
    r, q = a // 2, b // 2
    for k in range(max(a // 2 + 1, b // 2 + 1)):
        delta[max(r - k, 0):min(r - k + 2 * k + 1, a), max(q - k, 0):min(q - k + 2 * k + 1, b)] += (
            1.0 / (k + 1) ** (2 if p == 2 else 4))
    total = delta.abs().pow(p).sum().pow(1 / p)
    return delta / total if total > 0 else delta


def _unit(delta: torch.Tensor) -> torch.Tensor:
    """Each sample's perturbation at L2 norm 1 (as the original: / (norm + 1e-12))."""
    return delta / (delta.flatten(1).pow(2).sum(1).sqrt().view(-1, 1, 1, 1) + 1e-12)
