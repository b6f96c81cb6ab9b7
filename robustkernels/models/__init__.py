"""Models used across the robustness literature."""

from .wide_resnet import WideResNet, wide_resnet

__all__ = ["WideResNet", "wide_resnet"]
