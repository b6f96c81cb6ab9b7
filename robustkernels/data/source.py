"""One data source for everything that reads the data users hold - a pair of tensors, a map-style
Dataset or a DataLoader, whose samples or batches are ``(x, y)`` pairs or dicts - with one set of
checks and messages, and two views:

- :func:`batches`, the streaming view (evaluation): ``(x, y, index)`` batches of at most
  ``batch_size`` rows as they come, sharded over the processes of a ``torch.distributed`` run;
  nothing is materialised beyond one batch;
- :class:`IndexedData`, the indexed view (training): batches fetched by sample index in the
  trainer's order, so the order is a function of (seed, epoch) and a resumed or multi-process run
  reads the same samples as one uninterrupted process. A DataLoader's dataset is read in that
  order with the loader's ``num_workers``, ``collate_fn`` and ``pin_memory``; its batching is
  honoured or refused (:meth:`IndexedData.refuse_ignored_loader_settings`).

A dict's input and label are found under the usual names (:data:`X_KEYS`, :data:`Y_KEYS`), or
named with :class:`Fields` (``Fields(loader, x="pixels", y="class_id")``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
)

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


def pick(name: str, item, fields: Fields | None = None):
    """(x, y) from one sample or batch: a pair, or a dict read by ``fields`` or the usual names."""
    if isinstance(item, dict):
        keys = (fields.x,) if fields else X_KEYS, (fields.y,) if fields else Y_KEYS
        found = [[k for k in names if k in item] for names in keys]
        if fields and not all(found):
            wrong = ", ".join(f"{side}={key!r}" for side, key, f in zip("xy", (fields.x, fields.y), found) if not f)
            raise ValueError(f"{name}: Fields({wrong}) is not a key of the dict batch (keys {sorted(map(str, item))})")
        if any(len(f) != 1 for f in found):
            raise ValueError(f"{name}: a dict batch with keys {sorted(map(str, item))}; name its input and label "
                             "with robustkernels.data.Fields(loader, x=..., y=...)")
        return item[found[0][0]], item[found[1][0]]
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise TypeError(f"{name}: items must be (x, y) pairs or dicts (samples or batches), got {type(item).__name__}")


def check_xy(name: str, x, y, *, batch: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x float [N, ...], y int64 [N])`` checked - or one sample when ``batch`` is False -
    every reader's one set of checks: tensors, float inputs with features, integer labels, finite."""
    y = torch.as_tensor(y) if not batch and not isinstance(y, torch.Tensor) else y
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"{name}: samples must be (x, y) tensors, got ({type(x).__name__}, {type(y).__name__})")
    if not x.is_floating_point() or x.dim() < (2 if batch else 1):
        raise ValueError(f"{name}: x must be a floating-point tensor [N, ...], got {x.dtype} {list(x.shape)}")
    if batch and y.shape != (x.shape[0],):
        raise ValueError(f"{name}: expected x [N, ...] and y [N] labels, got {list(x.shape)} and {list(y.shape)}")
    if batch and x.shape[0] and x[0].numel() == 0:
        raise ValueError(f"{name}: samples have no features (x of shape {list(x.shape)})")
    check_integer_labels(name, y)
    rows = x.flatten(1) if batch and x.dim() > 1 else x.reshape(1, -1)
    bad = ~torch.isfinite(rows).all(dim=1) if rows.numel() else torch.zeros(0, dtype=torch.bool)
    if bool(bad.any()):
        raise ValueError(f"{name}: x holds NaN or inf in {int(bad.sum())} of {len(bad)} samples of a batch; "
                         "inputs must be finite")
    return x, y.long()


def _tensor_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)


def _stream(name: str, data) -> tuple[Iterator, bool]:
    """(iterator of raw (x, y) batches, whether the batches are already this process's shard)."""
    if _tensor_pair(data):  # checked by batches() like any batch; empty: "no samples" there
        return iter([tuple(data)]), False
    fields = data if isinstance(data, Fields) else None
    data = data.data if fields else data
    if isinstance(data, DataLoader):
        return (pick(name, b, fields) for b in data), isinstance(data.sampler, DistributedSampler)
    if isinstance(data, Dataset):
        return (pick(name, b, fields) for b in DataLoader(data, batch_size=256, shuffle=False)), False
    raise TypeError(f"{name} must be a DataLoader, a map-style Dataset or a pair of tensors (x, y), "
                    f"got {type(data).__name__}")


def batches(data, batch_size: int, rank: int = 0, world: int = 1, name: str = "data", every=None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """The streaming view: ``(x, y, index)``, the ``index``-th batch of at most ``batch_size``
    rows of ``data``, the batches of this process only (every ``world``-th, from ``rank``) unless
    the DataLoader's sampler already shards. Batch indices are global, so a sample's batch (and
    the random draws made for it) do not depend on the number of processes. ``every(x, y,
    index)``, if given, sees every batch, this process's or not (a shard's digest of the whole
    data)."""
    source, sharded = _stream(name, data)
    index, seen = 0, 0
    for x, y in source:
        x, y = check_xy(name, x, y)
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            if every is not None:
                every(xb, yb, index)
            if sharded or index % world == rank:
                yield xb, yb, index
            index += 1
            seen += len(yb)
    if seen == 0:
        raise ValueError(f"{name}: no samples")


def as_tensors(data, batch_size: int = 256, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """The whole of ``data`` (any source :func:`batches` reads) as one checked ``(x, y)`` pair."""
    parts = [(x, y) for x, y, _ in batches(data, batch_size, name=name)]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def take(data, start: int, stop: int | None = None):
    """Samples ``start:stop`` of ``data`` (Python slice rules): a pair of tensors - a
    TensorDataset's too - sliced, any other map-style Dataset as a ``Subset`` (read on access)."""
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        data = data.tensors
    if _tensor_pair(data):
        return data[0][start:stop], data[1][start:stop]
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return Subset(data, range(len(data))[start:stop])
    raise TypeError(f"data must be a pair of tensors or a map-style Dataset, got {type(data).__name__}")


class IndexedData:
    """The indexed view: ``len(data)`` samples, fetched as ``(x [n, ...], y [n] int64)`` batches by
    sample index."""

    def __init__(self, name: str, data):
        self.name = name
        self.fields = data if isinstance(data, Fields) else None
        data = data.data if self.fields else data
        self.loader = data if isinstance(data, DataLoader) else None
        if _tensor_pair(data):
            x, y = data
            n = x.shape[0] if x.dim() else 0
            if x.dim() and (y.dtype != torch.int64 or y.shape != (n,)):
                raise ValueError(f"{name}: y must be int64 of shape [{n}], got {y.dtype} {list(y.shape)}")
            check_xy(name, x, y)
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
            x0, _ = check_xy(name, *pick(name, self.dataset[0], self.fields), batch=False)
            self.sample_shape, self.example = tuple(x0.shape), x0[None]
        else:
            self.sample_shape = tuple(self.tensors[0].shape[1:])
            self.example = self.tensors[0][:1]  # one input, for the model's number of classes

    def __len__(self) -> int:
        return len(self.tensors[1]) if self.tensors is not None else len(self.dataset)

    def source(self):
        """The same data for the streaming view (:func:`batches`): the tensors, or the dataset
        (with its :class:`Fields`)."""
        if self.tensors is not None:
            return self.tensors
        return Fields(self.dataset, self.fields.x, self.fields.y) if self.fields else self.dataset

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
            yield check_xy(self.name, *pick(self.name, next(stream), self.fields))
