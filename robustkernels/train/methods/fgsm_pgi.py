"""FGSM-PGI (Jia et al., "Prior-Guided Adversarial Initialization for Fast Adversarial Training",
ECCV 2022) as the FastAT Benchmark runs it (Pan & Yao 2026, ``fast_at/fgsm_pgi.py`` with
``configs/cifar10/fgsm_pgi.yaml``): the momentum-based prior (the paper's FGSM-MEP) and the
prior-guided regulariser.

Each training sample keeps a perturbation ``delta`` and a gradient momentum ``m`` from its
previous visit. A batch starts at ``x_init = clip_bounds(x + delta)``, takes the gradient ``g`` of
the cross-entropy there (a training-mode forward of the trained network, whose logits the
regulariser reuses), and trains on ``x_adv = x + clip(delta + alpha sign(g))`` (clipped to the
eps-ball, then to the bounds) with the loss

    CE(f(x_adv), y) + lam * mean((f(x_adv) - f(x_init))^2)

(the squared L2 distance per logit, gradients through both outputs). The sample's prior becomes
``clip(delta + alpha sign(m'))`` with ``m' = g / ||g||_1 + mu m``, the L1 norm taken over the
whole batch as the benchmark does (all-reduced across processes under DDP: the global batch's).
Every ``reset_every`` epochs the perturbations restart at ``+-eps`` with random signs (the same
draws in every process) and the momenta at 0.

Defaults are the benchmark's CIFAR-10 config: alpha = eps, mu (``momentum_decay``) = 0.3,
``lam`` = 10, ``reset_every`` = 40; the benchmark also trains with label smoothing 0.4 (the
trainer's ``augmentations=["label_smoothing:0.4"]``, which the attack's loss uses too), weight
averaging 0.9995 and a one-cycle learning rate. As in the benchmark and the paper's code, the
prior lives in the frame of the (cropped, flipped) input the model sees: unlike ATTA's buffer it
does not follow the trainer's crop and flip. Linf only."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn import functional as F

from ...common import non_negative, positive_int
from ...ops.pgd import pgd_step, project
from ...ops.philox import philox_uniform
from ..seeds import mix_seed
from .base import BatchResult, Method, cross_entropy, soft_or_hard


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def training_gradient(method: Method, x_in: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, d CE(logits, target) / d x_in)`` from one training-mode forward of
    ``method.net`` (the benchmark's attack forward: the trained network as it trains); the logits
    keep their graph for a regulariser. ``target``: labels or soft targets, or a function of the
    logits giving them. The cross-entropy is summed over the batch: the sign and the
    L1-normalised momentum are those of the mean's gradient, with less underflow under fp16."""
    x_in = x_in.detach().requires_grad_(True)
    logits = method.forward(method.net, x_in)
    target = target(logits) if callable(target) else target
    (grad,) = torch.autograd.grad(F.cross_entropy(logits.float(), target, reduction="sum"), x_in, retain_graph=True)
    return logits, grad


class PriorGuided(Method):
    """The per-sample prior shared by FGSM-PGI and FGSM-MEP-CS: a perturbation and a gradient
    momentum per training sample (keyed by ``ctx.index``), the momentum-guided update of both,
    their periodic reset, the merge across processes and the checkpoint state."""

    single_step = True
    default_schedule = "cyclic"

    def __init__(self, *, reset_every: int = 40, momentum_decay: float = 0.3, **kwargs):
        kwargs.setdefault("steps", 1)
        alpha_given = kwargs.get("alpha") is not None
        super().__init__(**kwargs)
        if self.norm != "linf":
            raise ValueError(f"method {self.name} is defined for norm='linf'")
        if not alpha_given:
            self.target_alpha = self.target_eps
        self.reset_every = positive_int("reset_every", reset_every)
        self.momentum_decay = non_negative("momentum_decay", momentum_decay)
        self.delta: torch.Tensor | None = None  # [N, C, H, W] the stored perturbations
        self.momentum: torch.Tensor | None = None  # [N, C, H, W] the stored gradient momenta
        self.touched: torch.Tensor | None = None  # [N] bool: written by this process since the last sync
        self.resets = 0

    def start_epoch(self, epoch, epochs):
        self.resets = epoch // self.reset_every
        if self.delta is not None and epoch % self.reset_every == 0:
            self.reset()

    def reset(self) -> None:
        """Perturbations to ``+-eps`` (random signs, from the stream keyed by (seed, reset): the
        same in every process), momenta to 0."""
        u = philox_uniform(self.delta.numel(), mix_seed(self.seed, self.resets, 12), device=self.delta.device)
        self.delta.copy_(torch.where(u < 0.5, -self.target_eps, self.target_eps).view_as(self.delta))
        self.momentum.zero_()

    def prior(self, x: torch.Tensor, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's stored (perturbation, momentum), the perturbation in the current eps-ball."""
        if ctx.index is None:
            raise ValueError(f"method {self.name} keeps a perturbation per training sample: it needs the sample "
                             "indices, their positions in the training set (RobustLoss(...)(x, y, index=...), or fit)")
        if self.delta is None:
            n = self.dataset_size
            self.delta = torch.empty(n, *x.shape[1:], device=x.device)
            self.momentum = torch.zeros_like(self.delta)
            self.touched = torch.zeros(n, dtype=torch.bool, device=x.device)
            self.reset()
        index = ctx.index.to(self.delta.device)
        delta = self.delta[index].clamp(-self.eps, self.eps)
        return delta.to(device=x.device, dtype=x.dtype), self.momentum[index].to(device=x.device, dtype=x.dtype)

    def guided_steps(self, x, delta, momentum, grad) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_adv, next perturbation, next momentum)``: one FGSM step of size alpha from
        ``x + delta`` along ``sign(grad)``, and the prior's step along the sign of the momentum,
        both clipped to the eps-ball and the bounds."""
        norm = grad.float().abs().sum()
        if distributed():
            dist.all_reduce(norm)
        norm = norm.clamp_min(torch.finfo(torch.float32).tiny).to(grad.dtype)  # an all-zero gradient: no NaN
        momentum = grad / norm + self.momentum_decay * momentum
        start = x + delta
        options = dict(step=self.alpha, eps=self.eps, norm="linf", bounds=self.bounds)
        x_adv = pgd_step(start, x, grad, **options)
        next_delta = pgd_step(start, x, momentum, **options) - x
        return x_adv.detach(), next_delta.detach(), momentum.detach()

    def write_back(self, delta: torch.Tensor, momentum: torch.Tensor, ctx) -> None:
        index = ctx.index.to(self.delta.device)
        self.delta[index] = delta.to(self.delta)
        self.momentum[index] = momentum.to(self.momentum)
        self.touched[index] = True

    def synchronize(self):
        """Across processes each sample was written by at most one since the last sync: take it from there."""
        if self.delta is None or not distributed():
            return
        mask = self.touched.float()
        dist.all_reduce(mask)
        written = mask > 0
        keep = self.touched.view(-1, *[1] * (self.delta.dim() - 1))
        for buffer in (self.delta, self.momentum):
            values = buffer * keep
            dist.all_reduce(values)
            buffer[written] = values[written]
        self.touched.zero_()

    def state_dict(self):
        return {"delta": self.delta, "momentum": self.momentum, "resets": self.resets}

    def load_state_dict(self, state):
        self.delta, self.momentum, self.resets = state.get("delta"), state.get("momentum"), state.get("resets", 0)
        if self.delta is not None:
            if self.momentum is None:
                self.momentum = torch.zeros_like(self.delta)
            self.touched = torch.zeros(len(self.delta), dtype=torch.bool, device=self.delta.device)


class FGSMPGI(PriorGuided):
    """FGSM-PGI: FGSM from the momentum-guided prior of each sample, with the prior-guided
    regulariser ``lam * mean((f(x_adv) - f(x_init))^2)``; see the module's docstring.

    Args:
        lam: weight of the regulariser (the benchmark's ``lamda``, 10).
        momentum_decay: decay of the stored gradient momentum (0.3).
        reset_every: epochs between resets of the prior (``epochs_reset``, 40).
        alpha: step size (default eps); other arguments as :class:`Method`.
    """

    name = "fgsm_pgi"

    def __init__(self, *, lam: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        self.lam = non_negative("lam", lam)

    def batch_loss(self, model, x, y, ctx):
        delta, momentum = self.prior(x, ctx)
        with ctx.autocast():
            x_init = project(x + delta, x, eps=self.eps, norm="linf", bounds=self.bounds)
            logits_init, grad = training_gradient(self, x_init, soft_or_hard(y, ctx))
            x_adv, next_delta, momentum = self.guided_steps(x, delta, momentum, grad)
            logits = self.forward(model, x_adv)
        self.write_back(next_delta, momentum, ctx)
        loss = cross_entropy(logits, y, ctx.targets) + self.lam * F.mse_loss(logits.float(), logits_init.float())
        return BatchResult(loss + self.regularizer(), logits)
