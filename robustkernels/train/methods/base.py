"""What every training method shares: the threat model, the attack built on the unwrapped
model, the optional ELBO (LWTA / IBP KL) term, and one optimizer step per batch."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ...attacks import PGD
from ...common import frozen_model, non_negative, positive_int
from ...data import CropFlip
from ...nn.ibp import ibp_kl
from ...nn.lwta import LWTA, lwta_kl
from ...ops import draw_seed
from ...threat import ThreatModel, default_step, normalize


@dataclass
class StepContext:
    """How the trainer runs a step: the autocast context factory and the gradient scaler, and for
    the batch at hand the dataset indices of its samples and the crop/flip applied to it."""

    autocast: object = contextlib.nullcontext
    scaler: torch.amp.GradScaler | None = None
    index: torch.Tensor | None = None  # [n] int64, positions in the training data
    augment: CropFlip | None = None  # the transform the trainer applied to x (None: none)
    targets: torch.Tensor | None = None  # [n, K] soft training targets (label smoothing, mixup), or None


@dataclass
class BatchResult:
    """A method's loss on one batch and the logits its training accuracy is reported on."""

    loss: torch.Tensor
    logits: torch.Tensor


class Method:
    """A training method: :meth:`batch_loss` on one batch; the trainer owns data, optimizer and logs.

    Args:
        eps: radius of the threat model (inputs in ``bounds``).
        alpha: attack step size (default ``2.5 * eps / steps``, Madry et al.'s rule).
        steps: attack iterations.
        norm: ``"linf"`` or ``"l2"``.
        bounds, normalization: as for the attacks.
        kl_weight: weight of the KL terms of LWTA / IBP layers (negative ELBO), per training
            example; > 0 switches KL tracking on in the model's LWTA layers.
        eps_warmup_epochs: ramp eps (and alpha with it) linearly from 0 to their values over
            this many epochs, batch by batch (0: no ramp). The ramp is a function of the
            position in training, so a resumed run continues it exactly.

    ``target_eps`` / ``target_alpha`` are the configured values; ``eps`` / ``alpha`` the ones in
    force for the current batch (equal to them after the warm-up).
    """

    name = ""
    single_step = False  # one gradient per example: prone to catastrophic overfitting
    # the threat model's space, read-only (eps ramps: it is the method's own)
    norm = property(lambda self: self.space.norm)
    bounds = property(lambda self: self.space.bounds)
    normalization = property(lambda self: self.space.normalization)

    def __init__(self, *, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10, norm: str = "linf",
                 bounds=(0.0, 1.0), normalization=None, kl_weight: float = 0.0, random_start: bool = True,
                 eps_warmup_epochs: float = 0):
        self.target_eps = non_negative("eps", eps)
        self.steps = positive_int("steps", steps)
        self.target_alpha = default_step(eps, self.steps) if alpha is None else non_negative("alpha", alpha)
        self.eps_warmup_epochs = non_negative("eps_warmup_epochs", eps_warmup_epochs)
        self.eps_scale = 1.0
        self.space = ThreatModel.build(eps, norm, bounds, normalization)  # eps apart: it ramps
        self.kl_weight = non_negative("kl_weight", kl_weight)
        self.random_start = bool(random_start)
        self.net: nn.Module | None = None
        self.generator = torch.Generator()
        self.dataset_size = 1

    # -- set-up by the trainer ---------------------------------------------------------------
    def bind(self, net: nn.Module, dataset_size: int, seed: int = 0) -> None:
        """``net``: the model without DDP wrapping (attacks run on it, never syncing gradients);
        ``seed``: the run's seed (the same in every process)."""
        self.net, self.dataset_size, self.seed = net, max(int(dataset_size), 1), seed
        if self.kl_weight > 0:
            for module in net.modules():
                if isinstance(module, LWTA):
                    module.track_kl = True

    @property
    def eps(self) -> float:
        return self.target_eps * self.eps_scale

    @property
    def alpha(self) -> float:
        return self.target_alpha * self.eps_scale

    def set_progress(self, epochs_done: float, epochs: int) -> None:
        """Called before every batch with the training progress in epochs (``epoch + b / batches``)
        and the run's length; what depends on the position in training is set here, so that a
        run resumed mid-epoch sets it the same way."""
        warmup = self.eps_warmup_epochs
        self.eps_scale = min(1.0, epochs_done / warmup) if warmup > 0 else 1.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (0-based); not called again when a run resumes mid-epoch."""

    def end_validation(self, clean_acc: float, adv_acc: float) -> None:
        """Called with the validation accuracies after each epoch (if there is validation data)."""

    def epoch_metrics(self) -> dict:
        """Extra figures for the epoch's log line."""
        return {"eps": self.eps} if self.eps_warmup_epochs else {}

    def synchronize(self) -> None:
        """Called on every process before a checkpoint: merge per-process state (e.g. ATTA's buffer)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # -- the attack -------------------------------------------------------------------------
    def attack_options(self) -> dict:
        """The keyword arguments every attack of this method shares: the threat model's space
        (norm, bounds, normalisation) and the method's generator."""
        return {**self.space.space_kwargs(), "generator": self.generator}

    def attack(self, **kwargs) -> PGD:
        """PGD on ``self.net`` (eval mode, no parameter gradients) with this method's settings."""
        options = dict(eps=self.eps, alpha=self.alpha, steps=self.steps, random_start=self.random_start)
        return PGD(self.net, **{**options, **self.attack_options(), **kwargs})

    def run_attack(self, attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``attack(x, y)``, then fresh global noise: attacks restore the global RNG on exit, so
        the training forward would otherwise replay the attack's LWTA / PNI draws."""
        x_adv = attack(x, y)
        torch.manual_seed(draw_seed(self.generator))
        return x_adv

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(normalize(x, self.normalization))

    def input_gradient(self, x: torch.Tensor, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, d loss_fn(logits) / d x)`` on ``self.net`` in eval mode without parameter
        gradients: the inner step of the methods that run their own attack loop."""
        with frozen_model(self.net, "eval"), torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logits = self.forward(self.net, x_in)
            (grad,) = torch.autograd.grad(loss_fn(logits.float()), x_in)
        return logits.detach(), grad

    def regularizer(self) -> torch.Tensor | float:
        if self.kl_weight == 0:
            return 0.0
        return self.kl_weight * (ibp_kl(self.net) + lwta_kl(self.net)) / self.dataset_size

    # -- one batch --------------------------------------------------------------------------
    def batch_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> BatchResult:
        raise NotImplementedError

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, x: torch.Tensor,
                   y: torch.Tensor, ctx: StepContext) -> BatchResult:
        """One optimizer step on the batch; ``model`` may be DDP-wrapped."""
        result = self.batch_loss(model, x, y, ctx)
        backward_and_step(result.loss, optimizer, scheduler, ctx)
        return result

    steps_per_batch = 1  # optimizer steps per batch (free AT replays the batch)


def backward_and_step(loss: torch.Tensor, optimizer, scheduler, ctx: StepContext) -> None:
    optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-mean CE against the labels ``y``, or the soft ``targets`` [B, K] when the trainer's
    augmentations made some (label smoothing, mixup, cutmix)."""
    return F.cross_entropy(logits.float(), y if targets is None else targets)


def soft_or_hard(y: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """The training target: the soft targets of the batch's augmentations, else the labels."""
    return y if ctx.targets is None else ctx.targets


def summed_cross_entropy(y: torch.Tensor):
    """The attack loss ``logits -> sum of per-sample CE``: each sample's gradient is its own."""
    return lambda logits: F.cross_entropy(logits, y, reduction="sum")
