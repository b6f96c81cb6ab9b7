"""Certified accuracy from bound propagation (IBP, or CROWN-IBP): a sample is certified at
``eps`` when a sound lower bound of ``z_y - z_j`` over the whole Linf ball (clipped to the input
bounds) is positive for every other class j - no attack, however strong, can change its
prediction."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..common import frozen_model, model_device, non_negative, positive_int
from ..data import batches, check_label_range
from ..threat import broadcast_bounds, check_normalization, normalize
from .crown import bound_method, margin_bounds
from .graph import model_steps


@dataclass(repr=False)
class CertifiedReport:
    """What :func:`certified_accuracy` found: clean and certified accuracy over ``n_samples`` at
    ``eps``, the per-sample verdicts in data order, and the bound method. Printed as a one-line
    summary (the verdicts stay in ``certified``)."""

    eps: float
    n_samples: int
    clean_accuracy: float
    certified_accuracy: float
    certified: list[bool]  # per sample, in data order
    method: str  # "ibp" or "crown-ibp"

    def __repr__(self) -> str:
        return (f"CertifiedReport(method={self.method!r}, eps={self.eps:g}, n_samples={self.n_samples}, "
                f"clean={self.clean_accuracy:.2%}, certified={self.certified_accuracy:.2%})")


_HALF = (torch.float16, torch.bfloat16)


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The one floating dtype of the model's parameters and buffers (None without any). Half
    precision is refused: the bounds would be computed with its rounding errors, far larger than
    the margins they certify, and a float copy's certificate is not the half model's."""
    dtypes = {t.dtype for t in itertools.chain(model.parameters(), model.buffers()) if t.is_floating_point()}
    if len(dtypes) > 1:
        raise TypeError(f"model: parameters and buffers mix dtypes {sorted(map(str, dtypes))}; cast it to one "
                        "(model.float() or model.double())")
    dtype = next(iter(dtypes), None)
    if dtype in _HALF:
        raise TypeError(f"model: {dtype} parameters; certification needs float32 or float64 (half-precision "
                        "rounding makes the bounds unsound): a float copy (model.float(), data in float32) can be "
                        "certified, for that copy only")
    return dtype


def _check_dtype(x: torch.Tensor, model_dtype: torch.dtype | None) -> None:
    """x in the model's dtype, and never half precision (see :func:`_model_dtype`)."""
    if x.dtype in _HALF:
        raise TypeError(f"data: x is {x.dtype}; certification needs float32 or float64 inputs (x.float())")
    if model_dtype is not None and x.dtype != model_dtype:
        raise TypeError(f"data: x is {x.dtype} but the model's parameters are {model_dtype}: cast one to the "
                        f"other (x.to({model_dtype}) or model.to({x.dtype}))")


def _check_logits(logits: torch.Tensor, n: int, index: int) -> None:
    """Logits [n, K], all finite (a NaN would count as a class and an accuracy)."""
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(f"model: expected logits [{n}, K], got {list(logits.shape)}")
    bad = ~logits.isfinite().all(1)
    if bool(bad.any()):
        raise ValueError(f"model: logits hold NaN or inf for {int(bad.sum())} of {n} samples of batch {index}")


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
    :class:`~robustkernels.certify.NotBoundable` naming the module, before any work. The model
    and x are float32 or float64 (the same); half-precision models are refused (certify a
    ``model.float()`` copy, whose certificate is that copy's); autocast is off inside. Works
    inside ``torch.no_grad()`` and ``torch.inference_mode()``; empty batches are skipped, data
    without samples is refused."""
    eps = non_negative("eps", eps)
    if not math.isfinite(eps):
        raise ValueError(f"eps must be finite, got {eps!r}")
    bound_method("method", method)
    batch_size = positive_int("batch_size", batch_size)
    check_normalization(normalization)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    device, dtype = model_device(model), _model_dtype(model)
    certified, correct = [], 0
    with frozen_model(model, "eval"), torch.no_grad(), torch.autocast(device.type, enabled=False):
        model_steps(model, normalization)  # refuse an unknown module before reading any data
        for xb, yb, index in batches(data, batch_size):
            if len(yb) == 0:
                continue
            _check_dtype(xb, dtype)
            xb, yb = xb.to(device), yb.to(device)
            lo, hi = broadcast_bounds(bounds, xb)
            _check_inside(xb, lo, hi, index)
            logits = model(normalize(xb, normalization))
            _check_logits(logits, len(xb), index)
            check_label_range(yb, logits.shape[1])
            right = logits.argmax(1) == yb
            box = torch.maximum(xb - eps, lo), torch.minimum(xb + eps, hi)
            margins = margin_bounds(model, *box, yb, method, normalization=normalization)
            margins.scatter_(1, yb[:, None], float("inf"))
            certified += (right & (margins.amin(1) > 0)).tolist()
            correct += int(right.sum())
    n = len(certified)
    return CertifiedReport(eps, n, correct / n, sum(certified) / n, certified, method)
