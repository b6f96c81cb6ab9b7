"""Parametric Noise Injection layers (He, Rakin & Fan, CVPR 2019).

``PNIConv2d`` / ``PNILinear`` are ``nn.Conv2d`` / ``nn.Linear`` whose weight gets trainable
Gaussian noise on every forward: ``w + alpha * std(w) * eta`` (fused op, noise never stored).
As in the paper's code, the noise is on in training *and* evaluation; ``noise_enabled = False``
(or :func:`set_pni_noise`) turns it off.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..ops.noise import noisy_weight
from .conversion import functional_calls, report

GRANULARITIES = ("layer", "channel", "element")


def _alpha_shape(weight: torch.Tensor, granularity: str) -> tuple[int, ...]:
    if granularity == "layer":
        return (1,)
    if granularity == "channel":
        return (weight.shape[0],)
    if granularity == "element":
        return tuple(weight.shape)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


class _PNIMixin:
    """Adds ``alpha`` (no weight decay, see :func:`pni_param_groups`) and the noisy weight."""

    weight: nn.Parameter

    def _init_pni(self, granularity: str, alpha_init: float) -> None:
        if not isinstance(alpha_init, (int, float)) or isinstance(alpha_init, bool):
            raise TypeError(f"alpha_init must be a float, got {type(alpha_init).__name__}")
        shape = _alpha_shape(self.weight, granularity)
        self.granularity = granularity
        self.noise_enabled = True
        self.alpha = nn.Parameter(torch.full(shape, float(alpha_init), device=self.weight.device, dtype=torch.float32))

    def noisy_weight(self) -> torch.Tensor:
        return noisy_weight(self.weight, self.alpha) if self.noise_enabled else self.weight

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, granularity={self.granularity}, noise_enabled={self.noise_enabled}"


class PNIConv2d(_PNIMixin, nn.Conv2d):
    """``nn.Conv2d`` with PNI on the weight. ``granularity``: ``"layer"`` (one alpha, the paper's
    default), ``"channel"`` (one per output channel) or ``"element"``; alpha starts at 0.25."""

    def __init__(self, *args, granularity: str = "layer", alpha_init: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_pni(granularity, alpha_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.noisy_weight(), self.bias)


class PNILinear(_PNIMixin, nn.Linear):
    """``nn.Linear`` with PNI on the weight; arguments as :class:`PNIConv2d`."""

    def __init__(self, *args, granularity: str = "layer", alpha_init: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_pni(granularity, alpha_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.noisy_weight(), self.bias)


def _convert(layer: nn.Module, granularity: str, alpha_init: float) -> nn.Module:
    """A PNI layer sharing ``layer``'s parameters (same tensors, so the weights are kept)."""
    cls = PNIConv2d if isinstance(layer, nn.Conv2d) else PNILinear
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    new.__dict__.update({k: v for k, v in layer.__dict__.items() if k not in ("_parameters", "_buffers", "_modules")})
    new._parameters = dict(layer._parameters)
    new._buffers = dict(layer._buffers)
    new._modules = dict(layer._modules)
    new.training = layer.training
    new._init_pni(granularity, alpha_init)
    return new


def convert_to_pni(model: nn.Module, granularity: str = "layer", *, alpha_init: float = 0.25,
                   layers: tuple[type, ...] = (nn.Conv2d, nn.Linear), strict: bool = False) -> nn.Module:
    """Swap the ``nn.Conv2d`` / ``nn.Linear`` layers of ``model`` for PNI layers, **in place**.

    The new layers hold the same weight and bias tensors (nothing is copied or re-initialised),
    so an optimizer built earlier still updates them; build a new one to include the alphas.
    Layers that are already PNI layers are left alone. Returns ``model`` (or the new layer if
    ``model`` itself is a Conv2d/Linear). Convolutions and linear maps called as functions in a
    ``forward`` (``F.conv2d``, ``F.linear``) cannot be swapped: they are listed in a
    ``UserWarning`` (a ``ValueError`` with ``strict=True``), as is a model without any layer to convert.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not all(issubclass(t, (nn.Conv2d, nn.Linear)) for t in layers):
        raise ValueError("layers may only name nn.Conv2d / nn.Linear (sub)classes")

    def wants(module):
        return isinstance(module, layers) and not isinstance(module, _PNIMixin)

    if wants(model):
        return _convert(model, granularity, alpha_init)
    converted = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if wants(child):
                setattr(parent, name, _convert(child, granularity, alpha_init))
                converted += 1
    already = any(isinstance(m, _PNIMixin) for m in model.modules())
    report("convert_to_pni", converted or int(already), functional_calls(model, ("conv2d", "linear")),
           "Conv2d/Linear", strict)
    return model


def set_pni_noise(model: nn.Module, enabled: bool) -> nn.Module:
    """Turn the weight noise of every PNI layer in ``model`` on or off. Returns ``model``."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    for module in model.modules():
        if isinstance(module, _PNIMixin):
            module.noise_enabled = enabled
    return model


def pni_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: every parameter with ``weight_decay`` except the PNI alphas,
    which get none (decay would push the noise scale to zero, as the paper notes)."""
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a float >= 0, got {weight_decay!r}")
    alphas = {id(m.alpha) for m in model.modules() if isinstance(m, _PNIMixin)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in alphas], "weight_decay": float(weight_decay)},
        {"params": [p for p in params if id(p) in alphas], "weight_decay": 0.0},
    ]
