"""Datasets: scikit-learn's bundled digits by default (no download); MNIST, CIFAR-10, CIFAR-100
and SVHN from their standard files (:func:`download` fetches CIFAR-10 and MNIST for users with a
network); the user's image folders and tensor files; :func:`load` any of them by name as a
Dataset, :func:`load_dataset` the named ones as tensors; the standard crop+flip augmentation in
torch."""

from __future__ import annotations

from .augment import CropFlip, random_crop_flip
from .digits import load_digits
from .download import download
from .facts import DATASET_SHAPES, DEFAULT_EPS, NUM_CLASSES
from .files import load_cifar10, load_cifar100, load_mnist, read_idx
from .folders import ImageFolder, load_tensors
from .labels import check_integer_labels, check_label_range
from .load import DATASETS, USER_DATASETS, TensorImages, load, load_dataset
from .source import Fields, IndexedData, as_tensors, batches, take
from .svhn import load_svhn

__all__ = ["DATASETS", "USER_DATASETS", "ImageFolder", "load_tensors", "DATASET_SHAPES", "DEFAULT_EPS", "NUM_CLASSES",
           "CropFlip", "Fields", "IndexedData", "TensorImages", "as_tensors", "batches", "check_integer_labels",
           "check_label_range", "download", "load", "load_cifar10", "load_cifar100", "load_dataset", "load_digits",
           "load_mnist", "load_svhn", "random_crop_flip", "read_idx", "take"]
