"""ELLE (Abad Rocamora et al., ICLR 2024, "Efficient local linearity regularization to overcome
catastrophic overfitting"): FGSM(-RS) training plus the local-linearity error of the loss on
three points,

    loss = CE(f(x_adv), y) + lambda * mean_i (l(x_c) - (1 - a) l(x_a) - a l(x_b))^2,

x_a, x_b = x + U(-eps, eps) (two independent draws, not clamped to the input bounds), a ~ U(0, 1)
per sample, x_c = (1 - a) x_a + a x_b, l the per-sample plain CE; the three points go through the
model as one batch. The attack is FGSM from a uniform start in the eps-box (clamped to the bounds)
with step 1.25 eps, not projected back onto the eps-ball (only onto the bounds), its gradient
taken in train mode.

ELLE-A (``adaptive=True``) switches lambda on when the error jumps: after each batch, with E its
error and mu, sigma the mean and standard deviation of the errors of the batches before it, lambda
becomes ``lambda_aux`` if there were more than 2 of those and ``E > mu + sensitivity * sigma``,
else ``decay_rate * lambda``; lambda starts at 0 (the authors' ``onoff`` schedule). Under DDP, E is
averaged over the processes first, so every process keeps the same lambda.

Defaults follow the FastAT Benchmark (Pan & Yao 2026, ``fast_at/elle.py`` and
``configs/cifar10/elle.yaml``: eps 8/255, ``lin_reg`` 1.0, ``lambda_schedule: constant``, one
triplet, ``fgsm_init: random``, ``fgsm_alpha`` 1.25, ``clamp: false``; for ELLE-A its
``lambda_aux`` 10, ``decay_rate`` 0.99, ``sensitivity`` 2). Soft training targets (label smoothing,
mixup) enter only the CE on x_adv; the attack and the linearity error take the labels, as in the
benchmark. Linf only."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch.nn import functional as F

from ...common import non_negative
from ...ops import draw_seed
from ...ops.pgd import pgd_step, random_init
from ...ops.philox import philox_uniform
from .base import BatchResult, cross_entropy
from .grad_align import train_mode_gradient
from .nuat import SingleStep


def linearity_points(x: torch.Tensor, eps: float, generator: torch.Generator):
    """``(x_a, x_b, x_c, a)``: two uniform points of the eps-box around x (not clamped), a [B]
    uniform in [0, 1) and their interpolation, from the shared Philox stream keyed by one draw of
    ``generator`` (draws 0..2n-1 the two points, 2n..2n+B-1 the weights)."""
    n, batch = x.numel(), len(x)
    u = philox_uniform(2 * n + batch, draw_seed(generator), device=x.device)
    noise = (2 * u[:2 * n] - 1).to(x.dtype).view(2, *x.shape)
    x_a, x_b = x + eps * noise[0], x + eps * noise[1]
    a = u[2 * n:].to(x.dtype).view(-1, *[1] * (x.dim() - 1))
    return x_a, x_b, (1 - a) * x_a + a * x_b, a.flatten()


class ELLE(SingleStep):
    """FGSM-RS training with the ELLE regulariser (Abad Rocamora et al., ICLR 2024).

    Args:
        lin_reg: the regulariser's weight (benchmark: 1.0); with ``adaptive`` unused.
        step_factor: FGSM step in units of eps (1.25); an explicit ``alpha`` wins.
        project: project the FGSM point onto the eps-ball (the benchmark's ``clamp``, False).
        random_start: False starts FGSM at x (the benchmark's ``fgsm_init: zero``).
        adaptive: ELLE-A's schedule of lambda (False: constant ``lin_reg``, as the benchmark).
        lambda_aux, decay_rate, sensitivity: ELLE-A's weight when on, its decay per batch and the
            number of standard deviations that counts as a jump.
        other keyword arguments: as for :class:`Method`.

    Running state (ELLE-A): lambda and the count, mean and sum of squared deviations of the
    errors so far, in :meth:`state_dict` for an exact resume.
    """

    name = "elle"

    def __init__(self, *, lin_reg: float = 1.0, step_factor: float = 1.25, project: bool = False,
                 adaptive: bool = False, lambda_aux: float = 10.0, decay_rate: float = 0.99,
                 sensitivity: float = 2.0, **kwargs):
        super().__init__(step_factor=step_factor, **kwargs)
        for flag, value in (("project", project), ("adaptive", adaptive)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {type(value).__name__}")
        self.project, self.adaptive = project, adaptive
        self.lin_reg = non_negative("lin_reg", lin_reg)
        self.lambda_aux = non_negative("lambda_aux", lambda_aux)
        self.decay_rate = non_negative("decay_rate", decay_rate)
        if self.decay_rate > 1:
            raise ValueError(f"decay_rate must be in [0, 1], got {decay_rate}")
        self.sensitivity = non_negative("sensitivity", sensitivity)
        self.weight = 0.0 if adaptive else self.lin_reg  # lambda in force
        self.count, self.mean, self.m2 = 0, 0.0, 0.0  # ELLE-A: the errors so far (Welford)
        self.last_error = None

    def perturbed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One FGSM step of size alpha from the uniform start, onto the bounds (and the eps-ball if
        ``project``)."""
        start = random_init(x, self.eps, "linf", self.bounds, generator=self.generator) if self.random_start else x
        _, grad = train_mode_gradient(self, start, lambda logits: F.cross_entropy(logits, y, reduction="sum"))
        eps = self.eps if self.project else math.inf
        return pgd_step(start, x, grad, step=self.alpha, eps=eps, norm="linf", bounds=self.bounds)

    def linearity_error(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's local-linearity error of the per-sample CE on one random triplet."""
        x_a, x_b, x_c, a = linearity_points(x, self.eps, self.generator)
        losses = F.cross_entropy(self.forward(model, torch.cat((x_a, x_b, x_c))).float(), y.repeat(3),
                                 reduction="none").view(3, -1)
        return F.mse_loss(losses[2], (1 - a.float()) * losses[0] + a.float() * losses[1])

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(self.perturbed, x, y)
            logits = self.forward(model, x_adv)
            error = self.linearity_error(model, x, y)
        loss = cross_entropy(logits, y, ctx.targets) + self.weight * error
        self.last_error = float(error.detach())
        if self.adaptive:
            self.update_weight(error.detach())
        return BatchResult(loss + self.regularizer(), logits)

    def update_weight(self, error: torch.Tensor) -> None:
        """ELLE-A: lambda for the next batch from this batch's error (averaged over processes)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            error = error.clone()
            dist.all_reduce(error)
            error /= dist.get_world_size()
        value = float(error)
        std = math.sqrt(self.m2 / self.count) if self.count else 0.0
        if self.count > 2 and value > self.mean + self.sensitivity * std:
            self.weight = self.lambda_aux
        else:
            self.weight *= self.decay_rate
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    def epoch_metrics(self):
        return {**super().epoch_metrics(), "lin_weight": self.weight, "lin_err": self.last_error}

    def state_dict(self):
        if not self.adaptive:
            return {}
        return {"weight": self.weight, "count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state):
        if self.adaptive and state:
            self.weight, self.count = float(state["weight"]), int(state["count"])
            self.mean, self.m2 = float(state["mean"]), float(state["m2"])
