"""The shared helper every public op is built with.

A :class:`KernelOp` is one ``torch.library`` custom op ``robustkernels::<name>`` whose body
picks a backend (see ``_backend.py``) from the device of one argument and calls that backend's
implementation. Each op file registers its implementations, fake (meta) function and autograd
formula on it. Because the backend is chosen inside the op's body, ``torch.compile`` sees one
opaque op whatever runs underneath; random state crosses the graph as a one-element int64 key
tensor (the stochastic ops) or plain ``int``s (the Philox fill).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Sequence

import torch

from .. import _backend
from ._random import check_key

NAMESPACE = "robustkernels"
COMPILED_NAMESPACE = "robustkernels_C"  # the C++/CUDA kernels (csrc/<op>/), private building blocks
REGISTERED: list[KernelOp] = []  # every op built here, in creation order
_COMPILED = torch.library.Library(COMPILED_NAMESPACE, "FRAGMENT")


def declare_kernel(kernel: str, stub: Callable, mutates_args: Sequence[str] = ()) -> str:
    """Declare ``robustkernels_C::<kernel>`` with the schema of ``stub``'s annotated signature: the
    one place a compiled kernel's schema is written. csrc/<op>/ only registers implementations
    (``TORCH_LIBRARY_IMPL``), loaded before this runs; the dispatcher checks each C++ signature
    against this schema. Declared whether or not the extension loaded (then nothing implements
    it, and the cpp / cuda backends are off). Returns the schema."""
    schema = torch.library.infer_schema(stub, mutates_args=tuple(mutates_args))
    _COMPILED.define(kernel + schema.replace("SymInt", "int"))  # C++ kernels take int64_t
    return schema


def _device_of(value: object) -> torch.device:
    if isinstance(value, torch.Tensor):
        return value.device
    if isinstance(value, (torch.device, str)):
        return torch.device(value)
    raise TypeError(f"cannot tell a device from {type(value).__name__}")


class KernelOp:
    """A custom op with one implementation per backend.

    Args:
        name: op name; the op is ``torch.ops.robustkernels.<name>``.
        stub: a function whose annotated signature is the op's schema (body unused).
        device_arg: the argument (a tensor or a device) whose device picks the backend.
        mutates_args: as for ``torch.library.custom_op``.
        key_arg: the argument holding a stochastic op's Philox key, checked on every backend to
            be a one-element int64 tensor on ``device_arg``'s device.
    """

    def __init__(self, name: str, stub: Callable, *, device_arg: str, mutates_args: Sequence[str] = (),
                 key_arg: str | None = None):
        self.name = name
        self.stub, self.mutates_args = stub, tuple(mutates_args)
        self.compiled: str | None = None  # the robustkernels_C kernel of the cpp / cuda backends
        self._impls: dict[str, Callable] = {}
        REGISTERED.append(self)
        signature = inspect.signature(stub)
        if device_arg not in signature.parameters:
            raise ValueError(f"device_arg {device_arg!r} is not a parameter of {stub.__name__}")

        names = list(signature.parameters)
        position = names.index(device_arg)
        key = names.index(key_arg) if key_arg is not None else None

        def check(args, kwargs) -> torch.Tensor:
            """The device argument, after checking the key against it."""
            where = args[position] if position < len(args) else kwargs[device_arg]
            if key is not None:
                check_key(args[key] if key < len(args) else kwargs[key_arg], where, name)
            return where

        @functools.wraps(stub)
        def dispatch(*args, **kwargs):
            where = check(args, kwargs)
            dtype = where.dtype if isinstance(where, torch.Tensor) else None
            return self._impls[self.backend_for(_device_of(where), dtype)](*args, **kwargs)

        self._dispatch = dispatch
        self._check = check
        self.op = torch.library.custom_op(f"{NAMESPACE}::{name}", dispatch, mutates_args=tuple(mutates_args))

    def backend_for(self, device: torch.device, dtype: torch.dtype | None = None) -> str:
        """The backend this op runs on for ``device`` (and tensors of ``dtype``) under the
        current backend choice."""
        return _backend.resolve(device, tuple(self._impls), dtype)

    def register_backend(self, backend: str, impl: Callable | str) -> None:
        """Add an implementation. ``impl`` may be ``"module:function"``, imported on first use
        (so that importing robustkernels does not import triton)."""
        if backend not in _backend.BACKENDS:
            raise ValueError(f"backend must be one of {_backend.BACKENDS}, got {backend!r}")
        if isinstance(impl, str):
            module, _, attr = impl.partition(":")

            def lazy(*args, **kwargs):
                self._impls[backend] = getattr(importlib.import_module(module), attr)
                return self._impls[backend](*args, **kwargs)

            self._impls[backend] = lazy
        else:
            self._impls[backend] = impl

    def register_compiled(self, kernel: str) -> None:
        """Declare ``torch.ops.robustkernels_C.<kernel>`` with this op's schema (:func:`declare_kernel`)
        and use it for the cpp and cuda backends; the dispatcher picks the CPU or CUDA kernel from
        the tensors' device."""
        declare_kernel(kernel, self.stub, self.mutates_args)

        def compiled(*args, **kwargs):
            return getattr(torch.ops.robustkernels_C, kernel)(*args, **kwargs)

        self.compiled = kernel
        self.register_backend("cpp", compiled)
        self.register_backend("cuda", compiled)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self._impls)

    def register_fake(self, fn: Callable) -> Callable:
        """The meta / fake implementation (which a meta key also reaches: it checks the key too)."""

        @functools.wraps(fn)
        def fake(*args, **kwargs):
            self._check(args, kwargs)
            return fn(*args, **kwargs)

        self.op.register_fake(fake)
        return fn

    def register_autograd(self, backward: Callable, *, setup_context: Callable) -> None:
        self.op.register_autograd(backward, setup_context=setup_context)

    def __call__(self, *args, **kwargs):
        return self.op(*args, **kwargs)

    def call_untracked(self, *args, **kwargs):
        """Run the op where autograd is not recording (inside an ``autograd.Function``): in eager
        mode the backend's implementation directly, skipping the custom-op dispatch (tens of
        microseconds a call, which small layers feel); under ``torch.compile`` the custom op,
        whose fake implementation the tracer needs."""
        if torch.compiler.is_compiling():
            return self.op(*args, **kwargs)
        return self._dispatch(*args, **kwargs)
