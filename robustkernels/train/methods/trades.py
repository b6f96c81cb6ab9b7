"""TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``, where x_adv
maximises the KL term by PGD from ``x + 0.001 N(0, 1)`` (the paper's inner maximisation)."""

import torch
from torch.nn import functional as F

from ...common import frozen_model, non_negative
from ...ops.pgd import pgd_step, project
from ..losses import trades_loss
from .base import BatchResult, Method, soft_or_hard


def kl_ascent(method: Method, x: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` PGD steps of ``method``'s eps / alpha from ``start`` maximising
    ``KL(f(x) || f(x_adv))`` (summed over the batch) on ``method.net`` in eval mode."""
    with frozen_model(method.net, "eval"), torch.no_grad():
        target = F.log_softmax(method.forward(method.net, x).float(), dim=1)
    kl = lambda logits: F.kl_div(F.log_softmax(logits, dim=1), target, reduction="sum", log_target=True)  # noqa: E731
    x_adv = start
    for _ in range(steps):
        _, grad = method.input_gradient(x_adv, kl)
        x_adv = pgd_step(x_adv, x, grad, step=method.alpha, eps=method.eps, norm=method.norm, bounds=method.bounds)
    return x_adv.detach()


class TRADES(Method):
    name = "trades"

    def __init__(self, *, beta: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = non_negative("beta", beta)

    def adversarial(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        start = project(x + 0.001 * noise, x, eps=self.eps, norm=self.norm, bounds=self.bounds)
        return kl_ascent(self, x, start, self.steps)

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(lambda x, y: self.adversarial(x), x, y)
            logits_clean = self.forward(model, x)
            logits_adv = self.forward(model, x_adv)
        loss = trades_loss(logits_clean.float(), logits_adv.float(), soft_or_hard(y, ctx), self.beta)
        return BatchResult(loss + self.regularizer(), logits_adv)
