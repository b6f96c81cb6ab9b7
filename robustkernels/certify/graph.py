"""A model as the bound code sees it: a list of steps whose exact semantics we know, built from
the module tree, or a :class:`NotBoundable` error that names the first module we do not know.

A module is accepted only when its *exact* class is one listed here (a subclass may change the
function through its own ``forward`` or any helper, so it is refused), it has no forward hooks
or pre-hooks, no method replaced on the instance (``m.forward = ...``), and every option that
changes its function is handled exactly or refused. A module used at several places of a
Sequential is bounded at each of them. Steps:

- :class:`Affine`: ``center -> f(center)``, ``radius -> |f|(radius)`` (Linear, Conv2d with any
  padding mode, BatchNorm in eval with running statistics, the IBP layers with their eval
  masks, input normalisation, average pooling, Flatten, Identity, Dropout in eval);
- :class:`Monotone`: a non-decreasing map, bounds map to bounds (ReLU, LeakyReLU with slope
  >= 0, ReLU6, Hardtanh, Tanh, Sigmoid, ELU with alpha in [0, 1], max pooling);
- :class:`Elementwise`: an elementwise map that is not monotone, with its own exact interval
  function (LeakyReLU with a negative slope; Softplus, which jumps down where torch switches it
  to the identity);
- :class:`Block`: a pre-activation residual block ``main(head(x)) + (x | shortcut(head(x)))``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as _torch_module

from ..models.preact import PreActBlock, PreActResNet
from ..models.wide_resnet import WideResNet
from ..nn import IBPConv2d, IBPLinear, is_stochastic
from ..threat import check_normalization, normalize

# every module the bound code knows (by exact type: a subclass may change its function), with what
# it needs; the refusal message lists them, so the two cannot differ
_EVAL = " (eval, running statistics)"
LAYERS = {nn.Sequential: "nn.Sequential", nn.Linear: "Linear", nn.Conv2d: "Conv2d (any padding mode)",
          nn.BatchNorm1d: "BatchNorm1d" + _EVAL, nn.BatchNorm2d: "BatchNorm2d" + _EVAL, nn.ReLU: "ReLU",
          nn.LeakyReLU: "LeakyReLU", nn.ReLU6: "ReLU6", nn.Hardtanh: "Hardtanh", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid",
          nn.ELU: "ELU", nn.Softplus: "Softplus", nn.MaxPool2d: "MaxPool2d", nn.AdaptiveMaxPool2d: "AdaptiveMaxPool2d",
          nn.AvgPool2d: "AvgPool2d", nn.AdaptiveAvgPool2d: "AdaptiveAvgPool2d", nn.Flatten: "Flatten",
          nn.Identity: "Identity", nn.Dropout: "Dropout (eval)", nn.Dropout2d: "Dropout2d (eval)",
          IBPLinear: "IBPLinear (eval)", IBPConv2d: "IBPConv2d (eval)", PreActResNet: "the library's PreActResNet",
          PreActBlock: "its PreActBlock", WideResNet: "WideResNet"}
SUPPORTED = ", ".join(LAYERS.values())


class NotBoundable(ValueError, TypeError):
    """The model holds a module whose exact function the bound code does not know. A ValueError
    (and a TypeError, for callers that caught the earlier type errors)."""


@dataclass
class Affine:
    """``f`` affine; ``radius`` the map with absolute weights and no offset (for the interval
    radius). ``weight``/``bias`` are set for a Linear, so the last layer can fold into margins."""
    f: Callable[[torch.Tensor], torch.Tensor]
    radius: Callable[[torch.Tensor], torch.Tensor]
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None


@dataclass
class Monotone:
    """A non-decreasing map (elementwise or over windows). ``kind``: "relu", "max_pool" or "other"."""
    f: Callable[[torch.Tensor], torch.Tensor]
    kind: str = "other"
    pool: nn.Module | None = None


@dataclass
class Elementwise:
    """An elementwise map that is not monotone; ``bounds(lower, upper)`` -> ``(low, high)`` its
    exact range on each interval (same shapes as the input)."""
    bounds: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Block:
    head: list = field(default_factory=list)
    main: list = field(default_factory=list)
    shortcut: list | None = None


def _refuse(path: str, module: nn.Module, why: str):
    raise NotBoundable(f"{path} ({type(module).__name__}): {why}; certification supports {SUPPORTED}")


def _same(f) -> Affine:
    """A parameter-free linear map with non-negative coefficients: |f| = f."""
    return Affine(f, f)


def _linear(weight, bias) -> Affine:
    return Affine(lambda h: F.linear(h, weight, bias), lambda r: F.linear(r, weight.abs()), weight, bias)


def _conv(m: nn.Conv2d, weight) -> Affine:
    if m.padding_mode == "zeros":
        pad, padding = (lambda t: t), m.padding
    else:  # reflect / replicate / circular copy input entries: the radius is copied the same way
        pad, padding = (lambda t: F.pad(t, m._reversed_padding_repeated_twice, mode=m.padding_mode)), 0
    conv = lambda t, w, b: F.conv2d(pad(t), w, b, m.stride, padding, m.dilation, m.groups)  # noqa: E731
    return Affine(lambda h: conv(h, weight, m.bias), lambda r: conv(r, weight.abs(), None))


def _batch_norm(path, m) -> Affine:
    if m.training:
        _refuse(path, m, "BatchNorm in training mode normalises by batch statistics")
    if m.running_mean is None or m.running_var is None:
        _refuse(path, m, "BatchNorm without running statistics normalises by batch statistics")
    scale = 1 / torch.sqrt(m.running_var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight
    shift = -m.running_mean * scale + (m.bias if m.bias is not None else 0)

    def view(t, like):
        return t.view(1, -1, *[1] * (like.dim() - 2))

    def check(t):
        if t.dim() not in ((2, 3) if isinstance(m, nn.BatchNorm1d) else (4,)) or t.shape[1] != m.num_features:
            _refuse(path, m, f"expects {m.num_features} channels, got input of shape {list(t.shape)}")
        return t

    return Affine(lambda h: check(h) * view(scale, h) + view(shift, h), lambda r: r * view(scale.abs(), r))


def _eval_mask_weight(path, m):
    if m.training:
        _refuse(path, m, "an IBP layer samples its mask in training mode")
    return m.weight * m.mask()


def _activation(path, m):
    t = type(m)
    if t is nn.ReLU:
        return Monotone(F.relu, "relu")
    if t is nn.LeakyReLU:
        slope = float(m.negative_slope)
        return Monotone(lambda h: F.leaky_relu(h, slope)) if slope >= 0 else Elementwise(_leaky_negative(slope))
    if t in (nn.ReLU6, nn.Hardtanh):
        if not m.min_val <= m.max_val:
            _refuse(path, m, "min_val above max_val")
        return Monotone(lambda h: F.hardtanh(h, m.min_val, m.max_val))
    if t is nn.ELU:
        if m.alpha < 0:  # alpha (e^x - 1) is non-decreasing for alpha >= 0
            _refuse(path, m, f"ELU with alpha={m.alpha} is not monotone")
        return Monotone(lambda h: F.elu(h, m.alpha))
    if t is nn.Softplus:
        return _softplus(path, m)
    if t is nn.Tanh:
        return Monotone(torch.tanh)
    if t is nn.Sigmoid:
        return Monotone(torch.sigmoid)
    return None


def _leaky_negative(slope: float):
    """Interval function of a LeakyReLU with slope < 0: decreasing below 0, minimum 0 at 0."""
    def bounds(lower, upper):
        low = torch.where(lower >= 0, lower, torch.where(upper <= 0, slope * upper, torch.zeros_like(lower)))
        high = torch.where(lower >= 0, upper, torch.where(upper <= 0, slope * lower,
                                                          torch.maximum(upper, slope * lower)))
        return low, high
    return bounds


def _softplus(path, m) -> Elementwise:
    """torch's softplus is ``log1p(exp(beta x)) / beta`` where ``beta x <= threshold`` and ``x``
    where ``beta x > threshold``: both pieces increase, but it jumps down at the switch
    ``s = threshold / beta`` (by ``log1p(exp(-threshold)) / beta``). An interval across the
    switch therefore reaches the values of both pieces there."""
    beta, threshold = float(m.beta), float(m.threshold)
    if beta == 0 or not math.isfinite(beta):
        _refuse(path, m, f"Softplus with beta={m.beta} is not a finite function")

    def bounds(lower, upper):
        low, high = F.softplus(lower, beta, threshold), F.softplus(upper, beta, threshold)
        crossing = (lower * beta > threshold) != (upper * beta > threshold)
        switch = torch.tensor(threshold / beta, dtype=lower.dtype, device=lower.device)
        pieces = torch.stack([switch, F.softplus(switch, beta, math.inf)])  # identity, smooth piece at s
        return (torch.where(crossing, torch.minimum(low, pieces.min()), low),
                torch.where(crossing, torch.maximum(high, pieces.max()), high))
    return Elementwise(bounds)


def _pool(path, m):
    t = type(m)
    if t in (nn.MaxPool2d, nn.AdaptiveMaxPool2d):
        if m.return_indices:
            _refuse(path, m, "return_indices=True returns a pair")
        return Monotone(lambda h: _call_pool(m, h), "max_pool" if t is nn.MaxPool2d else "other", m)
    if t is nn.AvgPool2d:
        if m.divisor_override is not None and m.divisor_override <= 0:
            _refuse(path, m, "divisor_override must be positive")
        return _same(lambda h: _call_pool(m, h))
    if t is nn.AdaptiveAvgPool2d:
        return _same(lambda h: _call_pool(m, h))
    return None


def _call_pool(m, h):
    """The pooling's own functional (no module call, so no hooks can run)."""
    return type(m).forward(m, h)


def _leaf(path: str, m: nn.Module):
    t = type(m)
    if t in (nn.Linear, IBPLinear):
        return _linear(_eval_mask_weight(path, m) if t is IBPLinear else m.weight, m.bias)
    if t in (nn.Conv2d, IBPConv2d):
        return _conv(m, _eval_mask_weight(path, m) if t is IBPConv2d else m.weight)
    if t in (nn.BatchNorm1d, nn.BatchNorm2d):
        return _batch_norm(path, m)
    if t is nn.Flatten:
        if m.start_dim == 0 or m.end_dim == 0:
            _refuse(path, m, "flattening the batch dimension")
        return _same(lambda h: h.flatten(m.start_dim, m.end_dim))
    if t is nn.Identity:
        return _same(lambda h: h)
    if t in (nn.Dropout, nn.Dropout2d):
        if m.training and m.p > 0:
            _refuse(path, m, "Dropout in training mode is random")
        return _same(lambda h: h)
    return _activation(path, m) or _pool(path, m)


def _check_hooks(path: str, m: nn.Module) -> None:
    if m._forward_hooks or m._forward_pre_hooks:
        _refuse(path, m, "it has forward hooks, which may change its output")


def _check_own_methods(path: str, m: nn.Module) -> None:
    """The bound code follows the class; an instance attribute that shadows one of its methods
    (``m.forward = ...``, ``m._conv_forward = ...``) or a compiled call that is not the module's
    own (``module.compile()`` is) would run instead."""
    for name in vars(m):
        if callable(inspect.getattr_static(type(m), name, None)):
            _refuse(path, m, f"its instance replaces the method {name!r}, which may change its function")
    compiled = vars(m).get("_compiled_call_impl")
    if compiled is not None and getattr(compiled, "_torchdynamo_orig_callable", None) != m._call_impl:
        _refuse(path, m, "_compiled_call_impl is not torch.compile of its own call")


# what the known layers' forwards call: a replacement of any of these changes every such layer
_FUNCTIONS = [(F, n) for n in ("relu", "relu6", "hardtanh", "leaky_relu", "elu", "softplus", "linear", "conv2d",
                               "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                               "pad", "dropout")] + [(torch, n) for n in ("sigmoid", "tanh", "flatten", "relu")]


def _ours_or_torchs(fn) -> bool:
    module = getattr(fn, "__module__", None) or ""
    return module.split(".")[0] in ("torch", "robustkernels")


def _check_class_methods(path: str, m: nn.Module) -> None:
    """A method of the module's class (or a base) or a functional it calls, replaced on the class or
    in torch by code from elsewhere (``nn.ReLU.forward = ...``, ``F.relu = ...``), would run in place
    of the semantics bounded here."""
    for cls in type(m).__mro__[:-1]:  # object's own methods are not torch's
        for name, fn in vars(cls).items():
            if inspect.isfunction(fn) and not _ours_or_torchs(fn):
                _refuse(path, m, f"{cls.__name__}.{name} is not torch's or ours (replaced by {fn.__module__}), "
                                 "which may change its function")
    for owner, name in _FUNCTIONS:
        fn = getattr(owner, name, None)
        if fn is not None and not _ours_or_torchs(fn):
            _refuse(path, m, f"{owner.__name__}.{name} is replaced by {getattr(fn, '__module__', '?')}, which may "
                             "change what every such layer computes")


def _children(path: str, m: nn.Module, names) -> list:
    out = []
    for name in names:
        child = getattr(m, name)
        out += steps_of(child, f"{path}.{name}" if path else name)
    return out


def steps_of(m: nn.Module, path: str = "") -> list:
    """The steps computing ``m``'s forward, or :class:`NotBoundable` naming the module at ``path``."""
    where = path or "model"
    if not isinstance(m, nn.Module):
        raise TypeError(f"{where}: expected an nn.Module, got {type(m).__name__}")
    _check_hooks(where, m)
    _check_own_methods(where, m)
    if type(m) in LAYERS:  # a subclass: refused below, by name
        _check_class_methods(where, m)
    if is_stochastic(m):
        _refuse(where, m, "a stochastic layer; its output is not a function of the input")
    t = type(m)
    if t is nn.Sequential:  # _modules, not named_children(), which skips a module's second use
        return [s for name, child in m._modules.items() for s in steps_of(child, f"{path}.{name}" if path else name)]
    if t in (PreActResNet, WideResNet):
        return _children(path, m, ("conv1", "blocks", "bn", "act", "pool", "flatten", "fc"))
    if t is PreActBlock:
        shortcut = None if m.shortcut is None else _children(path, m, ("shortcut",))
        return [Block(_children(path, m, ("bn1", "act1")), _children(path, m, ("conv1", "bn2", "act2", "conv2")),
                      shortcut)]
    step = _leaf(where, m)
    if step is None:
        if isinstance(m, tuple(LAYERS)):
            _refuse(where, m, f"a subclass of {next(k for k in LAYERS if isinstance(m, k)).__name__} "
                              "may change its function, so it is not a known layer")
        _refuse(where, m, "forward is not a known layer")
    return [step]


def model_steps(model: nn.Module, normalization=None) -> list:
    """The steps of ``model``, preceded by ``(x - mean) / std`` when ``normalization`` is given
    (``(mean, std)``: floats or per-channel sequences, as the attacks take). Refuses global
    forward hooks, which would run on every module."""
    if _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks:
        raise NotBoundable("model: global forward hooks are registered (torch.nn.modules.module."
                           "register_module_forward_hook), which may change every layer's output")
    steps = steps_of(model)
    if normalization is not None:
        check_normalization(normalization)
        std = torch.as_tensor(normalization[1]).abs()
        steps = [Affine(lambda h: normalize(h, normalization), lambda r: normalize(r, (0.0, std)))] + steps
    return steps
