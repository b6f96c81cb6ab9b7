"""Checks on label tensors shared by the training and evaluation readers."""

from __future__ import annotations

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
