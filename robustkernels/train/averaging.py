"""Weight averaging: an exponential moving average (EMA) of a model's weights during training.

After every optimizer step, with ``n`` the updates so far and ``tau`` the target decay::

    decay = min(tau, (1 + n) / (10 + n))        # warm-up: early averages follow the weights
    avg   = decay * avg + (1 - decay) * weights

The warm-up (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``, used by Rebuffi et al.
2021 for robust training) keeps a short run from freezing the random initial weights into the
average: with tau = 0.9995 the average spans about 2,000 steps, more than a whole run here. The
FastAT Benchmark (fzjcdt/FastAT_Benchmark, 100 epochs of 391 steps) averages without it.

Buffers: floating-point buffers (BatchNorm's running mean and variance) are averaged with the
same decay, as the FastAT Benchmark averages every ``state_dict`` entry: the averaged statistics
follow the averaged weights' activations at no cost, where recomputing them would take an extra
pass over data that is clean or adversarial by choice. Integer buffers (``num_batches_tracked``)
are copied. The average lives on its own copy of the model (eval mode, no gradients), which
validation, the best-robust choice and the final evaluation read.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

WARMUP = 10  # the (1 + n) / (WARMUP + n) ramp of the decay


def check_tau(tau) -> float | None:
    """``None`` (no averaging) or a float in (0, 1); a ValueError / TypeError naming it otherwise."""
    if tau is None:
        return None
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"weight_average must be None or a float tau in (0, 1), got {type(tau).__name__}")
    if not 0.0 < tau < 1.0:
        raise ValueError(f"weight_average must be a decay tau in (0, 1) (e.g. 0.9995), got {tau}")
    return float(tau)


def decay_at(tau: float, updates: int) -> float:
    """The decay of the ``updates``-th update (0-based): ``min(tau, (1 + n) / (10 + n))``."""
    return min(tau, (1.0 + updates) / (WARMUP + updates))


class WeightAverage:
    """The running average of ``model``'s ``state_dict``; :meth:`update` after each optimizer step.

    Args:
        model: the trained module (unwrapped: not DDP, not compiled); copied once here.
        tau: the target decay in (0, 1), e.g. 0.9995.
    """

    def __init__(self, model: nn.Module, tau: float):
        self.tau = check_tau(tau)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights and buffers."""
        decay = decay_at(self.tau, self.updates)
        current = model.state_dict()
        for name, avg in self.model.state_dict().items():
            value = current[name]
            if avg.is_floating_point():
                avg.mul_(decay).add_(value.detach().to(avg.dtype), alpha=1.0 - decay)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the averaged weights, the update count and tau."""
        return {"model": self.model.state_dict(), "updates": self.updates, "tau": self.tau}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates, self.tau = int(state["updates"]), float(state["tau"])
