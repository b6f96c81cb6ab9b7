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
CPU and costs its compile time; it stays off unless asked for (docs/results/benchmarks.md, the
levers table).

``autocast="auto"`` (AutoAttack's ``fast`` version) times a bf16 pass against fp32 in the same
way, on devices that compute in bf16 natively (:func:`~robustkernels.machine.native_bf16`), and
keeps bf16 where it is at least :data:`MIN_GAIN` faster; verdicts stay fp32 (the attacks count a
point as fooled only when an fp32 pass agrees).

Models built elsewhere may fail with a lever (a ``.view(B, -1)`` of a channels_last activation,
an op without bf16 support) or give a non-finite gradient in bf16: "auto" leaves such a side out
and says so in the report; a lever asked for explicitly that fails is refused (:func:`lever_error`)."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .common import AUTOCAST, frozen_model, input_gradient, model_device
from .machine import native_bf16

MIN_GAIN = 1.1  # "auto" adopts channels_last when a pass is at least this many times faster
# "auto" times the fastest of 5 passes on at most 128 rows: the size of the attacks' active sets
# (survivors of a 250-row batch), and steadier than 256 rows at half the cost (docs/results)
TIMED_ROWS, TIMED_PASSES = 128, 5


@dataclass(frozen=True)
class Levers:
    channels_last: bool
    compile: bool
    measured: float | None = None  # "auto": channels_last's measured speed-up of a forward + backward pass
    autocast: str | None = None  # the gradient attacks' precision (None: fp32)
    autocast_measured: float | None = None  # autocast="auto": bf16's measured speed-up over fp32
    failed: tuple[str, ...] = ()  # "auto"'s sides the model failed on, and why

    def describe(self) -> str:
        """The layout and compile levers, and what "auto" measured ("none" without any)."""
        on = [name for name, used in (("channels_last", self.channels_last), ("torch.compile", self.compile)) if used]
        measured = [f"{name} measured {value:.2f}x" for name, value in
                    (("channels_last", self.measured), ("bf16", self.autocast_measured)) if value is not None]
        text = ", ".join(on) if on else "none"
        return f"{text} ({', '.join(measured + list(self.failed))})" if measured or self.failed else text


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
    measured above). "auto" leaves out a side the model fails on (a ``.view`` of a channels_last
    activation, an op without bf16 support, a non-finite gradient), noted in the report; a lever
    asked for explicitly that the model fails on is refused with a ValueError."""
    check_lever("channels_last", channels_last)
    check_lever("compile", compile)
    check_autocast(autocast)
    if channels_last is True and x.dim() != 4:
        raise ValueError(f"channels_last needs image inputs [B, C, H, W], got shape {list(x.shape)}")
    images = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    layout, compiled = channels_last is True or (channels_last == "auto" and images), compile is True
    timed_precision = autocast == "auto" and native_bf16(model_device(model))
    fast = _copy(model, required=channels_last is True or compiled) if layout or compiled else None
    layout = layout and fast is not None
    modules = {False: model, True: ChannelsLast(fast.to(memory_format=torch.channels_last)) if layout else None}
    layouts = [False, True] if layout and channels_last == "auto" else [layout]
    precisions = [None, "bf16"] if timed_precision else [None if autocast == "auto" else autocast]
    sides = [(cl, p) for cl in layouts for p in precisions]
    if sides == [(False, None)]:  # the model itself in fp32: nothing to time or check
        return (torch.compile(fast, dynamic=True) if compiled else model), Levers(False, compiled)
    seconds, failed = _fastest([(modules[cl], p) for cl, p in sides], x, plain=model)
    if failed[0] is not None:
        raise lever_error({"channels_last": channels_last is True, "autocast": precisions[0]}, failed[0])
    times = dict(zip(sides, seconds))
    precision, precision_measured = _choose(precisions, lambda p: min(times[(cl, p)] for cl in layouts))
    layout, measured = _choose(layouts, lambda cl: times[(cl, precision)])
    notes = _failures(sides, failed)
    if fast is not None and not layout:
        fast = fast.to(memory_format=torch.contiguous_format)
    levers = Levers(layout, compiled, measured, precision, precision_measured, notes)
    if not (layout or compiled):
        return model, levers
    fast = modules[True] if layout else fast
    return (torch.compile(fast, dynamic=True) if compiled else fast), levers


def lever_error(levers: dict, why: str) -> ValueError:
    """The error for levers asked for (``{"channels_last": bool, "autocast": str | None}``) that
    the model fails a forward and backward pass with."""
    asked = {k: v for k, v in levers.items() if v}
    if not asked:
        return ValueError(f"the model fails a forward and backward pass to its input ({why})")
    return ValueError(f"{' with '.join(f'{k}={v!r}' for k, v in asked.items())}: the model fails a forward and "
                      f"backward pass ({why}); leave {' and '.join(asked)} off")


def _failures(sides: list[tuple[bool, str | None]], failed: list[str | None]) -> tuple[str, ...]:
    """What the model failed on: a lever where every side with it failed (one line for both of
    channels_last's sides), else the side."""
    notes, told = [], set()
    for lever, has in (("channels_last", lambda side: side[0]), ("bf16", lambda side: side[1] == "bf16")):
        with_it = [i for i, side in enumerate(sides) if has(side)]
        if 0 < len(with_it) < len(sides) and all(failed[i] for i in with_it):
            notes.append(f"{lever} failed: {failed[with_it[0]]}")
            told.update(with_it)
    return tuple(notes + [f"{_name(side)} failed: {why}" for i, (side, why) in enumerate(zip(sides, failed))
                          if why and i not in told])


def _name(side: tuple[bool, str | None]) -> str:
    return " + ".join((["channels_last"] if side[0] else []) + ([side[1]] if side[1] else [])) or "fp32"


def _choose(options: list, seconds) -> tuple:
    """(the second of two ``options`` if it is at least MIN_GAIN times faster than the first, else
    the first; the first's time over the second's, None where the second failed) - or (the one
    option, None)."""
    if len(options) == 1:
        return options[0], None
    gain = seconds(options[0]) / seconds(options[1])
    return (options[1] if gain >= MIN_GAIN else options[0]), (gain if gain > 0 else None)


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


def lever_failure(model: nn.Module, x: torch.Tensor, channels_last: bool, autocast: str | None) -> str | None:
    """Why a forward and backward pass of ``model`` on ``x`` [B, ...] fails with these levers (the
    error raised, or a non-finite input gradient where fp32 gives a finite one), or None where it
    runs or the model fails in fp32 too. Eval mode, channels_last on a copy: the model, its mode
    and the global RNG are left as they were."""
    if not channels_last and autocast is None:
        return None
    try:
        module = ChannelsLast(copy.deepcopy(model).to(memory_format=torch.channels_last)) if channels_last else model
    except Exception:  # uncopyable: nothing to check here, the caller's own conversion decides
        return None
    failed = _fastest([(model, None), (module, autocast)], x, passes=0)[1]
    return None if failed[0] is not None else failed[1]


def _fastest(sides: list[tuple[nn.Module, str | None]], x: torch.Tensor, plain: nn.Module | None = None,
             passes: int = TIMED_PASSES) -> tuple[list[float], list[str | None]]:
    """(the fastest of ``passes`` forward and backward passes to the input on x's first rows
    for each side - a module and its autocast -, why each side failed or None), in eval mode and
    the global RNG left as it was. The first turn checks and warms up every side (allocations,
    kernel choice); a side that raises or gives a non-finite gradient where the ``plain`` model's
    fp32 pass (default: the first side's) is finite is out (time inf). One side: only checked.
    The sides take turns - noise on a shared machine only adds time, and turns keep a drift of
    the machine from favouring any side."""
    x = x[:TIMED_ROWS].detach()
    best, failed = [float("inf")] * len(sides), [None] * len(sides)
    modules = list({id(m): m for m in [m for m, _ in sides] + ([] if plain is None else [plain])}.values())
    with torch.random.fork_rng(devices=[]), contextlib.ExitStack() as stack:
        for m in modules:
            stack.enter_context(frozen_model(m, "eval"))
        finite = [_checked_pass(m, x, precision) for m, precision in sides]
        failed = [why if isinstance(why, str) else None for why in finite]
        reference = finite[0] if plain is None or sides[0] == (plain, None) else _checked_pass(plain, x, None)
        if reference is True:
            failed = [why or (None if ok is True else "a non-finite input gradient") for why, ok in zip(failed, finite)]
        for _ in range(passes if len(sides) > 1 else 0):
            for side, (m, precision) in enumerate(sides):
                if failed[side] is None:
                    best[side] = min(best[side], _pass_seconds(m, x, precision)[0])
    return best, failed


def _checked_pass(model: nn.Module, x: torch.Tensor, precision: str | None):
    """One pass: whether its input gradient is finite, or why it raised (a one-line str)."""
    try:
        return _pass_seconds(model, x, precision)[1]
    except Exception as error:  # the side is left out, not the evaluation: "auto" must not break a model
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:120]


def _pass_seconds(model: nn.Module, x: torch.Tensor, precision: str | None = None) -> tuple[float, bool]:
    """(seconds of a forward and backward pass to the input, whether that gradient is finite)."""
    if x.is_cuda:
        torch.cuda.synchronize()
    tic = time.perf_counter()
    x_in = x.clone().requires_grad_(True)
    dtype = AUTOCAST[precision]
    with torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
        out = model(x_in)
    grad = input_gradient(out.float().sum(), x_in)  # zeros where a front-end cuts the graph
    if x.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    return seconds, bool(torch.isfinite(grad).all())
