"""Training losses: TRADES (Zhang et al. 2019) and the interval-bound sensitivity."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..certify import interval_bounds


def trades_loss(
    logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float = 6.0
) -> torch.Tensor:
    """``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))`` (batch mean), TRADES' objective."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"beta must be a float >= 0, got {beta!r}")
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1), reduction="batchmean",
                  log_target=True)
    return F.cross_entropy(logits_clean, y) + beta * kl


def sensitivity(model: nn.Module, x: torch.Tensor, eps: float, bounds=(0.0, 1.0)) -> torch.Tensor:
    """Log-volume of the interval over-approximation of the outputs reachable from the Linf ball of
    radius ``eps`` around ``x`` (clipped to ``bounds``): per sample ``sum_j log(u_j - l_j)``,
    averaged over the batch. Differentiable; usable as a loss term or as a metric."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a float > 0, got {eps!r}")
    lo, hi = bounds
    lower, upper = interval_bounds(model, (x - eps).clamp(lo, hi), (x + eps).clamp(lo, hi))
    return torch.log((upper - lower).clamp_min(1e-12)).flatten(1).sum(dim=1).mean()
