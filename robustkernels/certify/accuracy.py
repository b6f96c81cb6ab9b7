"""Certified accuracy from bound propagation (IBP, or CROWN-IBP): a sample is certified at
``eps`` when a sound lower bound of ``z_y - z_j`` over the whole Linf ball (clipped to the input
bounds) is positive for every other class j - no attack, however strong, can change its
prediction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..common import frozen_model, model_device, non_negative, positive_int
from ..data import batches, check_label_range
from ..threat import broadcast_bounds, check_normalization, normalize
from .crown import bound_method, margin_bounds
from .graph import model_steps


@dataclass
class CertifiedReport:
    """What :func:`certified_accuracy` found: clean and certified accuracy over ``n_samples`` at
    ``eps``, the per-sample verdicts in data order, and the bound method."""

    eps: float
    n_samples: int
    clean_accuracy: float
    certified_accuracy: float
    certified: list[bool]  # per sample, in data order
    method: str  # "ibp" or "crown-ibp"


def _check_inside(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, index: int) -> None:
    """The box around x is clipped to the bounds: it only contains x when x lies inside them."""
    outside = ((x < lo) | (x > hi)).flatten(1).any(dim=1)
    if bool(outside.any()):
        raise ValueError(f"data: {int(outside.sum())} samples of batch {index} lie outside bounds "
                         f"[{float(lo.min()):g}, {float(hi.max()):g}] (min {float(x.min()):g}, max "
                         f"{float(x.max()):g}); pass bounds= or normalization= to match the inputs")


def certified_accuracy(model: nn.Module, data, eps: float, *, bounds=(0.0, 1.0), normalization=None,
                       method: str = "crown-ibp", batch_size: int = 64) -> CertifiedReport:
    """Share of ``data`` that ``model`` (eval mode) classifies correctly and provably keeps
    classifying correctly within the Linf ball of radius ``eps`` (inputs clipped to ``bounds``).

    Args:
        data: a pair of tensors ``(x [N, ...] in bounds, y [N])``, a Dataset or a DataLoader.
        bounds: ``(lo, hi)`` floats or per-channel tensors; inputs outside them are refused.
        normalization: ``(mean, std)``: the model sees ``(x - mean) / std``, x in bounds.
        method: ``"ibp"`` (interval bounds, the last layer folded into the margins) or
            ``"crown-ibp"`` (default: the larger of those and the CROWN-IBP bounds).

    Only models whose every module has known exact semantics are bounded (see
    :mod:`robustkernels.certify.graph`); anything else raises
    :class:`~robustkernels.certify.NotBoundable` naming the module, before any work."""
    eps = non_negative("eps", eps)
    if not math.isfinite(eps):
        raise ValueError(f"eps must be finite, got {eps!r}")
    bound_method("method", method)
    batch_size = positive_int("batch_size", batch_size)
    check_normalization(normalization)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    device = model_device(model)
    certified, correct = [], 0
    with frozen_model(model, "eval"), torch.no_grad():
        model_steps(model, normalization)  # refuse an unknown module before reading any data
        for xb, yb, index in batches(data, batch_size):
            xb, yb = xb.to(device), yb.to(device)
            lo, hi = broadcast_bounds(bounds, xb)
            _check_inside(xb, lo, hi, index)
            logits = model(normalize(xb, normalization))
            if logits.dim() != 2 or logits.shape[0] != len(xb):
                raise ValueError(f"model: expected logits [{len(xb)}, K], got {list(logits.shape)}")
            check_label_range(yb, logits.shape[1])
            right = logits.argmax(1) == yb
            box = torch.maximum(xb - eps, lo), torch.minimum(xb + eps, hi)
            margins = margin_bounds(model, *box, yb, method, normalization=normalization)
            margins.scatter_(1, yb[:, None], float("inf"))
            certified += (right & (margins.amin(1) > 0)).tolist()
            correct += int(right.sum())
    n = len(certified)
    return CertifiedReport(eps, n, correct / n, sum(certified) / n, certified, method)
