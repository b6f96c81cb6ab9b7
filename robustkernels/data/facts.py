"""Facts about the data sets the command line reads: image shape and the threat radius the
literature uses on each."""

from __future__ import annotations

DATASET_SHAPES = {"digits": (1, 8), "mnist": (1, 28), "cifar10": (3, 32), "cifar100": (3, 32),
                  "svhn": (3, 32)}  # channels, side
DEFAULT_EPS = {"digits": 0.1, "mnist": 0.3, "cifar10": 8 / 255, "cifar100": 8 / 255, "svhn": 8 / 255}
NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10}
