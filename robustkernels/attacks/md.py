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

from ..common import positive_int
from .base import ActiveSet, Attack, RowState, checked_start, margin_only

TERMS = {"true": "true-logit", "other": "other-logit"}  # a term of the margin -> its objective


@dataclasses.dataclass
class _MDState(RowState):
    x_adv: torch.Tensor
    fooled: torch.Tensor


class MD(Attack):
    """``MD(model, eps=8/255, steps=50, change_point=None, restarts=1)``; Linf, untargeted;
    ``change_point`` defaults to half the steps (the original's 25 of 50).

    ``terms``: the margin terms the first stage ascends, one run each per restart (the
    original: both, ``("true", "other")``). ``start="stripes"`` starts every run at Square's
    vertical stripes of +-eps instead of the uniform point; ``climb=False`` drops the original's
    first step up ``z_y``. Measured on the 13 hardest points of a PGD-AT MNIST CNN (Linf 0.3, 12
    draws each): 4 restarts of 25 steps on ``"true"`` from the stripes broke 5.2 of them per draw
    without the climb and 3.8 with it; APGD-DLR from the stripes (4 x 25) broke 3.6.

    Later runs attack only the samples not fooled yet; a sample counts as fooled at any iterate
    (its first fooling point is returned, and with ``early_stop`` it stops there)."""

    NORMS = ("linf",)

    def __init__(self, model, eps: float = 8 / 255, steps: int = 50, change_point: int | None = None, restarts: int = 1,
                 terms=tuple(TERMS), start: str = "uniform", climb: bool = True, **kwargs):
        super().__init__(model, eps=eps, **margin_only("MD", kwargs))
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
        self.climb = bool(climb)

    def perturb(self, x, y, target):
        runs = [term for _ in range(self.restarts) for term in self.terms]
        return self.runs_on_unfooled(x, y, target, [None], len(runs),
                                     lambda xs, ys, ts, _, k: self._run(xs, ys, ts, runs[k]))

    def stage(self, i: int, term: str) -> tuple[str, float, float]:
        """Step ``i``'s (objective, sign of its gradient, step size)."""
        cp, n = self.change_point, self.steps
        size = self.eps * (1 + math.cos(math.pi * (i - 1 - (cp if i > cp else 0)) / (n - cp)))
        if i == 0 and self.climb:
            return TERMS["true"], -1.0, size  # climb z_y
        return (TERMS[term] if i < cp else "margin"), 1.0, size

    def _run(self, x, y, target, term: str):
        """One run: (x_adv, fooled) per the attack's contract."""
        batch, dev = x.shape[0], x.device
        s = _MDState(x, y, target, self.start_point(x, self.start_at), torch.zeros(batch, dtype=torch.bool, device=dev))
        out, fooled_out = s.x_adv.clone(), torch.zeros(batch, dtype=torch.bool, device=dev)
        rows = ActiveSet(batch, dev, enabled=self.early_stop and self.active_set)
        for i in range(self.steps):
            loss, sign, size = self.stage(i, term)
            _, grad, logits = self.loss_and_grad(s.x_adv, s.y, s.target, loss=loss)
            self.record_fooled(s, rows, out, fooled_out, logits)
            if not rows.any_live():
                return out, fooled_out
            step = torch.where(rows.live, size, 0.0).to(self._bounds.lo.dtype)
            self.step(s.x_adv, s.x, sign * grad, step, out=s.x_adv)
            s = rows.compact(s)
        self.record_fooled(s, rows, out, fooled_out, self.mean_logits(s.x_adv))
        never = ~s.fooled
        out[rows.index[never]] = s.x_adv[never]
        return out, fooled_out
