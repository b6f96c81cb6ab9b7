"""Interval bound propagation (IBP; Gowal et al. 2018): sound elementwise bounds on a network's
outputs over a box of inputs, through the layers of our models - Sequential, Linear, Conv2d,
BatchNorm2d in eval mode, ReLU, pooling, Flatten, Dropout/Identity - and the residual blocks of
the pre-activation ResNets (a sum's bounds are the sums of the bounds). Stochastic layers (PNI,
LWTA) are refused: their outputs are not functions of the input."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .pni import _PNIMixin

Box = tuple[torch.Tensor, torch.Tensor]


def _affine(module: nn.Module, center: torch.Tensor, radius: torch.Tensor):
    """Interval through a linear map: the center through the layer, the radius through |W|."""
    if isinstance(module, nn.Linear):
        return module(center), F.linear(radius, module.weight.abs())
    if isinstance(module, nn.Conv2d):
        return module(center), F.conv2d(radius, module.weight.abs(), None, module.stride, module.padding,
                                        module.dilation, module.groups)
    if module.training:
        raise ValueError("interval bounds need BatchNorm in eval mode (a fixed affine map)")
    scale = module.weight / torch.sqrt(module.running_var + module.eps)
    return module(center), radius * scale.abs().view(1, -1, *[1] * (center.dim() - 2))


def _block(block, lower, upper) -> Box:
    """A pre-activation block: out = main(pre) + (x or shortcut(pre)), pre = act1(bn1(x))."""
    pre = interval_bounds(nn.Sequential(block.bn1, block.act1), lower, upper)
    main = interval_bounds(nn.Sequential(block.conv1, block.bn2, block.act2, block.conv2), *pre)
    skip = (lower, upper) if block.shortcut is None else interval_bounds(block.shortcut, *pre)
    return main[0] + skip[0], main[1] + skip[1]


def interval_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> Box:
    """Sound bounds ``(l, u)`` on ``model``'s output for every input in ``[lower, upper]``."""
    from ..models.preact import PreActBlock, PreActResNet

    if isinstance(model, _PNIMixin) or type(model).__name__ in ("LWTA", "BatchNormLWTA"):
        raise TypeError(f"interval bounds do not apply to the stochastic layer {type(model).__name__}")
    if isinstance(model, nn.Sequential):
        for layer in model:
            lower, upper = interval_bounds(layer, lower, upper)
        return lower, upper
    if isinstance(model, PreActResNet):
        return interval_bounds(nn.Sequential(*features(model), model.fc), lower, upper)
    if isinstance(model, PreActBlock):
        return _block(model, lower, upper)
    if isinstance(model, (nn.ReLU, nn.LeakyReLU, nn.MaxPool2d, nn.Flatten, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        if getattr(model, "inplace", False):  # never overwrite the caller's (or a kept) box
            lower, upper = lower.clone(), upper.clone()
        return model(lower), model(upper)  # monotone (pooling: non-negative weights): bounds map to bounds
    if isinstance(model, (nn.Dropout, nn.Identity)):
        return lower, upper
    if isinstance(model, (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.BatchNorm1d)):
        center, radius = _affine(model, (lower + upper) / 2, (upper - lower) / 2)
        return center - radius, center + radius
    raise TypeError(f"interval bounds do not support {type(model).__name__}; models of Sequential, Linear, "
                    "Conv2d, BatchNorm (eval), ReLU, pooling and pre-activation residual blocks are supported")


def features(model: nn.Module) -> list[nn.Module]:
    """The layers before the final linear layer of a PreActResNet or of a Sequential ending in one."""
    from ..models.preact import PreActResNet

    if isinstance(model, PreActResNet):
        return [model.conv1, model.blocks, model.bn, model.act, model.pool, model.flatten]
    if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear):
        return list(model)[:-1]
    raise TypeError(f"{type(model).__name__} does not end in a linear layer")


def last_linear(model: nn.Module) -> nn.Linear:
    return model.fc if hasattr(model, "fc") and not isinstance(model, nn.Sequential) else model[-1]


def margin_lower_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[B, K]: lower bounds on ``z_y - z_j`` over the box, the final linear layer folded into the
    difference (tighter than subtracting the logits' bounds); column y is 0."""
    h_lo, h_hi = interval_bounds(nn.Sequential(*features(model)), lower, upper)
    fc = last_linear(model)
    w = fc.weight[y][:, None, :] - fc.weight[None, :, :]  # [B, K, F]: W_y - W_j
    b = (fc.bias[y][:, None] - fc.bias[None, :]) if fc.bias is not None else 0.0
    center, radius = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
    return (w @ center[:, :, None]).squeeze(2) - (w.abs() @ radius[:, :, None]).squeeze(2) + b
