"""Argument checks shared by every op: clear TypeError/ValueError messages that name the argument."""

from __future__ import annotations

import torch

from ..common import opmath_dtype  # noqa: F401 (the kernels' compute dtype)

INT64_MAX = 2**63 - 1
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_float_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` is a Tensor of a dtype the kernels take (fp32/bf16/fp16, or fp64)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16, float16 or float64, got {value.dtype}")
    return value


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> None:
    """``value`` is an int (a SymInt under torch.compile) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if torch.compiler.is_compiling():
        # May be symbolic (e.g. a seed drawn inside the graph): asserted when the graph runs.
        if low is not None:
            torch._check(value >= low, lambda: f"{name} must be >= {low}")
        if high is not None:
            torch._check(value <= high, lambda: f"{name} must be <= {high}")
        return
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")


def check_random_state(seed: object, offset: object, count: object = 0) -> None:
    """A Philox key and start counter: ``0 <= seed < 2**63`` and ``offset + count < 2**63``."""
    check_int("seed", seed, low=0, high=INT64_MAX)
    check_int("offset", offset, low=0, high=INT64_MAX)
    if not torch.compiler.is_compiling() and offset + count > INT64_MAX:
        raise ValueError(f"offset + number of draws must be < 2**63, got {offset} + {count}")


def _byte_span(t: torch.Tensor) -> tuple[int, int]:
    extent = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride())) + 1
    start = t.data_ptr() + t.element_size() * sum(
        (size - 1) * stride for size, stride in zip(t.shape, t.stride()) if stride < 0)
    return start, start + extent * t.element_size()


def aliases_partly(out: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether ``out`` may share memory with ``other`` without being exactly the same view (same
    address, shape and strides). Conservative: interleaved views that share no element count."""
    if out.numel() == 0 or other.numel() == 0:
        return False
    if out.untyped_storage().data_ptr() != other.untyped_storage().data_ptr():
        return False
    if out.data_ptr() == other.data_ptr() and out.shape == other.shape and out.stride() == other.stride():
        return False
    (a0, a1), (b0, b1) = _byte_span(out), _byte_span(other)
    return a0 < b1 and b0 < a1
