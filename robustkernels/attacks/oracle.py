"""The model as an attack queries it: logits under the attack's precision, the objective and its
input gradient averaged over EOT passes (batched where the model draws its noise per row), and
verdicts that count only where an fp32 pass agrees. One :class:`Oracle` serves one call."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..common import AUTOCAST, input_gradient
from ..threat import check_logits_shape, normalize
from .losses import objective

EOT_MAX_ROWS = 1024  # rows per forward/backward when the EOT copies are batched


def per_row_noise(model: nn.Module) -> bool:
    """Whether copies of an input in one batch get independent noise: the model's random layers
    are Stochastic LWTA (per element) and none is a PNI layer (one weight draw per call)."""
    from ..nn import LWTA, BatchNormLWTA, PNIConv2d, PNILinear

    modules = list(model.modules())
    return any(isinstance(m, (LWTA, BatchNormLWTA)) for m in modules) and not any(
        isinstance(m, (PNIConv2d, PNILinear)) for m in modules)


def copies(t: torch.Tensor, c: int) -> torch.Tensor:
    """``c`` copies of t stacked along dim 0 (t itself, not a copy, when c = 1)."""
    return t if c == 1 else t.repeat(c, *[1] * (t.dim() - 1))


class Oracle:
    """The model queried by one attack call.

    Args:
        model: returns logits [B, K] for inputs in the normalised space.
        normalization: ``(mean, std)`` tensors or None: the model sees ``(x - mean) / std``.
        loss: the default objective (one of :data:`~robustkernels.attacks.losses.LOSSES`).
        targeted: verdicts count a row as fooled when it reaches its target, else when it leaves y.
        eot_iter: passes averaged per query; ``eot_batched``: run them as one k-fold batch.
        autocast: ``None``, ``"bf16"`` or ``"fp16"``: the model's precision inside the attack.
        training: the model runs in train mode (never batch the EOT copies: BatchNorm sees them).

    The first logits of the call are checked to be [B, K] with K >= 2 (K >= ``classes_needed``,
    the targets an attack that ranks its own needs) and every label a class of K.
    """

    def __init__(self, model: nn.Module, *, normalization, loss: str, targeted: bool, eot_iter: int,
                 eot_batched: bool, autocast: str | None, training: bool):
        self.model, self.normalization, self.loss, self.targeted = model, normalization, loss, targeted
        self.eot_iter, self.eot_batched, self.autocast, self.training = eot_iter, eot_batched, autocast, training
        self.checked, self.classes_needed = False, 2  # K >= 2; an attack ranking targets needs its last rank

    def logits(self, x: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        """The model's logits on x (inputs in the bounds), under the autocast unless ``fp32``."""
        dtype = None if fp32 else AUTOCAST[self.autocast]
        context = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with context:
            return self.model(normalize(x, self.normalization))

    def check_output(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> None:
        """Once per call: the model returns [B, K] logits and the labels are classes of it."""
        if self.checked:
            return
        check_logits_shape(logits, y.shape[0], min_classes=2)
        classes = logits.shape[1]
        if classes < self.classes_needed:
            raise ValueError(f"n_target_classes: target rank {self.classes_needed} needs more than {classes} classes")
        for name, labels in (("y", y), ("target", target)):
            if labels is not None and labels.numel() and int(labels.max()) >= classes:
                raise ValueError(f"{name} has labels >= the model's {classes} classes")
        self.checked = True

    def objective(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                  loss: str | None = None) -> torch.Tensor:
        """[B] the attack's objective (or ``loss``) on ``logits``."""
        self.check_output(logits, y, target)
        return objective(loss or self.loss, logits, y, target)

    def loss_and_grad(self, x_adv: torch.Tensor, y, target, loss: str | None = None):
        """Per-sample objective [B] (the attack's, or ``loss``), its input gradient and fp32 logits,
        averaged over ``eot_iter`` passes (batched: the copies go through the model together, in
        chunks)."""
        batch = x_adv.shape[0]
        chunks = self.eot_chunks(batch)
        if chunks == [1]:  # one pass (a deterministic model): no sums to build, per step
            return self._pass(x_adv, y, target, 1, loss)
        total_loss, total_grad, total_logits = 0.0, torch.zeros_like(x_adv), 0.0
        for c in chunks:
            value, grad, logits = self._pass(x_adv, y, target, c, loss)
            total_grad += grad.view(c, *x_adv.shape).sum(0)
            total_loss = total_loss + value.view(c, batch).sum(0)
            total_logits = total_logits + logits.view(c, batch, -1).sum(0)
        k = self.eot_iter
        return total_loss / k, total_grad / k, total_logits / k

    def _pass(self, x_adv: torch.Tensor, y, target, c: int, loss: str | None = None):
        """One forward and backward pass over ``c`` stacked copies of x_adv: (objective [c B],
        input gradient [c B, ...], fp32 logits [c B, K]), detached."""
        x_in = copies(x_adv.detach(), c).requires_grad_(True)
        ys, ts = copies(y, c), None if target is None else copies(target, c)
        with torch.enable_grad():
            logits = self.logits(x_in)
            value = self.objective(logits, ys, ts, loss)
            grad = input_gradient(value.sum(), x_in)
        return value.detach(), grad, logits.detach().float()

    @torch.no_grad()
    def mean_logits(self, x: torch.Tensor, fp32: bool = False) -> torch.Tensor:
        """Logits (as fp32; computed in fp32 if ``fp32``, else under the autocast) averaged over
        ``eot_iter`` passes (batched like :meth:`loss_and_grad`)."""
        batch, total = x.shape[0], 0.0
        if self.eot_iter == 1:  # one pass: no sum to build (Square calls this once per query)
            logits = self.logits(x, fp32=fp32)
            if not self.checked:
                check_logits_shape(logits, batch)
            return logits.float()
        for c in self.eot_chunks(batch):
            logits = self.logits(copies(x, c), fp32=fp32)
            if not self.checked:
                check_logits_shape(logits, c * batch)
            total = total + logits.float().view(c, batch, -1).sum(0)
        return total / self.eot_iter

    def eot_chunks(self, batch: int) -> list[int]:
        """Copies per forward pass for the ``eot_iter`` passes over a batch: all in passes of at
        most ``EOT_MAX_ROWS`` rows when batched, else one per pass."""
        k = self.eot_iter
        per_pass = 1
        if k > 1 and self.eot_batched and not self.training:
            per_pass = max(1, min(k, EOT_MAX_ROWS // max(batch, 1)))
        return [min(per_pass, k - done) for done in range(0, k, per_pass)]

    @torch.no_grad()
    def ranked_class(self, x: torch.Tensor, rank: int) -> torch.Tensor:
        """[B] the class with the ``rank``-th highest logit on x (1 = the top one): AutoAttack's
        targets for APGD-T and FAB-T are ranks 2, 3, ... of the clean input."""
        logits = self.mean_logits(x)
        if rank > logits.shape[1]:
            raise ValueError(f"n_target_classes: target rank {rank} needs more than {logits.shape[1]} classes")
        return logits.argsort(dim=1, descending=True)[:, rank - 1]

    def succeeded(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                  x: torch.Tensor | None = None) -> torch.Tensor:
        """[B] whether ``logits`` (of inputs ``x``) fool the model. Under autocast, with ``x``
        given, a row counts only if an fp32 forward pass on it agrees: a low-precision verdict
        near the boundary would otherwise stop the attack on a point fp32 does not misclassify."""
        prediction = logits.argmax(dim=1)
        fooled = prediction == target if self.targeted else prediction != y
        recheck = None if x is None else self.fp32_recheck(fooled, x)
        if recheck is None:
            return fooled
        rows, precise = recheck
        fooled[rows] = self.succeeded(precise, y[rows], None if target is None else target[rows])
        return fooled

    def fp32_recheck(self, flagged: torch.Tensor, x: torch.Tensor):
        """Under autocast, ``(rows, logits)``: the rows of the [B] mask ``flagged`` (where the
        low-precision pass says fooled) and fp32 mean logits of x at them, so that only a verdict
        fp32 agrees with counts. None without autocast or without flagged rows."""
        if self.autocast is None or not bool(flagged.any()):
            return None
        rows = flagged.nonzero().squeeze(1)
        return rows, self.mean_logits(x[rows], fp32=True)
