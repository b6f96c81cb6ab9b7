"""Datasets: scikit-learn's bundled digits by default (no download); CIFAR-10 and MNIST from
their standard files (:func:`download` fetches them for users with a network); the standard
crop+flip augmentation in torch; :func:`load_dataset` by name."""

from __future__ import annotations

import os

import torch

from .augment import CropFlip, random_crop_flip
from .digits import load_digits
from .download import download
from .facts import DATASET_SHAPES, DEFAULT_EPS
from .files import load_cifar10, load_mnist, read_idx
from .folders import ImageFolder, load_tensors
from .labels import check_integer_labels, check_label_range
from .source import Fields, IndexedData, as_tensors, batches

DATASETS = ("digits", "mnist", "cifar10")
USER_DATASETS = ("imagefolder", "tensors")  # test data from the user's own files (eval)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, seed: int = 0
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((x_train, y_train), (x_test, y_test))`` for ``"digits"`` (bundled), ``"mnist"`` or
    ``"cifar10"`` (read from ``data_dir``)."""
    if name == "digits":
        x_train, y_train, x_test, y_test = load_digits(seed=seed)
        return (x_train, y_train), (x_test, y_test)
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    if data_dir is None:
        raise ValueError(f"dataset {name!r} is read from files: give data_dir (or --data-dir)")
    loader = load_mnist if name == "mnist" else load_cifar10
    return loader(data_dir, train=True), loader(data_dir, train=False)


__all__ = ["DATASETS", "USER_DATASETS", "ImageFolder", "load_tensors", "DATASET_SHAPES", "DEFAULT_EPS", "CropFlip",
           "Fields", "IndexedData", "as_tensors", "batches", "check_integer_labels", "check_label_range", "download",
           "load_cifar10", "load_dataset", "load_digits", "load_mnist", "random_crop_flip", "read_idx"]
