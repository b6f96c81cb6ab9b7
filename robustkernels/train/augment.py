"""Training-time augmentations that combine with any method: label smoothing, Gaussian-noise
augmentation, mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019). Each maps a batch
``(x [B, C, H, W], y [B], targets [B, K])`` to a new one; ``targets`` are the soft training
targets (one-hot to start), ``y`` the hard labels the method's attack uses (for a mixed pair, the
label of the larger share). Random draws come from the generator the trainer seeds per step."""

from __future__ import annotations

import numpy as np
import torch

from ..common import non_negative


class Augmentation:
    name = ""

    def __call__(self, x, y, targets, generator):
        raise NotImplementedError


class LabelSmoothing(Augmentation):
    """``targets = (1 - s) targets + s / K``: the true class keeps ``1 - s + s / K``."""

    name = "label_smoothing"

    def __init__(self, smoothing: float = 0.1):
        self.smoothing = non_negative("smoothing", smoothing)
        if self.smoothing >= 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")

    def __call__(self, x, y, targets, generator):
        return x, y, (1 - self.smoothing) * targets + self.smoothing / targets.shape[1]


class GaussianNoiseAugment(Augmentation):
    """``x + sigma N(0, 1)`` clamped to [0, 1] (noise augmentation; Gaussian data augmentation)."""

    name = "gaussian_noise"

    def __init__(self, sigma: float = 0.1):
        self.sigma = non_negative("sigma", sigma)

    def __call__(self, x, y, targets, generator):
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x + self.sigma * noise).clamp(0, 1), y, targets


def _pair(x, generator, alpha):
    """A permutation of the batch and a mixing weight lambda ~ Beta(alpha, alpha), both drawn
    from ``generator`` (numpy's Beta sampler, seeded from it)."""
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    seed = int(torch.randint(2**62, (), generator=generator))
    return perm, float(np.random.default_rng(seed).beta(alpha, alpha))


class Mixup(Augmentation):
    """``x = lam x + (1 - lam) x[perm]``, the targets likewise, ``lam ~ Beta(alpha, alpha)``."""

    name = "mixup"

    def __init__(self, alpha: float = 1.0):
        self.alpha = non_negative("alpha", alpha)
        if not self.alpha > 0:
            raise ValueError("alpha must be > 0")

    def __call__(self, x, y, targets, generator):
        perm, lam = _pair(x, generator, self.alpha)
        y = y if lam >= 0.5 else y[perm]
        return lam * x + (1 - lam) * x[perm], y, lam * targets + (1 - lam) * targets[perm]


class CutMix(Augmentation):
    """A box of area ``(1 - lam) H W`` (lam ~ Beta(alpha, alpha), centre uniform, clipped to the
    image) is pasted from ``x[perm]``; the targets mix by the box's actual area."""

    name = "cutmix"

    def __init__(self, alpha: float = 1.0):
        self.alpha = non_negative("alpha", alpha)
        if not self.alpha > 0:
            raise ValueError("alpha must be > 0")

    def __call__(self, x, y, targets, generator):
        perm, lam = _pair(x, generator, self.alpha)
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy, cx = (int(torch.randint(n, (), generator=generator)) for n in (h, w))
        top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        out = x.clone()
        out[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        kept = 1 - (bottom - top) * (right - left) / (h * w)
        y = y if kept >= 0.5 else y[perm]
        return out, y, kept * targets + (1 - kept) * targets[perm]


AUGMENTATIONS = {cls.name: cls for cls in (LabelSmoothing, GaussianNoiseAugment, Mixup, CutMix)}


def make_augmentation(spec: str) -> Augmentation:
    """``"label_smoothing"``, ``"mixup:0.2"``, ``"gaussian_noise:0.05"``: a name and optionally its
    parameter (smoothing, sigma or alpha)."""
    if not isinstance(spec, str):
        raise TypeError(f"augmentation must be a name like 'mixup:1.0', got {type(spec).__name__}")
    name, _, value = spec.partition(":")
    name = name.replace("-", "_")
    if name not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)} (NAME or NAME:VALUE), got {spec!r}")
    try:
        parameter = float(value) if value else None
    except ValueError:
        raise ValueError(f"augmentation {spec!r}: {value!r} is not a number") from None
    try:
        return AUGMENTATIONS[name](parameter) if value else AUGMENTATIONS[name]()
    except ValueError as exc:
        raise ValueError(f"augmentation {spec!r}: {exc}") from None
