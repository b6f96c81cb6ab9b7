"""MD, the margin-decomposition attack (Ma et al., "Imbalanced gradients: a subtle cause of
overestimated adversarial robustness", Machine Learning 2023), following its code: where one
term of the margin loss ``max_{j != y} z_j - z_y`` dominates its gradient, PGD on the margin
moves along that term only; MD first ascends one term alone, then the whole margin.

Each restart runs once per decomposed term: step 0 climbs ``z_y`` (as the original's code does;
``climb=False`` ascends the term from step 0), steps 1 .. ``change_point`` - 1 ascend the term
alone (``"true"``: ``-z_y``; ``"other"``: ``max_{j != y} z_j``), the rest the margin.
Signed-gradient steps of ``2 eps (1 + cos(pi (i - 1) / (steps - change_point))) / 2``, the cosine
restarting after ``change_point``; the original's uniform start, or Square's vertex stripes."""

from __future__ import annotations

import dataclasses
import math

import torch

from ..common import flag, positive_int
from .base import finite_eps, margin_only
from .loop import Iterative, RowState, runs_on_unfooled
from .starts import checked_start, start_point

TERMS = {"true": "true-logit", "other": "other-logit"}  # a term of the margin -> its objective


@dataclasses.dataclass
class _MDState(RowState):
    term: str
    grad: torch.Tensor | None = None


class MD(Iterative):
    """The margin-decomposition attack (Ma et al. 2023): each run first ascends one term of the
    margin alone (``terms``), then the whole margin, from ``change_point`` (default: half the
    steps, the original's 25 of 50). Later runs attack only the samples not fooled yet; a sample
    counts as fooled at any iterate (its first fooling point is returned).

    Measured on the 13 hardest points of a PGD-AT MNIST CNN (Linf 0.3, 12 draws each): 4
    restarts of 25 steps on ``"true"`` from the stripes broke 5.2 of them per draw without the
    climb and 3.8 with it; APGD-DLR from the stripes (4 x 25) broke 3.6.

    Threat model: Linf, untargeted (the margin loss only).

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; steps: iterations per run; restarts: rounds of ``terms``.
        change_point: the step at which the margin takes over (below ``steps``).
        terms: the margin terms the first stage ascends, one run each (the original: both,
            ``("true", "other")``).
        start: ``"uniform"`` or ``"stripes"`` (Square's vertical stripes of +-eps).
        climb: the original's first step up ``z_y`` (False drops it).
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = MD(model, eps=8/255, steps=50)(x, y)
    """

    NORMS = ("linf",)

    def __init__(self, model, eps: float = 8 / 255, steps: int = 50, change_point: int | None = None, restarts: int = 1,
                 terms=tuple(TERMS), start: str = "uniform", climb: bool = True, **kwargs):
        super().__init__(model, eps=eps, **margin_only("MD", kwargs))
        finite_eps(eps, "MD")
        self.steps = positive_int("steps", steps)
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2 for MD (a first stage and a second), got {steps}")
        # the original's 25 of 50: half the steps unless given
        self.change_point = self.steps // 2 if change_point is None else positive_int("change_point", change_point)
        if self.change_point >= self.steps:
            raise ValueError(f"change_point must be below steps={self.steps}, got {change_point}")
        self.restarts = positive_int("restarts", restarts)
        terms = (terms,) if isinstance(terms, str) else tuple(terms)
        if not terms or any(t not in TERMS for t in terms):
            raise ValueError(f"terms must list some of {tuple(TERMS)}, got {terms}")
        self.terms = terms
        self.start_at = checked_start(start, self.norm)
        self.climb = flag("climb", climb)

    def perturb(self, ctx, x, y, target):
        runs = [term for _ in range(self.restarts) for term in self.terms]
        return runs_on_unfooled(ctx, x, y, target, [None], len(runs),
                                lambda xs, ys, ts, _, k: self.iterate(ctx, xs, ys, ts, self.steps, term=runs[k]))

    def stage(self, i: int, term: str) -> tuple[str, float, float]:
        """Step ``i``'s (objective, sign of its gradient, step size)."""
        cp, n = self.change_point, self.steps
        size = self.eps * (1 + math.cos(math.pi * (i - 1 - (cp if i > cp else 0)) / (n - cp)))
        if i == 0 and self.climb:
            return TERMS["true"], -1.0, size  # climb z_y
        return (TERMS[term] if i < cp else "margin"), 1.0, size

    def start_state(self, ctx, x, y, target, term):
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        return _MDState(x, y, target, x_adv=start_point(ctx, x, self.start_at), fooled=fooled, term=term)

    def verdict(self, ctx, s, i):
        if i == self.steps:  # the end point: a verdict, no gradient
            return ctx.oracle.succeeded(ctx.oracle.mean_logits(s.x_adv), s.y, s.target, s.x_adv)
        _, s.grad, logits = ctx.oracle.loss_and_grad(s.x_adv, s.y, s.target, loss=self.stage(i, s.term)[0])
        return ctx.oracle.succeeded(logits, s.y, s.target, s.x_adv)

    def advance(self, ctx, s, i, live):
        _, sign, size = self.stage(i, s.term)
        step = torch.where(live, size, 0.0).to(ctx.bounds.lo.dtype)
        ctx.step(s.x_adv, s.x, sign * s.grad, step, out=s.x_adv)
