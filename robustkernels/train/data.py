"""Training data as users hold it - a pair of tensors, a map-style Dataset or a DataLoader - read
by index in the trainer's order, so that the order stays a function of (seed, epoch) and a
resumed or multi-process run reads the same samples as one uninterrupted process.

A DataLoader's dataset is read in that order with the loader's ``num_workers``, ``collate_fn``
and ``pin_memory``; its own sampler and shuffle are not used (they would tie the order to the
global RNG). Only the requested batches are loaded: nothing is materialised beyond them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..data import check_integer_labels


def _check_pair(name: str, x, y) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{name}: samples must be (x, y) tensors, got ({type(x).__name__}, {type(y).__name__})")
    if not x.is_floating_point() or x.dim() < 1:
        raise ValueError(f"{name}: x must be a floating-point tensor, got {x.dtype} {list(x.shape)}")
    check_integer_labels(name, y)


class TrainData:
    """``len(data)`` samples, fetched as ``(x [n, ...], y [n] int64)`` batches by index."""

    def __init__(self, name: str, data):
        self.name = name
        self.loader = data if isinstance(data, DataLoader) else None
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            x, y = data
            if not x.is_floating_point() or x.dim() < 2:
                raise ValueError(f"{name}: x must be a floating-point tensor [N, ...], got {x.dtype} {list(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{name}: y must be int64 of shape [{x.shape[0]}], got {y.dtype} {list(y.shape)}")
            self.tensors, self.dataset = (x, y), None
        elif isinstance(data, (Dataset, DataLoader)):
            self.tensors, self.dataset = None, data.dataset if isinstance(data, DataLoader) else data
            if not hasattr(self.dataset, "__len__") or not hasattr(self.dataset, "__getitem__"):
                raise TypeError(f"{name}: the dataset must be map-style (__len__ and __getitem__)")
        else:
            raise TypeError(f"{name} must be a pair of tensors (x, y), a map-style Dataset or a DataLoader, "
                            f"got {type(data).__name__}")
        if len(self) == 0:
            raise ValueError(f"{name} is empty")
        if self.dataset is not None:
            sample = self.dataset[0]
            if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
                raise TypeError(f"{name}: items must be (x, y) pairs, got {type(sample).__name__}")
            _check_pair(name, sample[0], torch.as_tensor(sample[1]))
            self.sample_shape = tuple(sample[0].shape)
            self.example = sample[0][None]
        else:
            self.sample_shape = tuple(self.tensors[0].shape[1:])
            self.example = self.tensors[0][:1]  # one input, for the model's number of classes

    def __len__(self) -> int:
        return len(self.tensors[1]) if self.tensors is not None else len(self.dataset)

    @property
    def loader_batch_size(self) -> int | None:
        return self.loader.batch_size if self.loader is not None else None

    def refuse_ignored_loader_settings(self, batch_size: int) -> None:
        """A DataLoader's batching that the trainer would not honour is an error naming it."""
        loader = self.loader
        if loader is None:
            return
        ignored = []
        if type(loader.batch_sampler) is not BatchSampler:
            ignored.append(f"batch_sampler={type(loader.batch_sampler).__name__}")
        elif type(loader.sampler) not in (SequentialSampler, RandomSampler):
            ignored.append(f"sampler={type(loader.sampler).__name__}")
        if loader.drop_last:
            ignored.append("drop_last=True")
        if loader.batch_size is not None and loader.batch_size != batch_size:
            ignored.append(f"batch_size={loader.batch_size} (fit's batch_size={batch_size})")
        if ignored:
            raise ValueError(f"{self.name}: fit would ignore the DataLoader's {', '.join(ignored)}: it reads the "
                             "dataset in its own seeded order of batch_size samples (exact resume, DDP); pass "
                             "the Dataset with fit's batch_size, or a plain DataLoader(dataset, batch_size=...)")

    def batches(self, index_lists: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` for each list of sample indices, in order (an empty list gives an empty batch)."""
        if self.tensors is not None:
            x, y = self.tensors
            for idx in index_lists:
                yield x[idx], y[idx]
            return
        loader = self.loader
        options = dict(num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                       pin_memory=loader.pin_memory) if loader is not None else {}
        kept = [idx.tolist() for idx in index_lists]
        stream = iter(DataLoader(self.dataset, batch_sampler=[k for k in kept if k], **options)) if any(kept) else None
        for k in kept:
            if not k:
                yield torch.empty(0, *self.sample_shape), torch.empty(0, dtype=torch.int64)
                continue
            xb, yb = next(stream)
            _check_pair(self.name, xb, yb)
            yield xb, yb.long()
