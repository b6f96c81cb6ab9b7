"""Certified accuracy from bound propagation (IBP, or CROWN-IBP): a sample is certified at
``eps`` when a sound lower bound of ``z_y - z_j`` over the whole Linf ball (clipped to the input
bounds) is positive for every other class j - no attack, however strong, can change its
prediction."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn.crown import bound_method, margin_bounds
from ..threat import frozen_model, non_negative, positive_int


@dataclass
class CertifiedReport:
    eps: float
    n_samples: int
    clean_accuracy: float
    certified_accuracy: float
    certified: list[bool]  # per sample, in data order
    method: str  # "ibp" or "crown-ibp"


def certified_accuracy(model: nn.Module, data, eps: float, *, bounds=(0.0, 1.0), method: str = "crown-ibp",
                       batch_size: int = 64) -> CertifiedReport:
    """Share of ``data = (x, y)`` that ``model`` (eval mode) classifies correctly and provably
    keeps classifying correctly within the Linf ball of radius ``eps`` (inputs clipped to
    ``bounds``). ``method="ibp"``: interval bounds, the last layer folded into the margins;
    ``"crown-ibp"`` (default): the larger of those and the CROWN-IBP bounds
    (:mod:`robustkernels.nn.crown`). Deterministic models of Sequential / pre-activation ResNet
    layers ending in a linear layer (see :func:`robustkernels.nn.bounds.interval_bounds`)."""
    eps = non_negative("eps", eps)
    bound_method("method", method)
    batch_size = positive_int("batch_size", batch_size)
    x, y = data
    lo, hi = bounds
    device = next(iter(model.parameters())).device
    certified, correct = [], 0
    with frozen_model(model, "eval"), torch.no_grad():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            right = model(xb).argmax(1) == yb
            margins = margin_bounds(model, (xb - eps).clamp(lo, hi), (xb + eps).clamp(lo, hi), yb, method)
            margins.scatter_(1, yb[:, None], float("inf"))
            certified += (right & (margins.amin(1) > 0)).tolist()
            correct += int(right.sum())
    n = len(y)
    return CertifiedReport(eps, n, correct / n, sum(certified) / n, certified, method)
