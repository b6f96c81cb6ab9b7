"""AAER (Lin et al., NeurIPS 2023, "Eliminating Catastrophic Overfitting Via Abnormal Adversarial
Examples Regularization"): FGSM-RS training plus a regulariser on the abnormal adversarial
examples (AAEs), those whose loss the FGSM step *lowered*.

From the start x' = x + U(-eps, eps) (clamped to the bounds) one FGSM step of size 1.25 eps gives
x_adv (projected onto the eps-ball and the bounds). With l the per-sample CE, sample i is abnormal
when ``l(x'_i) > l(x_adv_i)``; with m abnormal samples of n, both sets non-empty,

    loss = CE(f(x_adv), y) + lambda1 * m / n * (lambda2 * CE_AAE + lambda3 * clip(V_A - V_N, 0, 100)),

``CE_AAE = mean over AAEs of l(x') - l(x_adv)`` and ``V_A`` / ``V_N`` the mean over the abnormal /
normal samples of ``||f(x') - f(x_adv)||^2`` (f(x') held fixed; ``V_N`` a constant). As in the
reference implementations, ``CE_AAE`` is a value of the loss with no gradient (both of its losses
are taken detached); the variation term carries the regulariser's gradient. The start's forward
and gradient are in train mode (batch statistics), like the training forward they are compared
with.

Defaults follow the FastAT Benchmark (Pan & Yao 2026, ``fast_at/aaer.py`` and
``configs/cifar10/rs_aaer.yaml``, RS-AAER: eps 8/255, ``lamda1`` 1.0, ``lamda2`` 2.5, ``lamda3`` 1.5,
``clamp: 1``, ``fgsm_alpha`` 1.25, ``delta_init: random``; its clip of ``V_A - V_N`` to [-100, 100]).
CIFAR-100's config takes ``lambda2=3.5``; the benchmark's N-AAER (``n_aaer.yaml``) is
``lambda2=1.5, lambda3=0.15, step_factor=1.0, noise_factor=2.0, project=False``. Soft training
targets (label smoothing, mixup) enter only the CE on x_adv; the attack and the abnormal test take
the labels. Linf only."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ...common import non_negative
from ...ops import draw_seed
from ...ops.pgd import pgd_step, random_init
from .base import BatchResult, cross_entropy
from .grad_align import train_mode_gradient
from .nuat import SingleStep

VARIATION_CLIP = 100.0  # the benchmark's clip of V_A - V_N ("to prevent numerical instability")


def squared_variation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over the rows of ``||a_i - b_i||^2``."""
    return (a - b).pow(2).sum(1).mean()


class AAER(SingleStep):
    """FGSM-RS training with abnormal adversarial examples regularisation (Lin et al., NeurIPS 2023).

    Args:
        lambda1, lambda2, lambda3: the weights of the regulariser, its AAE-CE and its variation
            terms (RS-AAER on CIFAR-10: 1.0, 2.5, 1.5).
        step_factor: FGSM step in units of eps (1.25); an explicit ``alpha`` wins.
        noise_factor: the start is uniform in the box of ``noise_factor * eps`` (1.0; N-AAER 2.0).
        project: project the FGSM point onto the eps-ball (the benchmark's ``clamp``, True).
        random_start: False starts FGSM at x (``delta_init: zero``).
        other keyword arguments: as for :class:`Method`.
    """

    name = "aaer"

    def __init__(self, *, lambda1: float = 1.0, lambda2: float = 2.5, lambda3: float = 1.5, step_factor: float = 1.25,
                 noise_factor: float = 1.0, project: bool = True, **kwargs):
        super().__init__(step_factor=step_factor, **kwargs)
        self.lambda1 = non_negative("lambda1", lambda1)
        self.lambda2 = non_negative("lambda2", lambda2)
        self.lambda3 = non_negative("lambda3", lambda3)
        self.noise_factor = non_negative("noise_factor", noise_factor)
        if not isinstance(project, bool):
            raise TypeError(f"project must be a bool, got {type(project).__name__}")
        self.project = project

    def perturbed(self, x: torch.Tensor, y: torch.Tensor):
        """``(x_adv, logits at the start)``: one FGSM step from the uniform start."""
        if self.random_start:
            start = random_init(x, self.noise_factor * self.eps, "linf", self.bounds, generator=self.generator)
        else:
            start = x
        ce = lambda logits: F.cross_entropy(logits, y, reduction="sum")  # noqa: E731
        logits_start, grad = train_mode_gradient(self, start, ce)
        eps = self.eps if self.project else math.inf
        return pgd_step(start, x, grad, step=self.alpha, eps=eps, norm="linf", bounds=self.bounds), logits_start

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv, logits_start = self.perturbed(x, y)
            torch.manual_seed(draw_seed(self.generator))  # as run_attack: fresh global noise
            logits = self.forward(model, x_adv)
        start, adv = logits_start.float(), logits.float()
        loss_before = F.cross_entropy(start, y, reduction="none")
        loss_after = F.cross_entropy(adv.detach(), y, reduction="none")
        abnormal = loss_before > loss_after
        count = int(abnormal.sum())
        loss = cross_entropy(logits, y, ctx.targets)
        if 0 < count < len(y):
            ce_abnormal = (loss_before - loss_after)[abnormal].mean()
            gap = squared_variation(start[abnormal], adv[abnormal]) - squared_variation(start[~abnormal],
                                                                                          adv[~abnormal]).detach()
            gap = gap.clamp(-VARIATION_CLIP, VARIATION_CLIP).clamp_min(0.0)
            loss = loss + self.lambda1 * count / len(y) * (self.lambda2 * ce_abnormal + self.lambda3 * gap)
        return BatchResult(loss + self.regularizer(), logits)
