"""Checkpoints written atomically (a temporary file in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile

import torch


def save_atomic(state: dict, path: str | os.PathLike) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist")
    return torch.load(path, map_location=device, weights_only=False)
