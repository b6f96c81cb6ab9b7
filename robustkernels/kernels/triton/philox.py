"""Triton fill of the shared Philox stream: element i = tl.rand / tl.randn at offset + i."""

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def _philox_fill_kernel(out_ptr, n, seed, offset, NORMAL: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    counter = idx + offset  # int64, so the high word of the Philox counter is used past 2**32
    if NORMAL:
        value = tl.randn(seed, counter)
    else:
        value = tl.rand(seed, counter)
    tl.store(out_ptr + idx, value, mask=idx < n)


def philox_draw(n: int, seed: int, offset: int, normal: bool, device: torch.device) -> torch.Tensor:
    out = torch.empty(n, dtype=torch.float32, device=device)
    if n:
        _philox_fill_kernel[(triton.cdiv(n, _BLOCK),)](out, n, seed, offset, NORMAL=normal, BLOCK=_BLOCK)
    return out
