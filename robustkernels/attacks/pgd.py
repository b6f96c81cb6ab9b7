"""PGD (Madry et al. 2018), FGSM (Goodfellow et al. 2015) and FGSM with a random start (Wong et
al. 2020), all on the fused step."""

from __future__ import annotations

import dataclasses

import torch

from ..common import non_negative, positive_int
from ..ops.pgd import random_init
from .base import ActiveSet, Attack, RowState


@dataclasses.dataclass
class _PGDState(RowState):
    x_adv: torch.Tensor
    alpha: torch.Tensor


class PGD(Attack):
    """Projected gradient descent: ``steps`` fused steps of size ``alpha`` from a random start,
    repeated ``restarts`` times keeping each sample's strongest result (a success first, then
    the highest loss). With ``early_stop`` a sample stops at the first point that fools the
    model, and (``active_set``) leaves the batch."""

    def __init__(self, model, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, random_start: bool = True,
                 norm: str = "linf", restarts: int = 1, loss: str = "ce", targeted: bool = False, eot_iter: int = 1,
                 early_stop: bool = False, **kwargs):
        super().__init__(model, eps=eps, norm=norm, loss=loss, targeted=targeted, eot_iter=eot_iter,
                         early_stop=early_stop, **kwargs)
        self.alpha = non_negative("alpha", alpha)
        self.steps = positive_int("steps", steps)
        self.restarts = positive_int("restarts", restarts)
        self.random_start = bool(random_start)

    def perturb(self, x, y, target):
        best, best_score = None, None
        for _ in range(self.restarts):
            x_adv = self._run(x, y, target)
            if self.restarts == 1:
                return x_adv
            with torch.no_grad():
                logits = self.logits(x_adv)
                loss = self.objective(logits, y, target)
                # successes rank above every failure, then higher loss wins
                score = loss + self.succeeded(logits, y, target).to(loss.dtype) * 1e30
            if best is None:
                best, best_score = x_adv, score
            else:
                better = score > best_score
                best[better], best_score[better] = x_adv[better], score[better]
        return best

    def _run(self, x, y, target):
        start = random_init(x, self.eps, self.norm, self.bounds, generator=self.generator) if self.random_start else x
        x_adv = start.clone()
        alpha = self.step_sizes(self.alpha, x)
        if not self.early_stop:
            for _ in range(self.steps):
                _, grad, _ = self.loss_and_grad(x_adv, y, target)
                self.step(x_adv, x, grad, alpha, out=x_adv)
            return x_adv
        out = x_adv.clone()
        rows = ActiveSet(x.shape[0], x.device, enabled=self.active_set)
        s = _PGDState(x, y, target, x_adv, alpha)
        for _ in range(self.steps):
            _, grad, logits = self.loss_and_grad(s.x_adv, s.y, s.target)
            fooled = self.succeeded(logits, s.y, s.target, s.x_adv) & rows.live
            out[rows.index[fooled]] = s.x_adv[fooled]
            rows.retire(fooled)
            if not rows.any_live():
                return out
            step = torch.where(rows.live, s.alpha, 0.0)
            self.step(s.x_adv, s.x, grad, step, out=s.x_adv)
            s = rows.compact(s)
        out[rows.index[rows.live]] = s.x_adv[rows.live]
        return out


def _finite_eps(eps, attack: str) -> None:
    if isinstance(eps, float) and eps == float("inf"):
        raise ValueError(f"eps must be finite for {attack}: its step size is derived from eps")


class FGSM(PGD):
    """Fast gradient sign method: one step of size ``eps`` from the clean input."""

    def __init__(self, model, eps: float = 8 / 255, **kwargs):
        _finite_eps(eps, "FGSM")
        super().__init__(model, eps=eps, alpha=eps, steps=1, random_start=False, **kwargs)


class FGSM_RS(PGD):  # noqa: N801 (the name the literature uses)
    """FGSM with a uniform random start and step ``alpha = 1.25 eps`` (Wong et al. 2020)."""

    def __init__(self, model, eps: float = 8 / 255, alpha: float | None = None, **kwargs):
        if alpha is None:
            _finite_eps(eps, "FGSM_RS")
        super().__init__(model, eps=eps, alpha=1.25 * eps if alpha is None else alpha, steps=1, random_start=True,
                         **kwargs)
