"""A training method's loss for a training loop you already have (no :func:`fit` needed).

    loss_fn = RobustLoss(model, "pgd-at", eps=8 / 255, normalization=(mean, std))
    for x, y in loader:                       # x in [0, 1], as the threat model's bounds
        result = loss_fn(x, y)                # attack on the unwrapped model, BatchNorm in eval
        optimizer.zero_grad()
        result.loss.backward()                # or scaler.scale(result.loss).backward()
        optimizer.step()
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..common import non_negative_int, rank_and_world
from .methods import Method, make_method
from .methods.base import BatchResult, StepContext
from .options import AUTOCAST
from .seeds import mix_seed


def unwrapped(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / DataParallel (attacks must not sync gradients)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def loop_method(method: str | Method = "pgd-at", **method_kwargs) -> Method:
    """The :class:`Method` a loop of the user's can run: a :func:`make_method` name with its
    keyword arguments, or a ``Method``; one that takes its own optimizer steps (Free AT) refused."""
    if isinstance(method, Method):
        if method_kwargs:
            raise TypeError(f"method is a Method already: pass {sorted(method_kwargs)} to its constructor")
    else:
        method = make_method(method, **method_kwargs)
    if type(method).train_step is not Method.train_step:
        raise ValueError(f"method {method.name!r} takes its own optimizer steps per batch: train it with fit()")
    return method


class RobustLoss:
    """The loss of a robust training method on one batch, for a loop you own.

    Args:
        model: the model you train (plain, DDP-wrapped or ``torch.compile``-d). The method's
            attack runs on the module under DDP, in eval mode (BatchNorm statistics untouched),
            as :func:`fit` runs it; the training forward runs on ``model`` in the mode you set.
        method: a name of :func:`make_method` (``"pgd-at"``, ``"trades"``, ``"n-fgsm"`` ...) with
            its keyword arguments (eps, steps, norm, bounds, normalization ...), or a
            :class:`Method`. Free AT, which takes its own optimizer steps, is refused: use fit.
        dataset_size: training examples, for methods whose KL term is per example (kl_weight).
        seed: the run's seed: the attack's random draws at call ``k`` are those of :func:`fit`'s
            step ``k`` with this seed (the same in every DDP process).
        autocast: ``None``, ``"bf16"`` or ``"fp16"``: the method's training forward under
            ``torch.autocast`` (attacks keep fp32 verdicts), as fit's ``autocast``.
        scaler: your ``torch.amp.GradScaler`` when you use one (methods that differentiate
            twice read its scale); scale the returned loss yourself.

    Side effect, as in fit: after an attack the global RNG is reseeded from the method's own
    generator (the attack restored it, and the training forward must not replay its LWTA / PNI
    draws).
    """

    def __init__(self, model: nn.Module, method: str | Method = "pgd-at", *, dataset_size: int | None = None,
                 seed: int = 0, autocast: str | None = None, scaler: torch.amp.GradScaler | None = None,
                 **method_kwargs):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        method = loop_method(method, **method_kwargs)
        seed = non_negative_int("seed", seed)
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
        if method.kl_weight > 0 and dataset_size is None:
            raise ValueError("dataset_size is needed: the method's KL term (kl_weight) is per training example")
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise TypeError(f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}")
        self.model, self.method, self.seed, self.step = model, method, int(seed), 0
        method.bind(unwrapped(model), dataset_size or 1, seed=self.seed)
        self._dtype, self._scaler, self._epoch = AUTOCAST[autocast], scaler, None

    def _context(self, x: torch.Tensor, index, targets) -> StepContext:
        dtype = self._dtype
        factory = (lambda: torch.autocast(x.device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
        return StepContext(autocast=factory, scaler=self._scaler, index=index, targets=targets)

    def _progress(self, progress) -> None:
        if progress is None:
            if self.method.eps_warmup_epochs:
                raise ValueError("the method ramps eps (eps_warmup_epochs): pass progress=(epochs_done, epochs)")
            return
        epochs_done, epochs = progress
        if self._epoch != int(epochs_done):
            self._epoch = int(epochs_done)
            self.method.start_epoch(self._epoch, int(epochs))
        self.method.set_progress(float(epochs_done), int(epochs))

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, index: torch.Tensor | None = None,
                 targets: torch.Tensor | None = None, progress: tuple[float, int] | None = None) -> BatchResult:
        """The loss to backpropagate and the logits, for the batch ``x`` [B, ...] in the bounds
        and labels ``y`` [B] int64.

        Args:
            index: [B] positions of the samples in the training set, for the methods that keep
                per-example state (ATTA, FGSM-PGI); refused by them when missing.
            targets: [B, K] soft targets (label smoothing, mixup) in place of ``y`` in the loss.
            progress: ``(epochs_done, epochs)``, e.g. ``(epoch + b / batches, epochs)``, for the
                methods that depend on the position in training (eps warm-up, per-epoch state).
        """
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("x and y must be tensors: x [B, ...] inputs in the bounds, y [B] int64 labels")
        if y.dim() != 1 or len(y) != len(x) or y.dtype != torch.int64:
            raise ValueError(f"y must be [B] int64 labels for x of {len(x)} samples, got {y.dtype} {list(y.shape)}")
        self._progress(progress)
        rank, _ = rank_and_world()
        self.method.generator.manual_seed(mix_seed(mix_seed(self.seed, self.step, rank), 1))  # fit's step k
        self.step += 1
        return self.method.batch_loss(self.model, x, y, self._context(x, index, targets))
