"""Robust training: losses so far (the training methods and loops land with the training issue)."""

from .losses import interval_bounds, sensitivity, trades_loss

__all__ = ["interval_bounds", "sensitivity", "trades_loss"]
