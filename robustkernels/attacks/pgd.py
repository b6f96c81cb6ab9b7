"""PGD (Madry et al. 2018), FGSM (Goodfellow et al. 2015) and FGSM with a random start (Wong et
al. 2020), all on the fused step."""

from __future__ import annotations

import torch

from ..ops.pgd import random_init
from .base import Attack, _non_negative, _positive_int


class PGD(Attack):
    """Projected gradient descent: ``steps`` fused steps of size ``alpha`` from a random start,
    repeated ``restarts`` times keeping each sample's strongest result (a success first, then
    the highest loss)."""

    def __init__(self, model, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, random_start: bool = True,
                 norm: str = "linf", restarts: int = 1, loss: str = "ce", targeted: bool = False, eot_iter: int = 1,
                 early_stop: bool = False, **kwargs):
        super().__init__(model, eps=eps, norm=norm, loss=loss, targeted=targeted, eot_iter=eot_iter,
                         early_stop=early_stop, **kwargs)
        self.alpha = _non_negative("alpha", alpha)
        self.steps = _positive_int("steps", steps)
        self.restarts = _positive_int("restarts", restarts)
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
        for _ in range(self.steps):
            _, grad, logits = self.loss_and_grad(x_adv, y, target)
            step = torch.where(self.succeeded(logits, y, target), 0.0, alpha) if self.early_stop else alpha
            self.step(x_adv, x, grad, step, out=x_adv)
        return x_adv


class FGSM(PGD):
    """Fast gradient sign method: one step of size ``eps`` from the clean input."""

    def __init__(self, model, eps: float = 8 / 255, **kwargs):
        super().__init__(model, eps=eps, alpha=eps, steps=1, random_start=False, **kwargs)


class FGSM_RS(PGD):  # noqa: N801 (the name the literature uses)
    """FGSM with a uniform random start and step ``alpha = 1.25 eps`` (Wong et al. 2020)."""

    def __init__(self, model, eps: float = 8 / 255, alpha: float | None = None, **kwargs):
        super().__init__(model, eps=eps, alpha=1.25 * eps if alpha is None else alpha, steps=1, random_start=True,
                         **kwargs)
