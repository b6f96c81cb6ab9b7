"""Datasets: scikit-learn's bundled digits by default (no download); CIFAR-10 and MNIST from
their standard files; the standard crop+flip augmentation in torch."""

from .digits import load_digits
from .files import load_cifar10, load_mnist, random_crop_flip, read_idx

__all__ = ["load_cifar10", "load_digits", "load_mnist", "random_crop_flip", "read_idx"]
