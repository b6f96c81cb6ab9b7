"""What every input-preprocessing defence shares: an ``nn.Module`` put in front of a model that
maps inputs in [0, 1] to inputs in [0, 1], and says whether it is differentiable and random."""

from __future__ import annotations

import math

import torch
from torch import nn


class Preprocessing(nn.Module):
    """Base of the front-ends. ``differentiable``: whether its gradient is informative (False:
    zero almost everywhere, or not defined - attack it with BPDA); ``randomized``: whether two
    passes on one input differ (attack it with EOT). Inputs: finite [N, C, H, W] in [0, 1]; NaN
    or +-inf is a ValueError on every front-end (none of them can say what it should become), and
    so is a value outside [0, 1] on those whose function assumes that range (``unit_range``)."""

    differentiable = True
    randomized = False
    unit_range = True  # the function depends on inputs lying in [0, 1] (quantisation, JPEG, clamping)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} takes float images [N, C, H, W], got "
                             f"{getattr(x, 'dtype', type(x).__name__)} {list(getattr(x, 'shape', []))}")
        if x.numel() == 0:
            return x.clone()  # an empty batch maps to an empty batch on every front-end
        low, high = (float(v) for v in torch.aminmax(x.detach()))  # NaN and +-inf propagate: one pass
        if not (math.isfinite(low) and math.isfinite(high)):
            bad = ~torch.isfinite(x.detach()).flatten(1).all(dim=1)
            raise ValueError(f"{type(self).__name__}: the input holds NaN or inf in {int(bad.sum())} of "
                             f"{x.shape[0]} images")
        if self.unit_range and (low < 0 or high > 1):
            raise ValueError(f"{type(self).__name__}: takes images in [0, 1], got values in [{low:g}, {high:g}]; "
                             "put it before the model's normalisation")
        return self.transform(x)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _StraightThrough(torch.autograd.Function):
    """Forward: the front-end's exact output; backward: the identity (Athalye et al. 2018)."""

    @staticmethod
    def forward(ctx, x, front):
        with torch.no_grad():
            return front(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation with the identity: the forward pass is
    ``front(x)`` exactly (so verdicts do not change), the backward pass treats ``front`` as the
    identity. ``BPDA(JPEGCompression(75))``."""

    def __init__(self, front: nn.Module):
        super().__init__()
        self.front = front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _StraightThrough.apply(x, self.front)


def with_bpda(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` sharing its parameters in which every non-differentiable
    :class:`Preprocessing` is wrapped in :class:`BPDA`; and the names of the wrapped front-ends."""
    import copy

    if isinstance(model, Preprocessing) and not model.differentiable:
        return BPDA(model), [type(model).__name__]
    wrapped = []
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    for name, child in model.named_children():
        if isinstance(child, Preprocessing) and not child.differentiable:
            clone._modules[name] = BPDA(child)
            wrapped.append(type(child).__name__)
        elif len(child._modules):
            clone._modules[name], inner = with_bpda(child)
            wrapped += inner
    return clone, wrapped
