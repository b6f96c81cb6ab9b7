"""Every Triton launch goes through :func:`launch`: CUDA's grid limits checked (the interpreter
has none), the launch made on the tensors' own device (Triton uses the current one), FMA
contraction off (the bits must match the other backends). Under :func:`recording` launches are
recorded instead of run, so the grids of huge shapes can be checked and every specialisation
compiled ahead of time (:mod:`robustkernels.ops.aot`) without a GPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

MAX_GRID = (2**31 - 1, 65535, 65535)  # CUDA's limits on gridDim.x, .y, .z
# Kernels taking the random state declare @triton.jit(do_not_specialize=RANDOM_STATE): Triton
# would otherwise compile one variant per class of value (== 1, divisible by 16) of a fresh
# seed, a recompile on the first call of each class.
RANDOM_STATE = ("seed", "offset")
# The stochastic ops' kernels read their key from a one-element int64 tensor (``seed_ptr``) when
# they run, so a CUDA graph replays them with the key drawn for that replay.
RANDOM_KEY = ("seed_ptr", "offset")
_recorded: list | None = None


@dataclass
class Launch:
    kernel: object
    grid: tuple[int, ...]
    args: tuple
    constexprs: dict


def check_grid(grid: tuple[int, ...]) -> tuple[int, ...]:
    """``grid`` if every axis is within CUDA's limits, else a ValueError saying which."""
    for axis, (size, limit) in enumerate(zip(grid, MAX_GRID)):
        if not 1 <= size <= limit:
            raise ValueError(f"Triton launch grid {grid}: axis {axis} is {size}, CUDA allows 1..{limit}")
    return grid


def programs(rows: int, pieces: int) -> tuple[int]:
    """A 1-D grid of ``rows * pieces`` programs (the kernel splits ``program_id(0)`` itself), so
    no axis but x - whose limit is 2**31 - 1 - carries the bulk of the work."""
    return check_grid((max(rows * pieces, 1),))


def _device(args) -> torch.device:
    return next(a.device for a in args if isinstance(a, torch.Tensor))


def launch(kernel, grid: tuple[int, ...], *args, **constexprs) -> None:
    check_grid(grid)
    if _recorded is not None:
        _recorded.append(Launch(kernel, grid, args, constexprs))
        return
    device = _device(args)
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with guard:
        kernel[grid](*args, **constexprs, enable_fp_fusion=False)


@contextlib.contextmanager
def recording() -> Iterator[list[Launch]]:
    """Record the launches made inside (nothing runs; outputs stay uninitialised)."""
    global _recorded
    previous, _recorded = _recorded, []
    try:
        yield _recorded
    finally:
        _recorded = previous
