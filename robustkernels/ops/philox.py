"""The shared random stream as an op: ``philox_uniform`` / ``philox_normal``.

Draw ``i`` of ``(seed, offset)`` is Philox4x32-10 with counter ``offset + i`` and key ``seed``,
converted exactly as Triton's ``tl.rand`` / ``tl.randn``, and is the same on every backend
(uniform: bit for bit; normal: within an ulp or two of the transcendental functions).
"""

import torch

from .. import reference
from ._registry import KernelOp
from ._validation import check_int, check_random_state


def _philox_schema(n: int, seed: int, offset: int, normal: bool, device: torch.device) -> torch.Tensor:
    raise NotImplementedError  # schema only; KernelOp dispatches to a backend


philox = KernelOp("philox", _philox_schema, device_arg="device")


@philox.register_fake
def _philox_fake(n, seed, offset, normal, device):
    return torch.empty(n, dtype=torch.float32, device=device)


def _philox_reference(n, seed, offset, normal, device):
    draw = reference.philox_normal if normal else reference.philox_uniform
    return draw(n, seed, offset, device=device)


def _philox_compiled(n, seed, offset, normal, device):
    out = torch.empty(n, dtype=torch.float32, device=device)
    torch.ops.robustkernels_C.philox_fill_(out, seed, offset, normal)
    return out


philox.register_backend("reference", _philox_reference)
philox.register_backend("cpp", _philox_compiled)
philox.register_backend("cuda", _philox_compiled)  # same schema; the dispatcher picks the CUDA kernel
philox.register_backend("triton", "robustkernels.kernels.triton.philox:philox_draw")


def _draw(n, seed, offset, normal, device):
    check_int("n", n, low=0)
    check_random_state(seed, offset, n)
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    return philox(n, seed, offset, normal, torch.device(device))


def philox_uniform(n: int, seed: int, offset: int = 0, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """[n] float32 uniform draws in [0, 1) from the shared Philox stream.

    Args:
        n: number of draws (>= 0).
        seed: Philox key, in [0, 2**63). Use :func:`draw_seed` to take one from a generator.
        offset: counter of the first draw (>= 0, ``offset + n < 2**63``); draw ``i`` uses
            ``offset + i``, so ``philox_uniform(n, s, k)`` equals ``philox_uniform(n + k, s)[k:]``.
        device: where the result lives; the backend is chosen for this device.
    """
    return _draw(n, seed, offset, False, device)


def philox_normal(n: int, seed: int, offset: int = 0, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """[n] float32 standard-normal draws (Box-Muller, as ``tl.randn``); arguments as
    :func:`philox_uniform`."""
    return _draw(n, seed, offset, True, device)
