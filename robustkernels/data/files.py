"""CIFAR-10, CIFAR-100 and MNIST read from their standard files (no download here).

CIFAR-10: the "python version" directory ``cifar-10-batches-py`` with pickled ``data_batch_1..5``
and ``test_batch`` (``data``: uint8 [N, 3072], channel-major RGB 32x32; ``labels``).
CIFAR-100: ``cifar-100-python`` with pickled ``train`` and ``test`` (``data`` as CIFAR-10's;
``fine_labels`` 0..99, the 100 classes used here). Both read by an unpickler that admits numpy
arrays only.
MNIST: the IDX files ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` and the ``t10k-``
pair, plain or gzipped (``.gz``).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib

import numpy as np
import torch

from .labels import check_labels_within, whole_labels

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
_CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension; images: 3 dimensions
# The globals a CIFAR batch pickle refers to (numpy's array reconstruction; _codecs.encode, which
# protocol-2 pickles written by Python 3 use for bytes), nothing else.
_CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only numpy arrays, dtypes and builtin containers: a crafted file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of the CIFAR formats)")
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike, labels_key: bytes = b"labels", classes: int = 10
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch file as ``(data uint8 [N, 3072], labels int64 [N])`` (CIFAR-100:
    ``labels_key=b"fine_labels", classes=100``), read with an unpickler that admits only numpy
    arrays; any other content - a fractional (never truncated) or out-of-range label among it - is
    a ``ValueError`` naming the file."""
    kind = f"CIFAR-{classes}"
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error) as exc:
        raise ValueError(f"{path}: not a {kind} batch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or labels_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{path}: a {kind} batch must be a dict with b'data' and {labels_key!r}, got {keys}")
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: expected uint8 data of shape [N, 3072], got {data.dtype} {data.shape}")
    labels = whole_labels(path, batch[labels_key])
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: expected {len(data)} labels (one per image), got shape {list(labels.shape)}")
    check_labels_within(path, labels, 0, classes - 1)
    return data, labels.numpy()


def _find(data_dir: str | os.PathLike, *candidates: str) -> str:
    for name in candidates:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"none of {list(candidates)} in {os.fspath(data_dir)!r}")


def load_cifar10(data_dir: str | os.PathLike, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: x float32 [N, 3, 32, 32] in [0, 1], y int64. ``data_dir`` is the folder holding
    ``cifar-10-batches-py`` (or that folder itself)."""
    root = os.fspath(data_dir)
    if os.path.isdir(os.path.join(root, CIFAR10_DIR)):
        root = os.path.join(root, CIFAR10_DIR)
    images, labels = [], []
    for name in _CIFAR10_TRAIN if train else ["test_batch"]:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CIFAR-10 batch {name!r} not found in {root!r} (expected the python version, "
                                    f"{CIFAR10_DIR}/data_batch_1..5 and test_batch)")
        data, batch_labels = read_cifar_batch(path)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    x = torch.from_numpy(np.concatenate(images)).float().div_(255)
    y = torch.from_numpy(np.concatenate(labels))
    if len(x) != len(y):
        raise ValueError(f"CIFAR-10 in {root!r}: {len(x)} images but {len(y)} labels")
    return x, y


def load_cifar100(data_dir: str | os.PathLike, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: x float32 [N, 3, 32, 32] in [0, 1], y int64 (the 100 fine labels). ``data_dir``
    is the folder holding ``cifar-100-python`` (or that folder itself)."""
    root = os.fspath(data_dir)
    if os.path.isdir(os.path.join(root, CIFAR100_DIR)):
        root = os.path.join(root, CIFAR100_DIR)
    path = os.path.join(root, "train" if train else "test")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-100 file {os.path.basename(path)!r} not found in {root!r} (expected the "
                                f"python version, {CIFAR100_DIR}/train and test)")
    data, labels = read_cifar_batch(path, b"fine_labels", 100)
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()).float().div_(255), torch.from_numpy(labels)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (the MNIST format, plain or gzipped) as a uint8 array."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc or type(exc).__name__})") from None
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for an IDX file ({len(raw)} bytes)")
    magic, count = struct.unpack(">II", raw[:8])
    if magic not in _IDX_MAGIC:
        raise ValueError(f"{path}: not an IDX uint8 file (magic {magic}, expected 2049 or 2051)")
    header = 4 + 4 * _IDX_MAGIC[magic]
    if len(raw) < header:
        raise ValueError(f"{path}: the IDX header is cut short ({len(raw)} of {header} bytes)")
    dims = [count] + list(struct.unpack(f">{_IDX_MAGIC[magic] - 1}I", raw[8:header]))
    if count == 0:
        raise ValueError(f"{path}: the IDX file holds no items")
    body = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but the file holds {body.size}")
    return body.reshape(dims)


def load_mnist(data_dir: str | os.PathLike, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: x float32 [N, 1, 28, 28] in [0, 1], y int64, from the IDX files in ``data_dir``."""
    prefix = "train" if train else "t10k"
    images = read_idx(_find(data_dir, f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz",
                            f"{prefix}-images.idx3-ubyte"))
    labels = read_idx(_find(data_dir, f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels-idx1-ubyte.gz",
                            f"{prefix}-labels.idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"MNIST in {os.fspath(data_dir)!r}: the images file holds {images.ndim}-D items and the "
                         f"labels file {labels.ndim}-D (expected an idx3 images and an idx1 labels file)")
    if len(images) != len(labels):
        raise ValueError(f"MNIST in {os.fspath(data_dir)!r}: {len(images)} images but {len(labels)} labels")
    if labels.max() > 9:
        raise ValueError(f"MNIST in {os.fspath(data_dir)!r}: labels must be 0..9, found {int(labels.max())}")
    return torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))
