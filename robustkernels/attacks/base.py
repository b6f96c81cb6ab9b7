"""What every attack shares: argument checks, the model wrapper (normalisation, EOT), the
objective and its input gradient, and leaving the caller's model and RNG as they were."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..ops._random import draw_seed
from ..ops.pgd import broadcast_bounds, check_norm, per_sample, pgd_step
from .losses import LOSSES, objective

MODEL_MODES = ("eval", "train", "keep")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


def normalize(x: torch.Tensor, normalization: Sequence | None) -> torch.Tensor:
    """``(x - mean) / std`` per channel (dim 1) for ``normalization=(mean, std)``; x if None."""
    if normalization is None:
        return x
    mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device).view(1, -1, *[1] * (x.dim() - 2))
                 for v in normalization)
    return (x - mean) / std


@contextlib.contextmanager
def frozen_model(model: nn.Module, mode: str) -> Iterator[None]:
    """Put ``model`` in ``mode`` with no parameter gradients; restore every module's training
    flag, every parameter's ``requires_grad`` and the global RNG state on exit."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    cpu_rng = torch.get_rng_state()
    if mode != "keep":
        model.train(mode == "train")
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class Attack:
    """Base class: ``x_adv = attack(x, y)`` (targeted: ``attack(x, y, target)``).

    Args:
        model: returns logits [B, K] for inputs in the normalised space.
        eps: radius of the threat model (Linf or L2), in input units (inputs in [0, 1] by default).
        norm: ``"linf"`` or ``"l2"``.
        bounds: the valid input range ``(lo, hi)``, floats or per-channel tensors.
        normalization: ``(mean, std)`` per channel: the model sees ``(x - mean) / std``.
        loss: ``"ce"``, ``"margin"`` (CW-Linf) or ``"dlr"``.
        targeted: if True, ``target`` labels are required and the attack pushes towards them.
        eot_iter: gradients averaged over this many forward passes (stochastic models).
        early_stop: stop moving samples that are already misclassified (for evaluation).
        model_mode: run the model in ``"eval"`` (default), ``"train"`` or ``"keep"`` mode.
        generator: source of the random starts (default: one seeded from the default generator
            when the attack is built). The global RNG state is restored after every call.
    """

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", bounds=(0.0, 1.0),
                 normalization: Sequence | None = None, loss: str = "ce", targeted: bool = False, eot_iter: int = 1,
                 early_stop: bool = False, model_mode: str = "eval", generator: torch.Generator | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        check_norm(norm)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if model_mode not in MODEL_MODES:
            raise ValueError(f"model_mode must be one of {MODEL_MODES}, got {model_mode!r}")
        if normalization is not None and (not isinstance(normalization, (tuple, list)) or len(normalization) != 2):
            raise TypeError("normalization must be a (mean, std) pair")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.model, self.norm, self.bounds, self.loss = model, norm, bounds, loss
        self.eps = _non_negative("eps", eps)
        self.normalization = normalization
        self.targeted, self.early_stop, self.model_mode = bool(targeted), bool(early_stop), model_mode
        self.eot_iter = _positive_int("eot_iter", eot_iter)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(draw_seed())
        self._unchecked_labels = True

    # -- the public call -------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, y, target)
        with frozen_model(self.model, self.model_mode):
            x_adv = self.perturb(x.detach(), y, target)
        return x_adv.detach()

    def perturb(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(x, self.normalization))

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        if self._unchecked_labels:
            classes = logits.shape[1]
            for name, labels in (("y", y), ("target", target)):
                if labels is not None and int(labels.max()) >= classes:
                    raise ValueError(f"{name} has labels >= the model's {classes} classes")
            self._unchecked_labels = False
        return objective(self.loss, logits, y, target if self.targeted else None)

    def loss_and_grad(self, x_adv: torch.Tensor, y, target):
        """Per-sample objective [B], its input gradient, and logits, averaged over eot_iter passes."""
        total_loss, total_grad, total_logits = 0.0, torch.zeros_like(x_adv), 0.0
        for _ in range(self.eot_iter):
            x_in = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.logits(x_in)
                value = self.objective(logits, y, target)
                (grad,) = torch.autograd.grad(value.sum(), x_in)
            total_loss = total_loss + value.detach()
            total_grad += grad
            total_logits = total_logits + logits.detach()
        k = self.eot_iter
        return total_loss / k, total_grad / k, total_logits / k

    def succeeded(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        prediction = logits.argmax(dim=1)
        return prediction == target if self.targeted else prediction != y

    def step(self, x_adv, x, grad, step, out=None):
        return pgd_step(x_adv, x, grad, step=step, eps=self.eps, norm=self.norm, bounds=self.bounds, out=out)

    def step_sizes(self, value, x) -> torch.Tensor:
        return per_sample(value, "step", x)

    # -- checks ----------------------------------------------------------------------------
    def _check_inputs(self, x, y, target) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point Tensor")
        if x.dim() < 2:
            raise ValueError(f"x must be batched [B, ...], got shape {list(x.shape)}")
        for name, labels in (("y", y), ("target", target)):
            if labels is None:
                continue
            if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name} must be an integer Tensor of class labels")
            if labels.shape != (x.shape[0],):
                raise ValueError(f"{name} must have shape [{x.shape[0]}] to match x, got {list(labels.shape)}")
            if labels.device != x.device:
                raise ValueError(f"{name} is on {labels.device} but x is on {x.device}")
            if x.shape[0] and int(labels.min()) < 0:
                raise ValueError(f"{name} has negative labels")
        if self.targeted and target is None:
            raise ValueError("a targeted attack needs target labels: attack(x, y, target)")
        if not self.targeted and target is not None:
            raise ValueError("target labels given to an untargeted attack (build it with targeted=True)")
        if bool(x.isnan().any()):
            raise ValueError("x contains NaN")
        lo, hi = broadcast_bounds(self.bounds, x)
        if bool((x < lo).any()) or bool((x > hi).any()):
            raise ValueError(f"x must lie within bounds {self.bounds}")
        self._unchecked_labels = True
