"""Gaussian noise on the input as a randomised front-end (attack it with EOT)."""

from __future__ import annotations

import math

import torch

from ..common import non_negative
from .base import Preprocessing


class GaussianNoise(Preprocessing):
    """``clamp(x + sigma N(0, 1), 0, 1)`` with fresh noise on every call (from the global RNG, so
    ``torch.manual_seed`` reproduces it); differentiable, randomised."""

    randomized = True

    def __init__(self, sigma: float = 0.1):
        super().__init__()
        self.sigma = non_negative("sigma", sigma)
        if not math.isfinite(self.sigma):
            raise ValueError(f"sigma must be finite, got {sigma!r}")

    def transform(self, x):
        return (x + self.sigma * torch.randn_like(x)).clamp(0, 1)
