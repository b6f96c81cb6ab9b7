"""GradAlign (Andriushchenko & Flammarion, NeurIPS 2020, "Understanding and Improving Fast
Adversarial Training"): FGSM training plus a gradient-alignment regulariser,

    loss = CE(f(x_adv), y) + lambda * (1 - mean_i cos(grad_x l(x_i), grad_x l(x_i + eta_i))),

eta uniform in the eps-box (the noisy point clamped to the input bounds), the second gradient
taken with ``create_graph`` so the regulariser is trained through (double backpropagation); the
mean runs over the samples whose two gradients are both non-zero. Both gradients are of the
plain CE in train mode (batch statistics, as the reference implementations take them).

Defaults follow the FastAT Benchmark (Pan & Yao 2026, ``fast_at/grad_align.py`` and
``configs/cifar10/grad_align.yaml``: eps 8/255, ``grad_align_cos_lambda`` 0.2, FGSM from x
itself (``attack_init == 'zero'``) with step eps, projected onto the eps-ball). lambda = 0.2 is the
paper's value for eps 8/255 on CIFAR-10. Soft training targets (label smoothing, mixup) enter only
the CE on x_adv; both gradients are of the CE of the labels, as in the benchmark. Linf only. The
double backward does not go through ``torch.compile``: train without ``compile``."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ...common import frozen_model, non_negative
from ...ops import draw_seed
from ...ops.pgd import pgd_step, random_init
from .base import BatchResult, Method, cross_entropy
from .nuat import SingleStep


def train_mode_gradient(method: Method, x: torch.Tensor, loss_fn, scale: float = 1.0):
    """``(logits, d scale * loss_fn(logits) / d x)`` on ``method.net`` in train mode without parameter
    gradients (BatchNorm on batch statistics, as in the training forward; its running statistics
    are left as they were): the inner step of the methods whose attack compares with the
    training forward."""
    with frozen_model(method.net, "train"), torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        logits = method.forward(method.net, x_in)
        (grad,) = torch.autograd.grad(loss_fn(logits.float()) * scale, x_in)
    return logits.detach(), grad


def cosine_alignment(grad1: torch.Tensor, grad2: torch.Tensor) -> torch.Tensor:
    """Mean cosine between the per-sample gradients over the samples where neither is zero (0
    when there is none)."""
    g1, g2 = grad1.flatten(1).float(), grad2.flatten(1).float()
    n1, n2 = g1.norm(dim=1), g2.norm(dim=1)
    keep = (n1 != 0) & (n2 != 0)
    if not bool(keep.any()):
        return g2.sum() * 0.0
    cos = ((g1[keep] / n1[keep, None]) * (g2[keep] / n2[keep, None])).sum(1)
    return cos.mean()


class GradAlign(SingleStep):
    """FGSM training with the GradAlign regulariser (Andriushchenko & Flammarion, NeurIPS 2020).

    Args:
        cos_lambda: the regulariser's weight (0.2 at eps 8/255).
        step_factor: FGSM step in units of eps (1.0); an explicit ``alpha`` wins.
        random_start: True starts FGSM from a uniform point of the eps-box (FGSM-RS); the default
            False starts at x (the benchmark's and the paper's FGSM).
        other keyword arguments: as for :class:`Method`.

    Under fp16 autocast both input gradients are of the loss times the gradient scaler's scale (the
    cosine does not change; small gradients do not flush to zero).
    """

    name = "grad_align"

    def __init__(self, *, cos_lambda: float = 0.2, step_factor: float = 1.0, **kwargs):
        kwargs.setdefault("random_start", False)
        super().__init__(step_factor=step_factor, **kwargs)
        self.cos_lambda = non_negative("cos_lambda", cos_lambda)

    def perturbed(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0):
        """``(x_adv, grad)``: one FGSM step from x (or a uniform start) and the gradient at the start."""
        start = random_init(x, self.eps, "linf", self.bounds, generator=self.generator) if self.random_start else x
        _, grad = train_mode_gradient(self, start, lambda logits: F.cross_entropy(logits, y, reduction="sum"), scale)
        x_adv = pgd_step(start, x, grad, step=self.alpha, eps=self.eps, norm="linf", bounds=self.bounds)
        return x_adv, grad

    def batch_loss(self, model, x, y, ctx):
        scale = float(ctx.scaler.get_scale()) if ctx.scaler is not None else 1.0
        with ctx.autocast():
            x_adv, grad1 = self.perturbed(x, y, scale)
            torch.manual_seed(draw_seed(self.generator))  # as run_attack: fresh global noise
            logits = self.forward(model, x_adv)
            loss = cross_entropy(logits, y, ctx.targets)
            if self.cos_lambda > 0:
                noisy = random_init(x, self.eps, "linf", self.bounds, generator=self.generator).requires_grad_(True)
                loss_noisy = F.cross_entropy(self.forward(model, noisy).float(), y, reduction="sum") * scale
                (grad2,) = torch.autograd.grad(loss_noisy, noisy, create_graph=True)
                loss = loss + self.cos_lambda * (1.0 - cosine_alignment(grad1, grad2))
        return BatchResult(loss + self.regularizer(), logits)
