"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): PGD with momentum 0.75 and a step size that halves at
checkpoints where the loss stopped improving, restarting from the best point."""

from __future__ import annotations

import math

import torch

from ..ops.pgd import project, random_init
from .base import Attack, _positive_int


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p if q <= 1})


class APGD(Attack):
    """Auto-PGD with the ``"ce"`` or ``"dlr"`` loss, ``steps`` iterations (100 by default),
    ``rho = 0.75`` and ``restarts`` random restarts keeping, per sample, the first success."""

    def __init__(self, model, eps: float = 8 / 255, steps: int = 100, norm: str = "linf", loss: str = "ce",
                 restarts: int = 1, rho: float = 0.75, **kwargs):
        super().__init__(model, eps=eps, norm=norm, loss=loss, **kwargs)
        self.steps = _positive_int("steps", steps)
        self.restarts = _positive_int("restarts", restarts)
        self.rho = float(rho)
        self.momentum = 0.75

    def perturb(self, x, y, target):
        result = x.clone()
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.restarts):
            x_adv, success = self._run(x, y, target)
            new = success & ~fooled
            result[new] = x_adv[new]
            fooled |= success
            if bool(fooled.all()):
                break
        return result

    def _run(self, x, y, target):
        batch = x.shape[0]
        marks = set(checkpoints(self.steps)[1:])
        x_adv = random_init(x, self.eps, self.norm, self.bounds, generator=self.generator)
        loss, grad, logits = self.loss_and_grad(x_adv, y, target)
        success = self.succeeded(logits, y, target)
        x_best_adv = x_adv.clone()  # latest successful point per sample
        x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss.clone()
        step = torch.full((batch,), 2 * self.eps, device=x.device)
        x_prev = x_adv.clone()
        increases = torch.zeros(batch, device=x.device)  # loss increases since the last checkpoint
        loss_at_check, reduced_at_check = loss_best.clone(), torch.ones(batch, dtype=torch.bool, device=x.device)
        last_mark, previous_loss = 0, loss.clone()
        for i in range(self.steps):
            with torch.no_grad():
                z = self.step(x_adv, x, grad, step)
                a = self.momentum if i > 0 else 1.0
                moved = x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev)
                x_prev = x_adv
                x_adv = project(moved, x, eps=self.eps, norm=self.norm, bounds=self.bounds)
            loss, grad, logits = self.loss_and_grad(x_adv, y, target)
            with torch.no_grad():
                now = self.succeeded(logits, y, target)
                x_best_adv[now] = x_adv[now]
                success |= now
                increases += (loss > previous_loss).float()
                previous_loss = loss
                improved = loss > loss_best
                x_best[improved], grad_best[improved], loss_best[improved] = x_adv[improved], grad[improved], loss[improved]
                if i + 1 in marks:
                    window = i + 1 - last_mark
                    oscillating = increases <= window * self.rho
                    stalled = ~reduced_at_check & (loss_at_check >= loss_best)
                    halve = oscillating | stalled
                    step = torch.where(halve, step / 2, step)
                    x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
                    reduced_at_check, loss_at_check = halve, loss_best.clone()
                    increases.zero_()
                    last_mark = i + 1
        return x_best_adv, success
