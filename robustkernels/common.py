"""Helpers every layer shares, apart from the threat model: the generic argument validators,
the op-math dtype, :func:`frozen_model` (attacks and evaluation never change the caller's model),
the model's device, the process rank, and progress bars (tqdm on a terminal, silent when stderr
is piped to a log)."""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

AUTOCAST = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}  # a precision's name -> its dtype


def input_gradient(value: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """``d value / d x_in``, zeros where ``value`` does not depend on ``x_in`` (a front-end that cuts
    the graph, e.g. JPEG): what a naive attack sees there, rather than an error."""
    if not value.requires_grad:
        return torch.zeros_like(x_in)
    (grad,) = torch.autograd.grad(value, x_in, allow_unused=True)
    return torch.zeros_like(x_in) if grad is None else grad


def typed_options(cls, options, fields: dict, where: str):
    """``options`` (an instance of the dataclass ``cls``, or None) with ``fields`` (keywords named
    after its fields) applied on top: what :func:`~robustkernels.train.fit` and
    :func:`~robustkernels.eval.evaluate` take as typed options or as keywords."""
    if options is not None and not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r} (its options are the fields "
                        f"of {cls.__name__})")
    return dataclasses.replace(options, **fields) if options is not None else cls(**fields)


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype perturbation math runs in: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def positive_int(name: str, value) -> int:
    """``value`` is an int >= 1 (a NumPy integer too; bools refused) -> int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def non_negative_int(name: str, value, what: str = "") -> int:
    """``value`` is an int >= 0 (a NumPy integer too; bools refused) -> int: a TypeError /
    ValueError naming ``name`` (and saying ``what`` it is) otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 0{what}, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0{what}, got {value!r}")
    return int(value)


def non_negative(name: str, value, upper: float | None = None) -> float:
    """``value`` is a real number >= 0 (a NumPy scalar too; NaN refused), at most ``upper``
    if given -> float."""
    if not is_number(value):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not value >= 0 or (upper is not None and value > upper):
        raise ValueError(f"{name} must be >= 0{'' if upper is None else f' and <= {upper}'}, got {value}")
    return float(value)


def positive(name: str, value) -> float:
    """``value`` is a real number > 0 -> float."""
    if not is_number(value):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return float(value)


def flag(name: str, value) -> bool:
    """``value`` as a bool if it is one (a numpy bool too); a TypeError naming ``name`` otherwise
    (``"no"`` is not False)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def is_number(value) -> bool:
    """A real number: a Python int or float or a NumPy scalar (not a bool, which is an int to Python)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (CPU for a model without parameters)."""
    params = next(iter(model.parameters()), None)
    return params.device if params is not None else torch.device("cpu")


@contextlib.contextmanager
def dtype_hint(model: nn.Module, x: torch.Tensor, name: str = "x") -> Iterator[None]:
    """Turn a RuntimeError raised inside (the model failing on ``x``) into a TypeError naming
    ``name`` when floating-point ``x`` and the model's floating-point parameters differ in dtype
    (float64 data from NumPy into a float32 model). A model that casts its input itself runs."""
    try:
        yield
    except RuntimeError as error:
        weight = next((p for p in model.parameters() if p.is_floating_point()), None)
        if weight is None or not x.is_floating_point() or x.dtype == weight.dtype:
            raise
        raise TypeError(f"{name} is {x.dtype} but the model's parameters are {weight.dtype}: cast one to the "
                        f"other (x.to({weight.dtype}) or model.to({x.dtype}))") from error


@contextlib.contextmanager
def grad_enabled() -> Iterator[None]:
    """Autograd on, whatever the caller's mode (``torch.no_grad()`` or ``torch.inference_mode()``):
    attacks and bounds need input gradients. The caller's mode is back on exit. Tensors the
    caller made in inference mode go through :func:`normal_tensor` inside."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def normal_tensor(value):
    """``value`` itself, or a normal copy of an inference-mode tensor (one autograd may use);
    call it inside :func:`grad_enabled`."""
    return value.clone() if isinstance(value, torch.Tensor) and value.is_inference() else value


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes) under ``torch.distributed``, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def all_processes(items: list, world: int) -> list:
    """Every one of the ``world`` processes' ``items`` lists joined in rank order, on every
    process (``torch.distributed``); one process: ``items`` unchanged."""
    if world == 1:
        return items
    every = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, items)
    return [item for part in every for item in part]


@contextlib.contextmanager
def frozen_model(model: nn.Module, mode: str) -> Iterator[None]:
    """Put ``model`` in ``mode`` (``"eval"``, ``"train"`` or ``"keep"``) with no parameter
    gradients; restore every module's training flag, every parameter's ``requires_grad`` and the
    global RNG state on exit; in a mode where modules train (BatchNorm updating its running
    statistics), every buffer is restored too."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    trains = mode == "train" or (mode == "keep" and any(training for _, training in modes))
    buffers = [(b, b.detach().clone()) for b in model.buffers()] if trains else []
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    cpu_rng = torch.get_rng_state()
    if mode != "keep":
        model.train(mode == "train")
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """A ``tqdm`` bar that shows only if ``enabled`` and stderr is a terminal (tqdm's
    ``disable=None``), so a piped log gets no carriage-return updates."""
    return tqdm(iterable, disable=None if enabled else True, dynamic_ncols=True, **kwargs)
