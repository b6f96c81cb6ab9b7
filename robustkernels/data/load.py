"""Every data set the library reads, by name: :func:`load` gives a map-style Dataset of
``(x float [C, H, W] in [0, 1], y int)`` samples for ``fit``, ``evaluate``, ``autoattack`` and
``compare``; :func:`load_dataset` the named sets as tensor pairs (train, test)."""

from __future__ import annotations

import numbers
import os

import torch
from torch.utils.data import Dataset, TensorDataset

from .digits import load_digits
from .facts import NUM_CLASSES
from .files import load_cifar10, load_cifar100, load_mnist
from .folders import ImageFolder, load_tensors
from .svhn import load_svhn

DATASETS = ("digits", "mnist", "cifar10", "cifar100", "svhn")  # by name; the last four from their files
USER_DATASETS = ("imagefolder", "tensors")  # the user's own files
_READERS = {"mnist": load_mnist, "cifar10": load_cifar10, "cifar100": load_cifar100, "svhn": load_svhn}


class TensorImages(TensorDataset):
    """A pair of tensors as a Dataset that knows its number of classes."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int):
        super().__init__(x, y)
        self.num_classes = num_classes


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, seed: int = 0
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((x_train, y_train), (x_test, y_test))`` for ``"digits"`` (bundled; the split from
    ``seed``) or ``"mnist"``, ``"cifar10"``, ``"cifar100"``, ``"svhn"`` (read from ``data_dir``)."""
    seed = _checked_seed(seed)
    if name == "digits":
        x_train, y_train, x_test, y_test = load_digits(seed=seed)
        return (x_train, y_train), (x_test, y_test)
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if data_dir is None:
        raise ValueError(f"dataset {name!r} is read from files: give data_dir (or --data-dir)")
    return _READERS[name](data_dir, train=True), _READERS[name](data_dir, train=False)


def load(name: str, root: str | os.PathLike | None = None, train: bool = False, *, seed: int = 0) -> Dataset:
    """The ``train`` or test split of data set ``name`` as a map-style Dataset with a
    ``num_classes`` attribute.

    - ``digits`` (bundled), ``mnist``, ``cifar10``, ``cifar100``, ``svhn``: their standard files in
      ``root`` (as :func:`load_dataset`), held in memory;
    - ``imagefolder``: ``root/train`` and ``root/val`` (or ``root/test``), one subfolder per class;
      for the test split a folder of class subfolders may also be ``root`` itself. Images are read
      on access (a large folder streams through a DataLoader);
    - ``tensors``: ``root/train.pt`` and ``root/test.pt`` (or ``.npz``); for the test split ``root``
      may also be the file itself.
    """
    seed = _checked_seed(seed)
    if name == "digits":
        return TensorImages(*load_dataset(name, seed=seed)[0 if train else 1], NUM_CLASSES[name])
    if name in DATASETS:
        if root is None:
            raise ValueError(f"dataset {name!r} is read from files: give root (data_dir, or --data-dir)")
        return TensorImages(*_READERS[name](root, train=train), NUM_CLASSES[name])
    if name not in USER_DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS + USER_DATASETS}, got {name!r}")
    if root is None:
        raise ValueError(f"dataset {name!r} reads the user's files: give root (--data-dir)")
    root = os.fspath(root)
    if name == "imagefolder":
        return ImageFolder(_split_path(root, train, ("train",), ("val", "test"), os.path.isdir, "folder"))
    path = _split_path(root, train, ("train.pt", "train.npz"), ("test.pt", "test.npz"), os.path.isfile, "file")
    x, y = load_tensors(path)
    return TensorImages(x, y, int(y.max()) + 1)  # load_tensors refuses a file of no samples


def _checked_seed(seed) -> int:
    """``seed`` (the digits' split) as an int: an integer (numpy's too), not a bool, a float or a
    string."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return int(seed)


def _split_path(root: str, train: bool, train_names, test_names, exists, kind: str) -> str:
    """The path of the split in ``root``: one of its names inside the folder ``root``, or for the
    test split ``root`` itself when it holds no named split."""
    names = train_names if train else test_names
    if not os.path.exists(root):
        raise ValueError(f"--data-dir {root!r} does not exist")
    if kind == "folder" and not os.path.isdir(root):
        raise ValueError(f"--data-dir {root!r} is a file; give the folder of images (one subfolder per class)")
    if os.path.isdir(root):
        found = [os.path.join(root, n) for n in names if exists(os.path.join(root, n))]
        if found:
            return found[0]
    if not train and (os.path.isdir(root) if kind == "folder" else os.path.isfile(root)):
        return root
    raise ValueError(f"--data-dir {root!r}: the {'training' if train else 'test'} split needs a {kind} named "
                     f"{' or '.join(names)} in it")
