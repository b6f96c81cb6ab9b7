"""Triton fill of the shared Philox stream: tl.rand / tl.randn at offset + i (one per block),
or output (offset + i) % 4 of tl.rand4x / tl.randn4x at (offset + i) // 4 (four per block)."""

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def select4(index, v0, v1, v2, v3):
    """Output ``index % 4`` of a four-per-block draw (shared with the other kernels)."""
    k = index % 4
    return tl.where(k == 0, v0, tl.where(k == 1, v1, tl.where(k == 2, v2, v3)))


@triton.jit
def normal4_at(seed, index):
    """Element ``index`` of the four-per-block normal stream."""
    n0, n1, n2, n3 = tl.randn4x(seed, index // 4)
    return select4(index, n0, n1, n2, n3)


@triton.jit
def _philox_fill_kernel(out_ptr, n, seed, offset, NORMAL: tl.constexpr, PER_BLOCK: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    counter = idx + offset  # int64, so the high word of the Philox counter is used past 2**32
    if PER_BLOCK == 4:
        if NORMAL:
            value = normal4_at(seed, counter)
        else:
            u0, u1, u2, u3 = tl.rand4x(seed, counter // 4)
            value = select4(counter, u0, u1, u2, u3)
    elif NORMAL:
        value = tl.randn(seed, counter)
    else:
        value = tl.rand(seed, counter)
    tl.store(out_ptr + idx, value, mask=idx < n)


def philox_draw(n: int, seed: int, offset: int, normal: bool, per_block: int, device: torch.device) -> torch.Tensor:
    out = torch.empty(n, dtype=torch.float32, device=device)
    if n:
        _philox_fill_kernel[(triton.cdiv(n, _BLOCK),)](out, n, seed, offset, NORMAL=normal, PER_BLOCK=per_block,
                                                       BLOCK=_BLOCK)
    return out
