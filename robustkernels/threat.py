"""The threat model, parsed once: norm, eps, per-sample step/eps, bounds, normalisation.

Attacks, evaluation and training import these checks from here; the ops validate their own
tensor arguments with the same functions. The generic validators (``positive_int``,
``non_negative``, ...) and ``frozen_model`` live apart, in :mod:`robustkernels.common`.
``ThreatModel`` is resolved when an attack is built, and :meth:`ThreatModel.prepare` turns float
bounds into tensors once per attack call, so the per-step kernel call does no argument checks
and no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .common import is_number, non_negative, opmath_dtype

FLOAT32_MAX = float(torch.finfo(torch.float32).max)  # eps travels as a float32 tensor for fp32 / 16-bit inputs

NORMS = ("linf", "l2", "l1")


def default_step(eps: float, steps: int) -> float:
    """The attack step when none is given: ``2.5 * eps / steps`` (Madry et al.'s rule)."""
    return 2.5 * eps / steps


def check_norm(norm: str, allowed: tuple = NORMS, who: str = "") -> bool:
    """True for L2, False for the others in ``allowed``; a ValueError (naming ``who``) otherwise."""
    if norm not in allowed:
        raise ValueError(f"norm must be one of {allowed}{' for ' + who if who else ''}, got {norm!r}")
    return norm == "l2"


def _output_hint(result) -> str | int:
    """The ``output=`` a wrapper would most likely need for this model output (a suggestion only)."""
    if isinstance(result, tuple | list):
        return 0
    return "logits"


def check_logits_shape(logits, rows: int, min_classes: int = 1) -> None:
    """The model contract every attack and evaluation relies on: a ``[rows, K]`` logits tensor,
    K >= ``min_classes``; anything else is an error saying what the model returned."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model must return a logits tensor, got {type(logits).__name__}: name the logits with "
                        f"robustkernels.nn.LogitsOf(model, output={_output_hint(logits)!r})")
    if logits.dim() != 2 or logits.shape[0] != rows or logits.shape[1] < min_classes:
        classes = "" if min_classes <= 1 else f" (K >= {min_classes} classes)"
        raise ValueError(f"model must return logits of shape [B, K]{classes} for a batch of B = {rows}, "
                         f"got {list(logits.shape)}")


def check_all(valid: torch.Tensor, message: str) -> None:
    """Every entry of the bool tensor ``valid`` is True, checked without a GPU-to-host sync:
    on a CPU tensor in eager mode at once (a ``ValueError(message)``); on a GPU, and under
    ``torch.compile``, with ``torch._assert_async`` - a ``RuntimeError(message)`` on the CPU, and
    on a GPU a device-side assert, reported at the next synchronisation (and fatal to the CUDA
    context, as every device-side assert is). So a per-step call stays asynchronous and
    capturable by CUDA graphs: validate values on the CPU where an error must be recoverable."""
    if valid.device.type == "cpu" and not torch.compiler.is_compiling():
        if not bool(valid.all()):
            raise ValueError(message)
    else:
        torch._assert_async(valid.all(), message)


def per_sample(value, name: str, x: torch.Tensor, *, finite: bool = False) -> torch.Tensor:
    """A float or a [B] tensor >= 0 (and < inf if ``finite``) -> contiguous [B] tensor in the
    op-math dtype, on x's device. Floats are checked on the host; tensor values with
    :func:`check_all` (at once on the CPU; asynchronously on a GPU, no sync)."""
    batch = x.shape[0]
    if is_number(value):
        if value < 0 or value != value or (finite and value == float("inf")):
            raise ValueError(f"{name} must be {'finite and ' if finite else ''}>= 0, got {value}")
        return torch.full((batch,), float(value), dtype=opmath_dtype(x.dtype), device=x.device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a float or a [B] tensor, got {type(value).__name__}")
    if value.numel() == 1:
        value = value.reshape(1).expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"{name} must be a float or have shape [{batch}] (one per sample), got {list(value.shape)}")
    if value.device != x.device:
        raise ValueError(f"{name} is on {value.device} but x_adv is on {x.device}")
    if not value.is_floating_point() and value.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be a float tensor, got {value.dtype}")
    valid = (value >= 0) & (value < float("inf")) if finite else value >= 0  # NaN fails both
    check_all(valid, f"{name} must be >= 0{' and finite' if finite else ''} (and not NaN)")
    return value.to(opmath_dtype(x.dtype)).contiguous()


def _bound_tensor(name: str, value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """One side of ``bounds`` as a 1-D tensor (a number becomes one element on ``device``)."""
    if is_number(value):
        return torch.full((1,), float(value), dtype=dtype, device=device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"bounds {name} must be a float or a tensor, got {type(value).__name__}")
    return value.reshape(-1).to(dtype)


def channel_bounds(bounds, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) floats or per-channel tensors ([C] or [1, C, 1, 1] along dim 1) -> two contiguous
    [C] (or [1]) tensors in the op-math dtype on x's device, checked not NaN and lo <= hi. Floats
    are checked on the host; tensors on the CPU before they move, tensors already on a GPU with
    :func:`check_all` (no sync)."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"bounds must be a (lo, hi) pair, got {bounds!r}")
    compute = opmath_dtype(x.dtype)
    if all(is_number(v) for v in bounds):
        lo, hi = (float(v) for v in bounds)
        if lo != lo or hi != hi:
            raise ValueError("bounds must not be NaN")
        if lo > hi:
            raise ValueError("bounds must satisfy lo <= hi")
        return (torch.full((1,), lo, dtype=compute, device=x.device),
                torch.full((1,), hi, dtype=compute, device=x.device))
    on_cpu = all(v.device.type == "cpu" for v in bounds if isinstance(v, torch.Tensor))
    where = torch.device("cpu") if on_cpu else x.device  # checked where they are, or on x's device
    lo, hi = (_bound_tensor(name, v, compute, where).to(where) for name, v in zip(("lo", "hi"), bounds))
    if lo.numel() != hi.numel():
        if 1 not in (lo.numel(), hi.numel()):
            raise ValueError(f"bounds lo and hi need as many values, got {lo.numel()} and {hi.numel()}")
        lo, hi = lo.expand(max(lo.numel(), hi.numel())), hi.expand(max(lo.numel(), hi.numel()))
    if lo.numel() != 1 and (x.dim() < 2 or lo.numel() != x.shape[1]):
        raise ValueError(f"per-channel bounds need {lo.numel()} channels along dim 1, x has shape {list(x.shape)}")
    check_all(~(lo.isnan() | hi.isnan()), "bounds must not be NaN")
    check_all(lo <= hi, "bounds must satisfy lo <= hi")
    return lo.to(x.device).contiguous(), hi.to(x.device).contiguous()


def broadcast_bounds(bounds, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`channel_bounds` shaped to broadcast against x: [1, C, 1, ...] or [1, ..., 1]."""
    lo, hi = channel_bounds(bounds, x)
    shape = [1, -1] + [1] * (x.dim() - 2) if lo.numel() > 1 else [1] * x.dim()
    return lo.view(shape), hi.view(shape)


def _normalization_values(name: str, value) -> torch.Tensor:
    """One side of ``(mean, std)`` as a float64 vector: a number, a sequence of numbers or a
    tensor; anything else (strings included) is a TypeError naming the side."""
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"normalization {name} must be numbers, got a {value.dtype} tensor")
        return value.detach().reshape(-1).cpu().double()
    items = value if isinstance(value, (tuple, list)) else [value]
    if not items or not all(is_number(v) for v in items):
        raise TypeError(f"normalization {name} must be a number, a sequence of numbers or a tensor, got {value!r}")
    return torch.tensor([float(v) for v in items], dtype=torch.float64)


def check_normalization(normalization) -> None:
    """``None`` or a ``(mean, std)`` pair of numbers / per-channel sequences or tensors: finite,
    std > 0, and as many values on both sides (or one value on either)."""
    if normalization is None:
        return
    if not isinstance(normalization, (tuple, list)) or len(normalization) != 2:
        raise TypeError(f"normalization must be a (mean, std) pair, got {normalization!r}")
    mean, std = (_normalization_values(n, v) for n, v in zip(("mean", "std"), normalization))
    if not bool(mean.isfinite().all()):
        raise ValueError(f"normalization mean must be finite, got {mean.tolist()}")
    if not bool(std.isfinite().all()) or bool((std <= 0).any()):
        raise ValueError(f"normalization std must be finite and > 0, got {std.tolist()}")
    if mean.numel() != std.numel() and 1 not in (mean.numel(), std.numel()):
        raise ValueError(f"normalization mean and std need as many values (one per channel), got "
                         f"{mean.numel()} and {std.numel()}")


def normalize(x: torch.Tensor, normalization: Sequence | None) -> torch.Tensor:
    """``(x - mean) / std`` per channel (dim 1) for ``normalization=(mean, std)``; x if None.
    Per-channel values must match x's channel count (a ValueError saying both otherwise)."""
    if normalization is None:
        return x
    mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1) for v in normalization)
    channels = max(mean.numel(), std.numel())
    if channels > 1 and (x.dim() < 2 or x.shape[1] != channels):
        have = x.shape[1] if x.dim() >= 2 else 0
        raise ValueError(f"normalization has {channels} values (one per channel) but the input has {have} "
                         f"channel{'s' if have != 1 else ''}: shape {list(x.shape)}, channels along dim 1")
    shape = (1, -1, *[1] * (x.dim() - 2)) if channels > 1 else (1,) * max(x.dim(), 1)
    return (x - mean.view(shape)) / std.view(shape)


def lp_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample ``||delta||`` [B] in the threat model's norm (fp32 or fp64; L1 sums in fp64)."""
    flat = delta.flatten(1).to(opmath_dtype(delta.dtype))
    if norm == "l1":
        return flat.double().abs().sum(dim=1).to(flat.dtype)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


@dataclass(frozen=True)
class Bounds:
    """Bounds resolved for one batch: ``lo``/``hi`` [C] or [1] for the kernel, and the same
    shaped to broadcast against x."""

    lo: torch.Tensor
    hi: torch.Tensor
    lo_b: torch.Tensor
    hi_b: torch.Tensor

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(x, self.lo_b.to(x.dtype)), self.hi_b.to(x.dtype))


@dataclass(frozen=True)
class ThreatModel:
    """``eps``-ball in ``norm`` around clean inputs within ``bounds``; the model sees
    ``normalize(x, normalization)``. Built (and checked) once per attack."""

    eps: float
    norm: str = "linf"
    bounds: tuple = (0.0, 1.0)
    normalization: tuple | None = None

    @classmethod
    def build(cls, eps, norm="linf", bounds=(0.0, 1.0), normalization=None) -> ThreatModel:
        check_norm(norm)
        check_normalization(normalization)
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise TypeError(f"bounds must be a (lo, hi) pair, got {bounds!r}")
        eps = non_negative("eps", eps)
        if FLOAT32_MAX < eps < float("inf"):
            raise ValueError(f"eps must be inf (an unbounded ball) or at most float32's largest, 3.4e38, got {eps:g}")
        return cls(eps, norm, tuple(bounds),
                   None if normalization is None else tuple(normalization))

    @property
    def l2(self) -> bool:
        return self.norm == "l2"

    def space_kwargs(self) -> dict:
        """``norm``, ``bounds`` and ``normalization`` as the keyword arguments every attack takes
        (eps apart: the callers scale it)."""
        return dict(norm=self.norm, bounds=self.bounds, normalization=self.normalization)

    def prepare(self, x: torch.Tensor) -> Bounds:
        """Bounds as tensors on x's device (one conversion and one check per attack call)."""
        lo, hi = channel_bounds(self.bounds, x)
        lo_b, hi_b = broadcast_bounds(self.bounds, x)
        return Bounds(lo, hi, lo_b, hi_b)

    def distance(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample distance [B] in the threat model's norm."""
        return lp_norms(x_adv - x, self.norm)

    def within(self, x_adv: torch.Tensor, x: torch.Tensor, rtol: float = 1e-5) -> torch.Tensor:
        """[B] bool: x_adv inside the eps-ball (with a relative float tolerance)."""
        return self.distance(x_adv, x) <= self.eps * (1 + rtol) + 1e-7
