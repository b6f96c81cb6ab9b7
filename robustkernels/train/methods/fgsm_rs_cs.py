"""FGSM-RS-CS: FGSM-RS with ConvergeSmooth (Zhao, Zhang, Kong & Yin, "Fast Adversarial Training
with Smooth Convergence", ICCV 2023), as the FastAT Benchmark runs it (Pan & Yao 2026,
``fast_at/fgsm_rs_cs.py`` with ``configs/cifar10/fgsm_rs_cs.yaml``; the same loop as the paper's
``FGSM_RS_CS.py``).

ConvergeSmooth is an oscillatory constraint on the "normal" loss ``L_n`` between adjacent epochs:
with ``L_prev`` the previous epoch's mean of ``L_n`` and ``beta`` its change over the epoch before,
a batch whose ``|L_n - L_prev|`` exceeds ``min(max(gamma / ratio, beta), gamma)`` adds
``w * L_n`` to its loss when ``L_n`` rose (under-fitting) and subtracts it when ``L_n`` fell
(over-fitting, where catastrophic overfitting shows). The constraint is off within ``stride``
epochs of the ``decay_epochs`` (the paper's learning-rate decays ``[0, 100, 105, 110]``): on in
epoch e when ``a + stride < e < b - stride`` for consecutive entries a, b (epochs 2 to 98 with the
defaults). The benchmark's optional regularisers (``reg_single`` / ``reg_multi``, off in all its
configs) are not implemented.

FGSM-RS-CS: from ``x_0 = clip_bounds(x + U(-eps, eps))``, one step ``x_adv = clip_bounds(x_0 +
alpha sign(g))`` (alpha = eps, the gradient ``g`` of CE(f(x_0), y) from a training-mode forward;
**not** projected back onto the eps-ball, as in both codes: up to 2 eps), the loss
``CE(f(x_adv), s) + CS(L_n)`` with ``L_n = CE(f(x_0), s)`` (the benchmark's "benign" loss is taken
at the random start) and ``s`` the targets smoothed to ``factor`` on the true class (0.6; on top of
the trainer's label smoothing, as the benchmark stacks its 0.4 smoothing on them).

Defaults are the benchmark's CIFAR-10 config: ``factor`` 0.6, ``gamma`` 0.03, ``ratio`` 1,
``stride`` 1, ``cs_weight`` (w2) 1, ``decay_epochs`` (0, 100, 105, 110); it also trains with
label smoothing 0.4 (``augmentations=["label_smoothing:0.4"]``), weight averaging 0.9995 and a
one-cycle learning rate. The epoch means are summed over processes under DDP. Linf only."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch.nn import functional as F

from ...common import is_number, non_negative
from ...ops.pgd import pgd_step, random_init
from .base import BatchResult, Method, soft_or_hard
from .fgsm_pgi import training_gradient


def factor_smoothed(logits: torch.Tensor, y: torch.Tensor, ctx, factor: float) -> torch.Tensor:
    """The ConvergeSmooth / PGI code's label smoothing: ``factor`` on the true class and
    ``(1 - factor) / (K - 1)`` on each other, applied to the batch's targets (one-hot, or the
    trainer's soft targets: both smoothings mix with the uniform distribution, so they compose)."""
    k = logits.shape[1]
    targets = F.one_hot(y, k).float() if ctx.targets is None else ctx.targets.float()
    other = (1.0 - factor) / max(k - 1, 1)
    return (factor - other) * targets + other


class ConvergeSmooth:
    """The ConvergeSmooth constraint's state and term; see the module's docstring. ``record`` the
    batch's normal loss; the epoch's mean closes at the next :meth:`close_epoch` (the method's
    ``start_epoch``); :meth:`synchronize` sums the per-process sums under DDP."""

    def __init__(self, *, gamma: float, ratio: float, stride: int, weight: float, decay_epochs):
        self.gamma = non_negative("gamma", gamma)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise TypeError(f"ratio must be a float, got {type(ratio).__name__}")
        if not ratio > 0:
            raise ValueError(f"ratio must be > 0, got {ratio}")
        self.ratio = float(ratio)
        if isinstance(stride, bool) or not isinstance(stride, int):
            raise TypeError(f"stride must be an int, got {type(stride).__name__}")
        if stride < 0:
            raise ValueError(f"stride must be >= 0, got {stride}")
        self.stride = stride
        self.weight = non_negative("cs_weight", weight)
        if not isinstance(decay_epochs, (tuple, list)) or not all(is_number(e) for e in decay_epochs):
            raise TypeError(f"decay_epochs must be a sequence of numbers, got {decay_epochs!r}")
        if len(decay_epochs) < 2 or any(b < a for a, b in zip(decay_epochs, decay_epochs[1:])):
            raise ValueError(f"decay_epochs must hold at least two epochs in increasing order, got {decay_epochs!r}")
        self.decay_epochs = tuple(decay_epochs)
        self.pre_loss = torch.zeros((), dtype=torch.float64)  # the previous epoch's mean normal loss
        self.beta = torch.zeros((), dtype=torch.float64)  # its change from the epoch before
        self.sums = torch.zeros(2, dtype=torch.float64)  # (sum of n * loss, n) of this epoch, since the last sync
        self.synced = torch.zeros(2, dtype=torch.float64)  # the same, merged over processes

    def active(self, epoch: int) -> bool:
        return any(a + self.stride < epoch < b - self.stride for a, b in zip(self.decay_epochs, self.decay_epochs[1:]))

    def term(self, loss_normal: torch.Tensor, epoch: int) -> torch.Tensor | float:
        """``+w L_n`` (L_n rose past the threshold), ``-w L_n`` (fell past it), or 0; no host sync."""
        if not self.active(epoch) or self.weight == 0:
            return 0.0
        diff = loss_normal.double() - self.pre_loss.to(loss_normal.device)
        threshold = self.beta.to(loss_normal.device).clamp(min=self.gamma / self.ratio).clamp(max=self.gamma)
        sign = torch.where(diff.abs() > threshold, diff.sign(), torch.zeros_like(diff))
        return self.weight * sign.to(loss_normal.dtype) * loss_normal

    def record(self, loss_normal: torch.Tensor, n: int) -> None:
        if self.sums.device != loss_normal.device:
            self.sums, self.synced = self.sums.to(loss_normal.device), self.synced.to(loss_normal.device)
        self.sums[0] += loss_normal.detach().double() * n
        self.sums[1] += n

    def synchronize(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.sums)
        self.synced += self.sums
        self.sums.zero_()

    def close_epoch(self) -> None:
        """The epoch's mean becomes ``L_prev`` (after the trainer's epoch-end sync: the same in every process)."""
        total = self.synced + self.sums
        if total[1] > 0:
            mean = total[0] / total[1]
            self.beta = mean - self.pre_loss.to(mean.device)
            self.pre_loss = mean
        self.sums.zero_()
        self.synced.zero_()

    def state_dict(self) -> dict:
        return {"pre_loss": self.pre_loss, "beta": self.beta, "sums": self.synced + self.sums}

    def load_state_dict(self, state: dict) -> None:
        zero = torch.zeros((), dtype=torch.float64)
        self.pre_loss, self.beta = state.get("pre_loss", zero), state.get("beta", zero)
        self.synced = state.get("sums", torch.zeros(2, dtype=torch.float64)).clone()
        self.sums = torch.zeros_like(self.synced)


class ConvergeSmoothMixin:
    """What a method with ConvergeSmooth adds to :class:`Method`: the constraint (``self.cs``),
    the epoch it is in, and the constraint's state in the checkpoint beside the method's."""

    def init_cs(self, factor, gamma, ratio, stride, cs_weight, decay_epochs) -> None:
        self.factor = non_negative("factor", factor)
        if self.factor > 1:
            raise ValueError(f"factor must be <= 1, got {factor}")
        self.cs = ConvergeSmooth(gamma=gamma, ratio=ratio, stride=stride, weight=cs_weight, decay_epochs=decay_epochs)
        self.epoch = 0

    def set_progress(self, epochs_done, epochs):
        super().set_progress(epochs_done, epochs)
        self.epoch = int(math.floor(epochs_done))

    def start_epoch(self, epoch, epochs):
        super().start_epoch(epoch, epochs)
        self.cs.close_epoch()

    def smoothed_ce(self, logits, y, ctx):
        """The batch-mean cross-entropy against the ``factor``-smoothed targets."""
        return F.cross_entropy(logits.float(), factor_smoothed(logits, y, ctx, self.factor))

    def synchronize(self):
        super().synchronize()
        self.cs.synchronize()

    def state_dict(self):
        return {**super().state_dict(), "cs": self.cs.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.cs.load_state_dict(state.get("cs", {}))


class FGSMRSCS(ConvergeSmoothMixin, Method):
    """FGSM-RS with ConvergeSmooth; see the module's docstring.

    Args:
        factor: weight of the true class in the smoothed targets (0.6).
        gamma: the loss-change threshold's cap (0.03); ``ratio``: cap / floor (1).
        stride: epochs around each of ``decay_epochs`` without the constraint (1).
        cs_weight: ``w2``, the weight of the added / subtracted normal loss (1).
        decay_epochs: the schedule's decay epochs (0, 100, 105, 110).
        alpha: step size (default eps); other arguments as :class:`Method`.
    """

    name = "fgsm_rs_cs"
    single_step = True
    default_schedule = "cyclic"

    def __init__(self, *, factor: float = 0.6, gamma: float = 0.03, ratio: float = 1.0, stride: int = 1,
                 cs_weight: float = 1.0, decay_epochs=(0, 100, 105, 110), **kwargs):
        kwargs.setdefault("steps", 1)
        alpha_given = kwargs.get("alpha") is not None
        super().__init__(**kwargs)
        if self.norm != "linf":
            raise ValueError("method fgsm_rs_cs is defined for norm='linf'")
        if not alpha_given:
            self.target_alpha = self.target_eps
        self.init_cs(factor, gamma, ratio, stride, cs_weight, decay_epochs)

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            start = random_init(x, self.eps, "linf", self.bounds, generator=self.generator)
            _, grad = training_gradient(self, start, soft_or_hard(y, ctx))
            x_adv = pgd_step(start, x, grad, step=self.alpha, eps=math.inf, norm="linf", bounds=self.bounds).detach()
            logits = self.forward(model, x_adv)
            logits_start = self.forward(self.net, start)
        loss_normal = self.smoothed_ce(logits_start, y, ctx)
        loss = self.smoothed_ce(logits, y, ctx) + self.cs.term(loss_normal, self.epoch)
        self.cs.record(loss_normal, len(x))
        return BatchResult(loss + self.regularizer(), logits)
