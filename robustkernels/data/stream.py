"""Evaluation data as it comes: a pair of tensors, a map-style Dataset or a DataLoader, yielded as
``(x, y, index)`` batches of at most ``batch_size`` rows, sharded over the processes of a
``torch.distributed`` run. Nothing is materialised beyond one batch.

Batches (or samples) may be ``(x, y)`` pairs or dicts: a dict's input and label are found under
the usual names (:data:`X_KEYS`, :data:`Y_KEYS`), or named with :class:`Fields`
(``Fields(loader, x="pixels", y="class_id")``)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .labels import check_integer_labels

X_KEYS = ("image", "images", "img", "x", "input", "inputs", "pixel_values")
Y_KEYS = ("label", "labels", "y", "target", "targets")


class Fields:
    """``data`` (a DataLoader or Dataset of dict batches/samples) with its input and label named:
    ``evaluate(model, Fields(loader, x="pixels", y="class_id"), ...)``."""

    def __init__(self, data, x: str, y: str):
        if not isinstance(data, (DataLoader, Dataset)):
            raise TypeError(f"data must be a DataLoader or a Dataset, got {type(data).__name__}")
        for name, key in (("x", x), ("y", y)):
            if not isinstance(key, str):
                raise TypeError(f"{name} must be a field name (str), got {type(key).__name__}")
        self.data, self.x, self.y = data, x, y


def _pick(batch, fields: Fields | None):
    """(x, y) from one batch: a pair, or a dict read by ``fields`` or by the usual key names."""
    if isinstance(batch, dict):
        keys = (fields.x,) if fields else X_KEYS, (fields.y,) if fields else Y_KEYS
        found = [[k for k in names if k in batch] for names in keys]
        if any(len(f) != 1 for f in found):
            raise ValueError(f"data: a dict batch with keys {sorted(map(str, batch))}; name its input and label "
                             "with robustkernels.data.Fields(loader, x=..., y=...)")
        return batch[found[0][0]], batch[found[1][0]]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError(f"data: batches must be (x, y) pairs or dicts, got {type(batch).__name__}")


def _check_batch(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("data: batches must be (x, y) tensors")
    if not x.is_floating_point() or x.dim() < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"data: expected x [N, ...] float and y [N] labels, got {list(x.shape)} and {list(y.shape)}")
    if x.shape[0] and x[0].numel() == 0:
        raise ValueError(f"data: samples have no features (x of shape {list(x.shape)})")
    check_integer_labels("data", y)
    bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
    if bool(bad.any()):
        raise ValueError(f"data: x holds NaN or inf in {int(bad.sum())} of {x.shape[0]} samples of a batch; "
                         "inputs must be finite")
    return x, y.long()


def _loader_batches(data) -> tuple[Iterator, bool]:
    """(iterator of (x, y) batches, whether the batches are already this process's shard)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = _check_batch(*data)
        if x.shape[0] == 0:
            raise ValueError("data: no samples")
        return iter([(x, y)]), False
    fields = data if isinstance(data, Fields) else None
    data = data.data if fields else data
    if isinstance(data, DataLoader):
        return (_pick(b, fields) for b in data), isinstance(data.sampler, DistributedSampler)
    if isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=256, shuffle=False)
        return (_pick(b, fields) for b in loader), False
    raise TypeError("data must be a DataLoader, a map-style Dataset or a pair of tensors (x, y), "
                    f"got {type(data).__name__}")


def batches(data, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Yield ``(x, y, number)``: the ``number``-th batch of at most ``batch_size`` rows of
    ``data``, the batches of this process only (every ``world``-th, from ``rank``) unless the
    DataLoader's sampler already shards. Batch numbers are global, so a sample's batch (and the
    random draws made for it) do not depend on the number of processes."""
    source, sharded = _loader_batches(data)
    number, seen = 0, 0
    for x, y in source:
        x, y = _check_batch(x, y)
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            if sharded or number % world == rank:
                yield xb, yb, number
            number += 1
            seen += len(yb)
    if seen == 0:
        raise ValueError("data: no samples")
