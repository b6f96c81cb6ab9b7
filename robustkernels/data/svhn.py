"""SVHN (the cropped digits) read from its standard MATLAB files ``train_32x32.mat`` and
``test_32x32.mat``: ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1] with labels 1..10 where 10 is the digit
0. Read with ``scipy.io.loadmat``, which parses MATLAB arrays and runs no code."""

from __future__ import annotations

import os

import numpy as np
import torch

from .labels import check_labels_within, whole_labels

SVHN_FILES = {True: "train_32x32.mat", False: "test_32x32.mat"}


def load_svhn(data_dir: str | os.PathLike, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: x float32 [N, 3, 32, 32] in [0, 1], y int64 in 0..9 (the digit). A label that
    is not a whole number in 1..10 is a ValueError naming the file and the value."""
    from scipy.io import loadmat

    path = os.path.join(os.fspath(data_dir), SVHN_FILES[train])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SVHN file {SVHN_FILES[train]!r} not found in {os.fspath(data_dir)!r} (expected "
                                "train_32x32.mat and test_32x32.mat, the cropped digits)")
    try:
        mat = loadmat(path)
    except Exception as exc:  # noqa: BLE001 (scipy raises many kinds on a corrupt file: one line naming it)
        raise ValueError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: expected arrays 'X' and 'y', found {found}")
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"{path}: expected X uint8 [32, 32, 3, N], got {x.dtype} {list(x.shape)}")
    labels = whole_labels(path, y.reshape(-1))
    if labels.shape != (x.shape[3],):
        raise ValueError(f"{path}: expected {x.shape[3]} labels (one per image), got {y.size} (y {list(y.shape)})")
    check_labels_within(path, labels, 1, 10)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))).float().div_(255)
    return images, labels % 10  # SVHN's label 10 is the digit 0
