"""Friendly adversarial training, FAT (Zhang et al. 2020): PGD that stops early. A sample keeps
being attacked until it is misclassified, then for ``tau`` more steps, and stops; training uses
where it stopped. ``tau`` grows over training: with ``tau=None`` it is 0 for the first 5/12 of
the epochs, 1 until 3/4 and 2 after (the authors' dynamic schedule: epochs 50 and 90 of 120).
The start is ``x + 0.001 N(0, 1)``; a stopped sample leaves the batch, so its skipped steps are
not paid for (``attack_rows`` in the log: forward rows per training sample)."""

from __future__ import annotations

import torch

from ...ops.pgd import pgd_step, project
from .base import BatchResult, Method, cross_entropy, summed_cross_entropy

TAU_SCHEDULE = ((5 / 12, 0), (3 / 4, 1), (1.0, 2))  # (up to this share of training, tau)


class FAT(Method):
    name = "fat"

    def __init__(self, *, tau: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, int) or tau < 0):
            raise ValueError(f"tau must be an int >= 0 or None (the dynamic schedule), got {tau!r}")
        self.fixed_tau, self.tau = tau, tau or 0
        self.rows = self.samples = 0

    def set_progress(self, epochs_done, epochs):
        super().set_progress(epochs_done, epochs)
        if self.fixed_tau is None:
            share = int(epochs_done) / epochs  # tau changes at epoch boundaries
            self.tau = next(t for limit, t in TAU_SCHEDULE if share < limit or limit == 1.0)

    def early_stopped(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """PGD-``steps`` where each sample stops ``tau`` steps after it is first misclassified."""
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        x_adv = project(x + 0.001 * noise, x, eps=self.eps, norm=self.norm, bounds=self.bounds)
        budget = torch.full((len(x),), self.tau, device=x.device)
        active = torch.arange(len(x), device=x.device)
        for _ in range(self.steps):
            logits, grad = self.input_gradient(x_adv[active], summed_cross_entropy(y[active]))
            self.rows += len(active)
            wrong = logits.argmax(1) != y[active]
            done = wrong & (budget[active] == 0)
            budget[active[wrong & ~done]] -= 1
            keep = ~done
            active, grad = active[keep], grad[keep]
            if len(active) == 0:
                break
            x_adv[active] = pgd_step(x_adv[active], x[active], grad, step=self.alpha, eps=self.eps,
                                     norm=self.norm, bounds=self.bounds)
        self.samples += len(x)
        return x_adv

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(self.early_stopped, x, y)
            logits = self.forward(model, x_adv)
        return BatchResult(cross_entropy(logits, y, ctx.targets) + self.regularizer(), logits)

    def epoch_metrics(self):
        rows, self.rows, self.samples, samples = self.rows, 0, 0, self.samples
        return {**super().epoch_metrics(), "tau": self.tau, "attack_rows": rows / max(samples, 1)}
