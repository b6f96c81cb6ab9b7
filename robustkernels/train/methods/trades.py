"""TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``, where x_adv
maximises the KL term by PGD from ``x + 0.001 N(0, 1)`` (the paper's inner maximisation)."""

import torch
from torch.nn import functional as F

from ...ops.pgd import pgd_step, project
from ...threat import frozen_model, non_negative
from ..losses import trades_loss
from .base import BatchResult, Method


class TRADES(Method):
    name = "trades"

    def __init__(self, *, beta: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = non_negative("beta", beta)

    def adversarial(self, x: torch.Tensor) -> torch.Tensor:
        with frozen_model(self.net, "eval"), torch.no_grad():
            target = F.log_softmax(self.forward(self.net, x).float(), dim=1)
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        x_adv = project(x + 0.001 * noise, x, eps=self.eps, norm=self.norm, bounds=self.bounds)
        with frozen_model(self.net, "eval"):
            for _ in range(self.steps):
                x_in = x_adv.detach().requires_grad_(True)
                with torch.enable_grad():
                    log_p = F.log_softmax(self.forward(self.net, x_in).float(), dim=1)
                    kl = F.kl_div(log_p, target, reduction="sum", log_target=True)
                    (grad,) = torch.autograd.grad(kl, x_in)
                x_adv = pgd_step(x_adv, x, grad, step=self.alpha, eps=self.eps, norm=self.norm, bounds=self.bounds)
        return x_adv.detach()

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(lambda x, y: self.adversarial(x), x, y)
            logits_clean = self.forward(model, x)
            logits_adv = self.forward(model, x_adv)
        loss = trades_loss(logits_clean.float(), logits_adv.float(), y, self.beta)
        return BatchResult(loss + self.regularizer(), logits_adv)
