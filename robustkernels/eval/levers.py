"""The model-side speed levers inside the attacks of :func:`~robustkernels.eval.autoattack` and
:func:`~robustkernels.eval.evaluate`: ``channels_last`` and ``torch.compile``, applied to a copy of
the model (the caller's model is never converted; clean passes and verdicts run on it), and the
gradient attacks' ``autocast``.

channels_last and compile keep the attacks in fp32: the verdicts do not depend on them beyond fp32
rounding (a convolution in another memory layout sums in another order). Whether channels_last pays
depends on the model and the device - measured on 2 AVX-512 cores, a forward and backward pass ran
1.25-1.4x faster on the bench's small CNNs, 1.17x on a WRN-16-4, 1.0x on a PreAct ResNet-18 and 0.92x
(slower) on a LeNet-like CNN - so ``"auto"`` (the default, on every device) times both layouts on
the first batch and keeps channels_last only where it is at least :data:`MIN_GAIN` faster.
torch.compile (inductor, dynamic batch: the active set shrinks the batch) was slower than eager on
CPU and costs its compile time; it stays off unless asked for (docs/guides/benchmarks.md, the
levers table).

``autocast="auto"`` (AutoAttack's ``fast`` version) times a bf16 pass against fp32 in the same
way, on devices that compute in bf16 natively (:func:`~robustkernels.machine.native_bf16`), and
keeps bf16 where it is at least :data:`MIN_GAIN` faster; verdicts stay fp32 (the attacks count a
point as fooled only when an fp32 pass agrees)."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..attacks.base import AUTOCAST, input_gradient
from ..common import frozen_model, model_device
from ..machine import native_bf16

MIN_GAIN = 1.1  # "auto" adopts channels_last when a pass is at least this many times faster
# "auto" times the fastest of 5 passes on at most 128 rows: the size of the attacks' active sets
# (survivors of a 250-row batch), and steadier than 256 rows at half the cost (benchmarks guide)
TIMED_ROWS, TIMED_PASSES = 128, 5


@dataclass(frozen=True)
class Levers:
    channels_last: bool
    compile: bool
    measured: float | None = None  # "auto": channels_last's measured speed-up of a forward + backward pass
    autocast: str | None = None  # the gradient attacks' precision (None: fp32)
    autocast_measured: float | None = None  # autocast="auto": bf16's measured speed-up over fp32

    def describe(self) -> str:
        """The layout and compile levers, and what "auto" measured ("none" without any)."""
        on = [name for name, used in (("channels_last", self.channels_last), ("torch.compile", self.compile)) if used]
        measured = [f"{name} measured {value:.2f}x" for name, value in
                    (("channels_last", self.measured), ("bf16", self.autocast_measured)) if value is not None]
        text = ", ".join(on) if on else "none"
        return f"{text} ({', '.join(measured)})" if measured else text


class ChannelsLast(nn.Module):
    """``inner`` (already converted to channels_last) fed its 4-D inputs in channels_last."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)


def check_lever(name: str, value) -> None:
    if not (value is True or value is False or value == "auto"):
        raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")


def check_autocast(value) -> None:
    if value != "auto" and (not isinstance(value, str | None) or value not in AUTOCAST):
        raise ValueError(f"autocast must be one of {tuple(AUTOCAST) + ('auto',)}, got {value!r}")


def with_levers(model: nn.Module, x: torch.Tensor, channels_last="auto", compile=False,
                autocast=None) -> tuple[nn.Module, Levers]:
    """(the module the attacks run, its levers) for inputs like ``x`` [B, ...]: ``model`` itself
    when neither layout nor compile is on, else a converted copy (weights, buffers and hooks
    copied; its parameters need no gradient). ``channels_last="auto"``: channels_last as measured
    above for a model with a ``Conv2d`` on images [B, C, H, W]; ``channels_last=True`` needs such
    images. ``autocast``: None / ``"bf16"`` / ``"fp16"`` as given, or ``"auto"`` (bf16 as
    measured above)."""
    check_lever("channels_last", channels_last)
    check_lever("compile", compile)
    check_autocast(autocast)
    if channels_last is True and x.dim() != 4:
        raise ValueError(f"channels_last needs image inputs [B, C, H, W], got shape {list(x.shape)}")
    images = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    layout, compiled = channels_last is True or (channels_last == "auto" and images), compile is True
    timed_precision = autocast == "auto" and native_bf16(model_device(model))
    precision = None if autocast == "auto" else autocast
    fast = _copy(model, required=channels_last is True or compiled) if layout or compiled else None
    if fast is None:
        layout = False
    converted = ChannelsLast(fast.to(memory_format=torch.channels_last)) if layout else None
    layouts = [False, True] if layout and channels_last == "auto" else [layout]
    precisions = [None, "bf16"] if timed_precision else [precision]
    measured, precision_measured = None, None
    if len(layouts) * len(precisions) > 1:
        seconds = _fastest([(converted if cl else model, p) for cl in layouts for p in precisions], x)
        times = dict(zip([(cl, p) for cl in layouts for p in precisions], seconds))
        precision, precision_measured = _choose(precisions, lambda p: min(times[(cl, p)] for cl in layouts))
        layout, measured = _choose(layouts, lambda cl: times[(cl, precision)])
        measured = measured if len(layouts) > 1 else None
        precision_measured = precision_measured if len(precisions) > 1 else None
    if fast is not None and not layout:
        fast = fast.to(memory_format=torch.contiguous_format)
    levers = Levers(layout, compiled, measured, precision, precision_measured)
    if not (layout or compiled):
        return model, levers
    fast = converted if layout else fast
    return (torch.compile(fast, dynamic=True) if compiled else fast), levers


def _choose(options: list, seconds) -> tuple:
    """(the second of two ``options`` if it is at least MIN_GAIN times faster than the first, else
    the first; the first's time over the second's) - or (the one option, None)."""
    if len(options) == 1:
        return options[0], None
    gain = seconds(options[0]) / seconds(options[1])
    return (options[1] if gain >= MIN_GAIN else options[0]), gain


def _copy(model: nn.Module, required: bool) -> nn.Module | None:
    try:
        fast = copy.deepcopy(model)
    except Exception as error:  # a module holding an uncopyable object (a lock, an open file)
        why = f"the model cannot be copied ({type(error).__name__}: {error})"
        if not required:
            warnings.warn(f"channels_last: off, {why}", stacklevel=4)
            return None
        raise ValueError(f"channels_last / compile work on a copy of the model and {why}; "
                         "pass channels_last=False, compile=False") from None
    return fast.requires_grad_(False)


def _fastest(sides: list[tuple[nn.Module, str | None]], x: torch.Tensor) -> list[float]:
    """The fastest of ``TIMED_PASSES`` forward and backward passes to the input on x's first rows,
    for each side (a module and its autocast), in eval mode and the global RNG left as it was;
    the sides take turns after one warm-up pass each - noise on a shared machine only adds time,
    and turns keep a drift of the machine from favouring any side."""
    x = x[:TIMED_ROWS].detach()
    best = [float("inf")] * len(sides)
    modules = list({id(m): m for m, _ in sides}.values())
    with torch.random.fork_rng(devices=[]), contextlib.ExitStack() as stack:
        for m in modules:
            stack.enter_context(frozen_model(m, "eval"))
        for turn in range(TIMED_PASSES + 1):  # the first turn warms up (allocations, kernel choice)
            for side, (m, precision) in enumerate(sides):
                seconds = _pass_seconds(m, x, precision)
                if turn:
                    best[side] = min(best[side], seconds)
    return best


def _pass_seconds(model: nn.Module, x: torch.Tensor, precision: str | None = None) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    tic = time.perf_counter()
    x_in = x.clone().requires_grad_(True)
    dtype = AUTOCAST[precision]
    with torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
        out = model(x_in)
    input_gradient(out.float().sum(), x_in)  # zeros where a front-end cuts the graph
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - tic
