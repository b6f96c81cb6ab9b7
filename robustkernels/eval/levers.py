"""The model-side speed levers inside the attacks of :func:`~robustkernels.eval.autoattack` and
:func:`~robustkernels.eval.evaluate`: ``channels_last`` and ``torch.compile``, applied to a copy of
the model (the caller's model is never converted; clean passes and verdicts run on it).

Both keep the attacks in fp32: the verdicts do not depend on them beyond fp32 rounding (a
convolution in another memory layout sums in another order). Whether channels_last pays depends
on the model and the device - measured on 2 AVX-512 cores, a forward and backward pass ran 1.25-1.4x
faster on the bench's small CNNs, 1.17x on a WRN-16-4, 1.0x on a PreAct ResNet-18 and 0.92x
(slower) on a LeNet-like CNN - so ``"auto"`` (the default, on every device) times both layouts on
the first batch and keeps channels_last only where it is at least :data:`MIN_GAIN` faster.
torch.compile (inductor, dynamic batch: the active set shrinks the batch) was slower than eager on
CPU and costs its compile time; it stays off unless asked for (docs/guides/benchmarks.md, the
levers table)."""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..attacks.base import input_gradient
from ..common import frozen_model

MIN_GAIN = 1.1  # "auto" adopts channels_last when a pass is at least this many times faster
TIMED_ROWS, TIMED_PASSES = 256, 5  # "auto" times the fastest of 5 passes on at most 256 rows (a batch)


@dataclass(frozen=True)
class Levers:
    channels_last: bool
    compile: bool
    measured: float | None = None  # "auto": channels_last's measured speed-up of a forward + backward pass

    def describe(self) -> str:
        on = [name for name, used in (("channels_last", self.channels_last), ("torch.compile", self.compile)) if used]
        text = ", ".join(on) if on else "none"
        return text if self.measured is None else f"{text} (channels_last measured {self.measured:.2f}x)"


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


def with_levers(model: nn.Module, x: torch.Tensor, channels_last="auto", compile=False) -> tuple[nn.Module, Levers]:
    """(the module the attacks run, its levers) for inputs like ``x`` [B, ...]: ``model`` itself
    when no lever is on, else a converted copy (weights, buffers and hooks copied; its parameters
    need no gradient). ``"auto"``: channels_last as measured above for a model with a ``Conv2d`` on
    images [B, C, H, W]; no compile. ``channels_last=True`` needs such images."""
    check_lever("channels_last", channels_last)
    check_lever("compile", compile)
    if channels_last is True and x.dim() != 4:
        raise ValueError(f"channels_last needs image inputs [B, C, H, W], got shape {list(x.shape)}")
    images = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    layout, compiled = channels_last is True or (channels_last == "auto" and images), compile is True
    if not (layout or compiled):
        return model, Levers(False, False)
    fast = _copy(model, required=channels_last is True or compiled)
    if fast is None:
        return model, Levers(False, False)
    measured = None
    if layout:
        converted = ChannelsLast(fast.to(memory_format=torch.channels_last))
        if channels_last == "auto":
            measured = _speedup(model, converted, x)
            layout = measured >= MIN_GAIN
        fast = converted if layout else fast.to(memory_format=torch.contiguous_format)
    if not (layout or compiled):
        return model, Levers(False, False, measured)
    return (torch.compile(fast, dynamic=True) if compiled else fast), Levers(layout, compiled, measured)


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


def _speedup(model: nn.Module, converted: nn.Module, x: torch.Tensor) -> float:
    """How many times faster ``converted`` runs a forward and backward pass to the input than
    ``model`` on x's first rows (eval mode, the global RNG left as it was): the fastest of
    ``TIMED_PASSES`` passes each, taken in turns after one warm-up pass each - noise on a shared
    machine only adds time, and turns keep a drift of the machine from favouring either."""
    x = x[:TIMED_ROWS].detach()
    best = [float("inf"), float("inf")]  # model's, converted's
    with torch.random.fork_rng(devices=[]), frozen_model(model, "eval"), frozen_model(converted, "eval"):
        for turn in range(TIMED_PASSES + 1):  # the first turn warms up (allocations, kernel choice)
            for side, m in enumerate((model, converted)):
                seconds = _pass_seconds(m, x)
                if turn:
                    best[side] = min(best[side], seconds)
    return best[0] / best[1]


def _pass_seconds(model: nn.Module, x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    tic = time.perf_counter()
    x_in = x.clone().requires_grad_(True)
    input_gradient(model(x_in).float().sum(), x_in)  # zeros where a front-end cuts the graph
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - tic
