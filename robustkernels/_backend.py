"""Which implementation of an op runs: ``reference`` | ``cpp`` | ``cuda`` | ``triton``.

Choice, highest priority first: the innermost :func:`use_backend` context, then the
``ROBUSTKERNELS_BACKEND`` environment variable, then ``auto`` (cpp on CPU; on CUDA devices
triton, else the compiled CUDA kernels, for fp32/bf16/fp16, and the compiled CUDA kernels for
fp64, which Triton's kernels refuse; the reference if none is available).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator

import torch

from . import _extension

BACKENDS = ("reference", "cpp", "cuda", "triton")
_CHOICES = ("auto",) + BACKENDS
ENV_VAR = "ROBUSTKERNELS_BACKEND"

# A process-wide stack, not a thread-local: autograd may run backward on another thread and
# must use the backend the forward used.
_override: list[str] = []


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on the device of the inputs."""


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Names of the backends that can run ops on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).

    ``"triton"`` is listed for CPU only under ``TRITON_INTERPRET=1`` (correct but slow).
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return []
    names = ["reference"]
    if device.type == "cpu":
        if _extension.LOADED:
            names.append("cpp")
        if _triton_installed() and _triton_interpreted():
            names.append("triton")
    elif device.type == "cuda":
        if _extension.CUDA_BUILT and torch.cuda.is_available():
            names.append("cuda")
        if _triton_installed():
            names.append("triton")
    return names


def _check_name(name: object, source: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{source} must be a str, got {type(name).__name__}")
    name = name.strip().lower()
    if name not in _CHOICES:
        raise ValueError(f"{source} must be one of {', '.join(_CHOICES)}; got {name!r}")
    return name


def requested_backend() -> str:
    """The backend asked for right now (may be ``"auto"``), before looking at any device."""
    if _override:
        return _override[-1]
    return _check_name(os.environ.get(ENV_VAR, "auto") or "auto", ENV_VAR)


TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what our Triton kernels take


def _auto(device: torch.device, implemented: tuple[str, ...], dtype: torch.dtype | None = None) -> str:
    if device.type == "cpu":
        preference = ("cpp",)
    else:  # Triton first, but not for dtypes its kernels refuse (fp64 goes to the CUDA C++ kernels)
        preference = ("triton", "cuda") if dtype is None or dtype in TRITON_DTYPES else ("cuda",)
    available = available_backends(device)
    for name in preference:
        if name in available and name in implemented:
            return name
    return "reference"


def resolve(device: str | torch.device, implemented: tuple[str, ...] = BACKENDS,
            dtype: torch.dtype | None = None) -> str:
    """The backend that runs an op on ``device`` for tensors of ``dtype``; raises if the
    requested one cannot run there. ``auto``: cpp on CPU; on CUDA triton, or cuda for fp64."""
    device = torch.device(device)
    name = requested_backend()
    if name == "auto":
        return _auto(device, implemented, dtype)
    if name not in implemented:
        raise BackendUnavailableError(f"this op has no {name!r} implementation")
    if name not in available_backends(device):
        raise BackendUnavailableError(
            f"backend {name!r} cannot run on device {device.type!r}{_hint(name)}; "
            f"available there: {', '.join(available_backends(device))}"
        )
    return name


def _hint(name: str) -> str:
    if name in ("cpp", "cuda") and not _extension.LOADED:
        return f" (extension not loaded: {_extension.REASON})"
    if name == "cuda" and not _extension.CUDA_BUILT:
        return " (the extension was built without CUDA kernels)"
    if name == "triton" and not _triton_installed():
        return " (triton is not installed: pip install 'robustkernels[triton]')"
    if name == "triton" and not torch.cuda.is_available():
        return " (no CUDA device; set TRITON_INTERPRET=1 before importing to interpret on CPU)"
    return ""


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the ops inside the block on backend ``name`` (``auto|reference|cpp|cuda|triton``).

    Raises ``ValueError`` for an unknown name and :class:`BackendUnavailableError` at once for a
    backend that can run on no device of this machine.
    """
    name = _check_name(name, "name")
    if name != "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        if not any(name in available_backends(d) for d in devices):
            raise BackendUnavailableError(f"backend {name!r} cannot run on this machine{_hint(name)}")
    _override.append(name)
    try:
        yield name
    finally:
        _override.pop()
