"""Robust training: methods (one small class per file), the shared loop :func:`fit`, and losses.

    method = make_method("pgd_at", eps=8/255, steps=10)
    history = fit(model, method, (x, y), epochs=10, batch_size=128, lr=0.1, val_data=(x_val, y_val))

or, in a loop you own, ``loss_fn = RobustLoss(model, "pgd-at", eps=8/255)`` and
``loss_fn(x, y).loss.backward()`` per batch.
"""

from .losses import interval_bounds, sensitivity, trades_loss
from .methods import METHODS, Method, make_method, scheduled_eps
from .options import FitOptions
from .robust_loss import RobustLoss
from .schedules import LR_SCHEDULES, lr_factor
from .trainer import fit, validate

__all__ = ["LR_SCHEDULES", "METHODS", "FitOptions", "Method", "RobustLoss", "fit", "interval_bounds", "lr_factor",
           "make_method", "validate", "scheduled_eps", "sensitivity", "trades_loss"]
