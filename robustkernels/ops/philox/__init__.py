"""The shared random stream as an op: ``philox_uniform`` / ``philox_normal``.

Draw ``i`` of ``(seed, offset)`` is Philox4x32-10 keyed by ``seed``, converted exactly as Triton
does: one draw per block (counter ``offset + i``, ``tl.rand`` / ``tl.randn``) or four per block
(output ``(offset + i) % 4`` of block ``(offset + i) // 4``, ``tl.rand4x`` / ``tl.randn4x``).
Bit for bit the same on every backend, uniform and normal: the normal conversion uses shared
fp32 log/sin/cos polynomials (csrc/common/fast_math.h) rather than each backend's libm.
"""

import torch

from .._registry import KernelOp, declare_kernel
from .._validation import check_int, check_random_state
from . import reference


def _philox_schema(n: int, seed: int, offset: int, normal: bool, per_block: int, device: torch.device) -> torch.Tensor:
    raise NotImplementedError  # schema only; KernelOp dispatches to a backend


def _philox_fill_schema(out: torch.Tensor, seed: int, offset: int, normal: bool, per_block: int) -> None:
    """Fills a contiguous float32 ``out`` with elements ``offset + i`` of the uniform or normal
    stream; ``per_block`` 1 (``tl.rand`` / ``tl.randn``) or 4 (``tl.rand4x`` / ``tl.randn4x``)."""
    raise NotImplementedError  # the schema only


philox = KernelOp("philox", _philox_schema, device_arg="device")
declare_kernel("philox_fill_", _philox_fill_schema, mutates_args=("out",))


@philox.register_fake
def _philox_fake(n, seed, offset, normal, per_block, device):
    return torch.empty(n, dtype=torch.float32, device=device)


def _philox_reference(n, seed, offset, normal, per_block, device):
    draw = reference.philox_normal if normal else reference.philox_uniform
    return draw(n, seed, offset, device=device, per_block=per_block)


def _philox_compiled(n, seed, offset, normal, per_block, device):
    out = torch.empty(n, dtype=torch.float32, device=device)
    torch.ops.robustkernels_C.philox_fill_(out, seed, offset, normal, per_block)
    return out


philox.register_backend("reference", _philox_reference)
philox.register_backend("cpp", _philox_compiled)
philox.register_backend("cuda", _philox_compiled)  # same schema; the dispatcher picks the CUDA kernel
philox.register_backend("triton", "robustkernels.kernels.triton.philox:philox_draw")


def _draw(n, seed, offset, normal, device, per_block):
    check_int("n", n, low=0)
    check_random_state(seed, offset, n)
    if per_block not in (1, 4) or isinstance(per_block, bool):
        raise ValueError(f"per_block must be 1 or 4, got {per_block!r}")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    return philox(n, seed, offset, normal, per_block, torch.device(device))


def philox_uniform(n: int, seed: int, offset: int = 0, *, device: str | torch.device = "cpu",
                   per_block: int = 1) -> torch.Tensor:
    """[n] float32 uniform draws in [0, 1) from the shared Philox stream.

    Args:
        n: number of draws (>= 0).
        seed: Philox key, in [0, 2**63). Use :func:`draw_seed` to take one from a generator.
        offset: counter of the first draw (>= 0, ``offset + n < 2**63``); draw ``i`` uses
            ``offset + i``, so ``philox_uniform(n, s, k)`` equals ``philox_uniform(n + k, s)[k:]``.
        device: where the result lives; the backend is chosen for this device.
        per_block: 1 = one draw per Philox block (element i is ``tl.rand(seed, offset + i)``);
            4 = all four outputs of each block (element i is output ``(offset + i) % 4`` of
            ``tl.rand4x(seed, (offset + i) // 4)``), about 3x cheaper to generate.
    """
    return _draw(n, seed, offset, False, device, per_block)


def philox_normal(n: int, seed: int, offset: int = 0, *, device: str | torch.device = "cpu",
                  per_block: int = 1) -> torch.Tensor:
    """[n] float32 standard-normal draws (Box-Muller as ``tl.randn``; with ``per_block=4`` both
    outputs of both pairs, as ``tl.randn4x``); arguments as :func:`philox_uniform`."""
    return _draw(n, seed, offset, True, device, per_block)
