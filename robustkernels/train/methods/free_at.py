"""Free adversarial training (Shafahi et al. 2019): each minibatch is replayed ``replays`` (m)
times; every replay's single backward gives the weight gradient *and* the input gradient that
advances the perturbation, which carries over to the next minibatch. Train for epochs / m."""

import torch

from ...common import positive_int
from ...ops.pgd import pgd_step, project
from .base import BatchResult, Method, backward_and_step, cross_entropy


class FreeAT(Method):
    name = "free_at"

    def __init__(self, *, replays: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.replays = positive_int("replays", replays)
        self.steps_per_batch = self.replays
        self.delta: torch.Tensor | None = None

    def train_step(self, model, optimizer, scheduler, x, y, ctx):
        if self.delta is None or self.delta.shape != x.shape:
            self.delta = torch.zeros_like(x)
        for _ in range(self.replays):
            x_adv = project(x + self.delta.to(x.device), x, eps=self.eps, norm=self.norm,
                            bounds=self.bounds).requires_grad_(True)
            with ctx.autocast():
                logits = self.forward(model, x_adv)
            loss = cross_entropy(logits, y, ctx.targets) + self.regularizer()
            backward_and_step(loss, optimizer, scheduler, ctx)
            grad = x_adv.grad if ctx.scaler is None else x_adv.grad / ctx.scaler.get_scale()
            x_next = pgd_step(x_adv.detach(), x, grad, step=self.eps, eps=self.eps, norm=self.norm, bounds=self.bounds)
            self.delta = x_next - x
        return BatchResult(loss.detach(), logits.detach())

    def state_dict(self):
        return {"delta": self.delta}

    def load_state_dict(self, state):
        self.delta = state.get("delta")
