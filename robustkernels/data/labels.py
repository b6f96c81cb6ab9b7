"""Checks on label tensors shared by the training and evaluation readers."""

from __future__ import annotations

import numpy as np
import torch


def check_integer_labels(name: str, y: torch.Tensor) -> None:
    """Labels must be integer class indices: a float, complex or bool tensor is a TypeError."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name}: labels must be integer class indices, got {y.dtype}")


def check_label_range(y: torch.Tensor, classes: int, name: str = "data") -> None:
    """Labels must be classes of the model: 0 <= y < classes."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{name}: labels must lie in [0, {classes}) for a model with {classes} outputs, "
                         f"got {int(y.min())}..{int(y.max())}")


def whole_labels(name: str, labels) -> torch.Tensor:
    """``labels`` (a tensor, numpy array or list, as read from the file ``name``) as int64 class
    indices. Integers pass; floats must be whole numbers (3.0 is class 3): a fractional, NaN or
    infinite label is a ValueError naming the file and the value, never truncated (0.9 is not
    class 0). Bool, complex and non-numeric labels are refused."""
    y = _label_tensor(name, labels)
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name}: labels must be integer class indices, got {y.dtype}")
    if y.is_floating_point():
        flat = y.reshape(-1).double()
        bad = ~torch.isfinite(flat) | (flat != flat.trunc()) | (flat.abs() >= 2.0 ** 62)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"{name}: labels must be whole class indices, found {_shown(y.reshape(-1)[i])} at index "
                             f"{i} ({int(bad.sum())} of {len(flat)} {y.dtype} labels; a float label is not rounded)")
    return y.long()


def _shown(value: torch.Tensor) -> str:
    """A float label as its file holds it: 0.9 (not float32's 0.8999999761581543)."""
    return str(value.item() if value.dtype == torch.float64 else np.float32(value.float().item()))


def _label_tensor(name: str, labels) -> torch.Tensor:
    """``labels`` as a tensor in native byte order; non-numeric values are a ValueError naming ``name``."""
    if isinstance(labels, torch.Tensor):
        return labels
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError):  # ragged lists, objects numpy cannot hold in one array
        array = np.asarray(None)
    if array.dtype.kind not in "biufc":
        raise ValueError(f"{name}: labels must be integer class indices, got {array.dtype} values")
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))


def check_labels_within(name: str, y: torch.Tensor, low: int, high: int | None = None) -> None:
    """Labels in ``low..high`` (no upper bound when ``high`` is None), else a ValueError naming
    ``name`` and the first label outside."""
    flat = y.reshape(-1)
    bad = (flat < low) | (flat > high) if high is not None else flat < low
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        bounds = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected labels {bounds}, found {int(flat[i])} at index {i} "
                         f"({int(bad.sum())} of {len(flat)} labels outside)")
