"""Learning-rate schedules as a multiplier of the peak rate over training progress t in [0, 1]."""

from __future__ import annotations

import math

import torch

LR_SCHEDULES = ("constant", "step", "cyclic", "cosine")


def lr_factor(schedule: str, t: float) -> float:
    """``step``: x0.1 at 50% and x0.01 at 75% of training (Madry et al.); ``cyclic``: linear up
    from 0 to the peak at 40% and back to 0 (Wong et al. 2020); ``cosine``; ``constant``."""
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    if schedule == "cyclic":
        return t / 0.4 if t < 0.4 else max(1.0 - (t - 0.4) / 0.6, 0.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    """A per-optimizer-step ``LambdaLR`` following :func:`lr_factor` over ``total_steps``."""
    lr_factor(schedule, 0.0)  # validates the name
    total = max(int(total_steps), 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(schedule, step / total))
