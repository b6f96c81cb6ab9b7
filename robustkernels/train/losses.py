"""Training losses: TRADES (Zhang et al. 2019) and the interval-bound sensitivity."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def trades_loss(
    logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float = 6.0
) -> torch.Tensor:
    """``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))`` (batch mean), TRADES' objective."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
        raise ValueError(f"beta must be a float >= 0, got {beta!r}")
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits_clean, dim=1), reduction="batchmean",
                  log_target=True)
    return F.cross_entropy(logits_clean, y) + beta * kl


def _affine(module: nn.Module, center: torch.Tensor, radius: torch.Tensor):
    """Interval through a linear map: center through the layer, radius through |W| without bias."""
    if isinstance(module, nn.Linear):
        return module(center), F.linear(radius, module.weight.abs())
    if isinstance(module, nn.Conv2d):
        return module(center), F.conv2d(radius, module.weight.abs(), None, module.stride, module.padding,
                                        module.dilation, module.groups)
    if isinstance(module, nn.BatchNorm2d):
        if module.training:
            raise ValueError("sensitivity needs BatchNorm in eval mode (a fixed affine map)")
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return module(center), radius * scale.abs().view(1, -1, 1, 1)
    raise TypeError


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval bound propagation (Gowal et al. 2018) of the box [lower, upper] through a model made
    of Sequential, Linear, Conv2d, BatchNorm2d (eval), ReLU, Flatten, Dropout, Identity, AvgPool2d,
    AdaptiveAvgPool2d and MaxPool2d. Returns sound bounds on the output."""
    if isinstance(model, nn.Sequential):
        for layer in model:
            lower, upper = interval_bounds(layer, lower, upper)
        return lower, upper
    if isinstance(model, (nn.ReLU, nn.MaxPool2d, nn.Flatten)):  # monotone: bounds map to bounds
        return model(lower), model(upper)
    if isinstance(model, (nn.Dropout, nn.Identity)):
        return lower, upper
    if isinstance(model, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):  # linear with non-negative weights
        return model(lower), model(upper)
    try:
        center, radius = _affine(model, (lower + upper) / 2, (upper - lower) / 2)
    except TypeError:
        raise TypeError(f"interval bounds do not support {type(model).__name__}; use sequential models of "
                        "Linear/Conv2d/BatchNorm2d/ReLU/pooling layers") from None
    return center - radius, center + radius


def sensitivity(model: nn.Module, x: torch.Tensor, eps: float, bounds=(0.0, 1.0)) -> torch.Tensor:
    """Log-volume of the interval over-approximation of the outputs reachable from the Linf ball of
    radius ``eps`` around ``x`` (clipped to ``bounds``): per sample ``sum_j log(u_j - l_j)``,
    averaged over the batch. Differentiable; usable as a loss term or as a metric."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a float > 0, got {eps!r}")
    lo, hi = bounds
    lower, upper = interval_bounds(model, (x - eps).clamp(lo, hi), (x + eps).clamp(lo, hi))
    return torch.log((upper - lower).clamp_min(1e-12)).flatten(1).sum(dim=1).mean()
