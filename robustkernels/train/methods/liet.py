"""LIET (Pan et al., "Mitigating Catastrophic Overfitting in Fast Adversarial Training via
Label Information Elimination", ICCV 2025) as the FastAT Benchmark runs it (Pan & Yao 2026,
``fast_at/liet.py`` with ``configs/cifar10/liet.yaml``; the same loop as the paper's code,
github.com/fzjcdt/LIET ``main.py``).

Every ``li_update`` batches of an epoch (from its first) the method refreshes the label
information ``LI``: for each class k, ``eps sign`` of the gradient of the loss of class k at a
constant mid-grey image (0.5 for [0, 1] inputs), the network in eval mode. A batch starts from
``delta = LI[y]`` with a random share of its elements (each with probability ``r ~ U(min_mask_ratio,
max_mask_ratio)``, one r per batch) replaced by uniform noise ``U(-eps, eps)``, at
``x_0 = clip_bounds(x - delta)`` or ``clip_bounds(x + delta)`` (a fair coin per batch), takes one
FGSM step of size alpha = eps from there (gradient from a training-mode forward) to ``x_adv``,
projected onto the eps-ball and the bounds, and trains on

    CE(f(x_adv), t) + lambda_e * JS(softmax f(x_0), softmax f(x_adv))

(gradients through both outputs), the Jensen-Shannon term weighted by ``lambda_e = lam (e + 1) /
epochs`` in epoch e (0-based: up to ``lam`` in the last). ``t`` is the paper's random label
smoothing: ``1 - smoothing`` on the true class and ``smoothing`` spread over the others in random
proportions, drawn afresh for every loss (on top of the trainer's soft targets, if any). With
``wide_noise`` (by default: eps > 8/255, the paper's rule for its large-eps settings) the noise
is ``U(-2 eps, 2 eps)`` and the step is not projected onto the eps-ball (only the bounds).

Defaults are the benchmark's CIFAR-10 config: ``lam`` 100, ``min_mask_ratio`` 0.1,
``max_mask_ratio`` 0.5, ``li_update`` 20, ``smoothing`` 0.6 (its ``label_smoothing``: train
without the trainer's label smoothing to match it; its CIFAR-100 config takes ``smoothing`` 0.8
and ``lam`` 200); it also trains with weight averaging 0.9995 and a one-cycle learning rate.

Random draws per batch, from the method's generator: the mask ratio and the coin (two CPU
uniforms), then one Philox seed for the mask, the noise and the two losses' smoothing, in that
order; a refresh of LI first draws one seed for its own smoothing. Under DDP the LI of process 0
is broadcast, so that every process (and a resumed run) uses the same. Linf only."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch.nn import functional as F

from ...common import frozen_model, non_negative, positive_int
from ...ops import draw_seed
from ...ops.pgd import broadcast_bounds, pgd_step, project
from ...ops.philox import philox_uniform
from .base import BatchResult, Method
from .fgsm_pgi import distributed, training_gradient


def random_smoothing(targets: torch.Tensor, y: torch.Tensor, smoothing: float, u: torch.Tensor) -> torch.Tensor:
    """``(1 - smoothing) targets + smoothing r``, ``r`` the uniforms ``u`` [B, K] with the true
    class zeroed, normalised to sum 1 (LIET's non-uniform label smoothing)."""
    r = u.masked_fill(F.one_hot(y, targets.shape[1]).bool(), 0.0)
    return (1.0 - smoothing) * targets + smoothing * r / r.sum(dim=1, keepdim=True)


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """``(KL(p || m) + KL(q || m)) / 2`` per sample, averaged, ``m = (p + q) / 2`` (as the paper writes it)."""
    p, q = F.softmax(logits_a.float(), dim=1), F.softmax(logits_b.float(), dim=1)
    m = ((p + q) / 2).clamp(0, 1).log()
    return (F.kl_div(m, p, reduction="batchmean") + F.kl_div(m, q, reduction="batchmean")) / 2


class LIET(Method):
    """LIET: FGSM from label information with a share of it replaced by noise, and a JS consistency
    term; see the module's docstring.

    Args:
        lam: the JS term's final weight (100), reached linearly over the run.
        min_mask_ratio, max_mask_ratio: range of the share of LI replaced by noise (0.1, 0.5).
        li_update: batches between refreshes of LI (20).
        smoothing: the random label smoothing (0.6); 0 for none.
        wide_noise: noise U(-2 eps, 2 eps) and no projection onto the eps-ball (None: when eps > 8/255).
        alpha: step size (default eps); other arguments as :class:`Method`.
    """

    name = "liet"
    single_step = True
    default_schedule = "cyclic"

    def __init__(self, *, lam: float = 100.0, min_mask_ratio: float = 0.1, max_mask_ratio: float = 0.5,
                 li_update: int = 20, smoothing: float = 0.6, wide_noise: bool | None = None, **kwargs):
        kwargs.setdefault("steps", 1)
        alpha_given = kwargs.get("alpha") is not None
        super().__init__(**kwargs)
        if self.norm != "linf":
            raise ValueError("method liet is defined for norm='linf'")
        if not alpha_given:
            self.target_alpha = self.target_eps
        self.lam = non_negative("lam", lam)
        self.min_mask_ratio = non_negative("min_mask_ratio", min_mask_ratio)
        self.max_mask_ratio = non_negative("max_mask_ratio", max_mask_ratio)
        if self.max_mask_ratio > 1:
            raise ValueError(f"max_mask_ratio must be <= 1, got {max_mask_ratio}")
        if self.min_mask_ratio > self.max_mask_ratio:
            raise ValueError(f"min_mask_ratio must be <= max_mask_ratio, got {min_mask_ratio} > {max_mask_ratio}")
        self.li_update = positive_int("li_update", li_update)
        self.smoothing = non_negative("smoothing", smoothing)
        if self.smoothing >= 1:
            raise ValueError(f"smoothing must be < 1, got {smoothing}")
        if wide_noise is not None and not isinstance(wide_noise, bool):
            raise TypeError(f"wide_noise must be a bool or None, got {type(wide_noise).__name__}")
        self.wide_noise = self.target_eps > 8 / 255 if wide_noise is None else wide_noise
        self.weight = self.lam  # lambda_e, set by set_progress
        self.li: torch.Tensor | None = None  # [K, C, H, W] sign of each class's label information
        self.batch = 0  # batches of the epoch done
        self.num_classes: int | None = None

    def set_progress(self, epochs_done, epochs):
        super().set_progress(epochs_done, epochs)
        self.weight = self.lam * (math.floor(epochs_done) + 1) / max(epochs, 1)

    def start_epoch(self, epoch, epochs):
        self.batch = 0

    def classes(self, x: torch.Tensor, ctx) -> int:
        if self.num_classes is None:
            if ctx.targets is not None:
                self.num_classes = ctx.targets.shape[1]
            else:
                with frozen_model(self.net, "eval"), torch.no_grad():
                    self.num_classes = self.forward(self.net, x[:1]).shape[1]
        return self.num_classes

    def refresh(self, x: torch.Tensor, ctx) -> None:
        """LI's signs: the gradient of each class's (smoothed) loss at the mid-grey image, eval mode."""
        k = self.classes(x, ctx)
        lo, hi = broadcast_bounds(self.bounds, x)
        grey = ((lo + hi) / 2).to(x.dtype).expand(k, *x.shape[1:]).contiguous()
        labels = torch.arange(k, device=x.device)
        targets = F.one_hot(labels, k).float()
        if self.smoothing > 0:
            u = philox_uniform(k * k, draw_seed(self.generator), device=x.device, per_block=4).view(k, k)
            targets = random_smoothing(targets, labels, self.smoothing, u)
        with ctx.autocast():
            _, grad = self.input_gradient(grey, lambda logits: F.cross_entropy(logits, targets, reduction="sum"))
        self.li = grad.sign()
        if distributed():
            dist.broadcast(self.li, src=0)

    def batch_loss(self, model, x, y, ctx):
        if self.li is None or self.batch % self.li_update == 0:
            self.refresh(x, ctx)
        self.batch += 1
        ratio, coin = torch.rand(2, generator=self.generator, dtype=torch.float64).tolist()
        ratio = self.min_mask_ratio + ratio * (self.max_mask_ratio - self.min_mask_ratio)
        n, size = x.numel(), len(x) * self.li.shape[0]
        u = philox_uniform(2 * n + 2 * size, draw_seed(self.generator), device=x.device, per_block=4)
        reach = (2 if self.wide_noise else 1) * self.eps
        noise = ((2 * u[n:2 * n] - 1) * reach).view_as(x).to(x.dtype)
        delta = torch.where(u[:n].view_as(x) < ratio, noise, self.eps * self.li[y].to(x.dtype))
        start = project(x - delta if coin < 0.5 else x + delta, x, eps=math.inf, norm="linf", bounds=self.bounds)
        targets = F.one_hot(y, self.li.shape[0]).float() if ctx.targets is None else ctx.targets.float()
        if self.smoothing > 0:
            first, second = u[2 * n:2 * n + size].view_as(targets), u[2 * n + size:].view_as(targets)
            targets_start = random_smoothing(targets, y, self.smoothing, first)
            targets = random_smoothing(targets, y, self.smoothing, second)
        else:
            targets_start = targets
        with ctx.autocast():
            logits_start, grad = training_gradient(self, start, targets_start)
            x_adv = pgd_step(start, x, grad, step=self.alpha, eps=math.inf if self.wide_noise else self.eps,
                             norm="linf", bounds=self.bounds).detach()
            logits = self.forward(model, x_adv)
        loss = F.cross_entropy(logits.float(), targets) + self.weight * js_divergence(logits_start, logits)
        return BatchResult(loss + self.regularizer(), logits)

    def state_dict(self):
        return {"li": self.li, "batch": self.batch}

    def load_state_dict(self, state):
        self.li, self.batch = state.get("li"), state.get("batch", 0)
