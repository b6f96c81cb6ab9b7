"""Learning-rate schedules as a multiplier of the peak rate over training progress t in [0, 1]."""

from __future__ import annotations

import math

import torch

LR_SCHEDULES = ("constant", "step", "cyclic", "cosine", "onecycle")

# torch's OneCycleLR defaults, which the FastAT Benchmark uses: the peak at 30%, from and to
# peak / 25, then down to peak / 25 / 1e4, cosine in both phases
ONECYCLE_PCT, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4


def _cosine(start: float, end: float, p: float) -> float:
    return end + (start - end) / 2.0 * (1.0 + math.cos(math.pi * min(max(p, 0.0), 1.0)))


def lr_factor(schedule: str, t: float) -> float:
    """``step``: x0.1 at 50% and x0.01 at 75% of training (Madry et al.); ``cyclic``: linear up
    from 0 to the peak at 40% and back to 0 (Wong et al. 2020); ``onecycle``: torch's
    ``OneCycleLR`` (Smith 2018) as the FastAT Benchmark runs it: cosine from peak / 25 up to the
    peak at 30%, then cosine down to peak / 2.5e5, with the momentum (SGD) or beta1 (Adam)
    cycled the other way between 0.95 and 0.85 - unlike ``cyclic``, which is linear, starts and
    ends at 0, peaks at 40% and leaves the momentum alone; ``cosine``; ``constant``."""
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    if schedule == "cyclic":
        return t / 0.4 if t < 0.4 else max(1.0 - (t - 0.4) / 0.6, 0.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if schedule == "onecycle":
        low = 1.0 / ONECYCLE_DIV
        if t < ONECYCLE_PCT:
            return _cosine(low, 1.0, t / ONECYCLE_PCT)
        return _cosine(1.0, low / ONECYCLE_FINAL_DIV, (t - ONECYCLE_PCT) / (1.0 - ONECYCLE_PCT))
    raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    """A per-optimizer-step scheduler over ``total_steps``: torch's ``OneCycleLR`` (its defaults,
    momentum cycled) for ``onecycle``, else a ``LambdaLR`` following :func:`lr_factor`. (The
    FastAT Benchmark steps its OneCycleLR once per epoch: the same curve in 100 stairs.)"""
    lr_factor(schedule, 0.0)  # validates the name
    total = max(int(total_steps), 1)
    if schedule == "onecycle":
        # OneCycleLR sets the lr itself from max_lr: the optimizer's lr is the peak
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total, pct_start=ONECYCLE_PCT,
                                                   div_factor=ONECYCLE_DIV, final_div_factor=ONECYCLE_FINAL_DIV)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(schedule, step / total))


def check_same_length(scheduler, total_steps: int, path: str) -> None:
    """A resumed ``onecycle`` run keeps the cycle of the run that wrote ``path``: its length is
    part of the schedule (the other schedules stretch to a longer run)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and scheduler.total_steps != max(int(total_steps), 1):
        raise ValueError(f"checkpoint {path!r}: schedule='onecycle' spans the whole run ({scheduler.total_steps} "
                         f"steps there, {total_steps} here): resume with the same epochs")
