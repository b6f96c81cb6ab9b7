"""Evaluation data as it comes: a pair of tensors, a map-style Dataset or a DataLoader, yielded as
``(x, y, index)`` batches of at most ``batch_size`` rows, sharded over the processes of a
``torch.distributed`` run. Nothing is materialised beyond one batch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..data import check_integer_labels


def _check_batch(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("data: batches must be (x, y) tensors")
    if not x.is_floating_point() or x.dim() < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"data: expected x [N, ...] float and y [N] labels, got {list(x.shape)} and {list(y.shape)}")
    if x.shape[0] and x[0].numel() == 0:
        raise ValueError(f"data: samples have no features (x of shape {list(x.shape)})")
    check_integer_labels("data", y)
    return x, y.long()


def _loader_batches(data) -> tuple[Iterator, bool]:
    """(iterator of (x, y) batches, whether the batches are already this process's shard)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = _check_batch(*data)
        if x.shape[0] == 0:
            raise ValueError("data: no samples")
        return iter([(x, y)]), False
    if isinstance(data, DataLoader):
        return ((b[0], b[1]) for b in data), isinstance(data.sampler, DistributedSampler)
    if isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=256, shuffle=False)
        return ((b[0], b[1]) for b in loader), False
    raise TypeError("data must be a DataLoader, a map-style Dataset or a pair of tensors (x, y)")


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
