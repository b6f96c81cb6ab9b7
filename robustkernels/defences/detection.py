"""Feature squeezing detection (Xu, Evans & Qi 2018): an input is rejected when the model's
prediction on it moves too far (L1 distance of the softmax vectors, the largest over the
squeezers) from its predictions on squeezed copies. The threshold is set on clean data for a
chosen false-positive rate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..common import frozen_model
from ..data import check_integer_labels, check_label_range
from .squeeze import BitDepthReduction, MedianSmoothing


@dataclass
class DetectionResult:
    """On a batch: the share rejected, and the accuracy on what was not rejected (NaN when every
    input was rejected: there is nothing to be accurate on)."""

    detection_rate: float
    accuracy_of_accepted: float
    accepted: int


class FeatureSqueezing:
    """``detector = FeatureSqueezing(model).calibrate(x_clean)``; ``detector.reject(x)`` [N] bool.

    Args:
        squeezers: default ``BitDepthReduction(5)`` and ``MedianSmoothing(2)`` (the paper's CIFAR-10
            pair; it uses 1-bit depth and 2x2 / 3x3 medians on MNIST).
        fpr: the share of clean calibration inputs rejected (the threshold is that quantile).
    """

    def __init__(self, model: nn.Module, squeezers=None, fpr: float = 0.05):
        if not 0 < fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {fpr!r}")
        self.model, self.fpr = model, float(fpr)
        self.squeezers = list(squeezers) if squeezers is not None else [BitDepthReduction(5), MedianSmoothing(2)]
        if not self.squeezers:
            raise ValueError("squeezers must hold at least one front-end (e.g. BitDepthReduction(5))")
        bad = [type(s).__name__ for s in self.squeezers if not callable(s)]
        if bad:
            raise TypeError(f"squeezers must be callables such as nn.Modules, got {bad}")
        self.threshold: float | None = None

    @staticmethod
    def _inputs(name: str, x) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
            raise TypeError(f"{name} must be a float tensor [N, ...], got {getattr(x, 'dtype', type(x).__name__)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: no samples")
        return x

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """[N]: max over squeezers of ``||softmax f(x) - softmax f(squeeze(x))||_1``."""
        x = self._inputs("x", x)
        with frozen_model(self.model, "eval"):
            p = self.model(x).float().softmax(1)
            return torch.stack([(p - self.model(s(x)).float().softmax(1)).abs().sum(1) for s in self.squeezers]).amax(0)

    def calibrate(self, x_clean: torch.Tensor) -> FeatureSqueezing:
        """Set the threshold so that a share ``fpr`` of ``x_clean`` is rejected."""
        self.threshold = float(torch.quantile(self.score(self._inputs("x_clean", x_clean)).double(), 1 - self.fpr))
        return self

    def reject(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            raise ValueError("calibrate(x_clean) the detector before using it")
        return self.score(x) > self.threshold

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> DetectionResult:
        """Detection rate on ``x`` [N, ...] and the model's accuracy on the inputs it lets through;
        ``y`` [N] integer labels of the model's classes."""
        x = self._inputs("x", x)
        if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
            raise ValueError(f"y must be a tensor of {x.shape[0]} labels, got {list(getattr(y, 'shape', []))}")
        check_integer_labels("y", y)
        with torch.no_grad(), frozen_model(self.model, "eval"):
            check_label_range(y, self.model(x[:1]).shape[1], "y")
        rejected = self.reject(x)
        accepted = ~rejected
        with torch.no_grad(), frozen_model(self.model, "eval"):
            correct = self.model(x[accepted]).argmax(1) == y[accepted] if accepted.any() else torch.zeros(0)
        n = int(accepted.sum())
        return DetectionResult(float(rejected.float().mean()), float(correct.float().mean()) if n else float("nan"), n)
