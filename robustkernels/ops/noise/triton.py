"""Triton noise injection: out = x + std * alpha * eta, eta = element offset + i of the
four-per-block normal stream (see philox.py), each Philox block computed once for its four
elements, and the alpha gradient regenerating the same noise. Programs (rows x pieces, on grid
axis 0): a program never crosses a row, the slice of ``inner`` elements that shares one alpha,
so per-channel sums need no atomics; the partial sums are in float64, as on the CPU and CUDA."""

import torch
import triton
import triton.language as tl

from ...kernels.triton.launch import RANDOM_KEY, launch, programs
from ...kernels.triton.philox import normal4_blocks

_MAX_BLOCK = 1024


@triton.jit
def _row_piece(pid, inner, pieces, offset, BLOCK: tl.constexpr):
    """Program ``pid``'s share of its row: (row, element indices [BLOCK], mask, first Philox block).
    Row r holds elements r * inner ... (counters offset + r * inner ...); a program's BLOCK counters
    start on a Philox block, so its BLOCK // 4 blocks are whole, and lanes outside the row are
    masked."""
    row = pid // pieces
    start = row * inner
    first = (start + offset) // 4 + (pid % pieces) * (BLOCK // 4)
    idx = (first * 4 - offset) + tl.arange(0, BLOCK)  # no int64 overflow near 2**63
    return row, idx, (idx >= start) & (idx < start + inner), first


@triton.jit(do_not_specialize=RANDOM_KEY)
def _noise_add_kernel(x_ptr, alpha_ptr, std_ptr, out_ptr, inner, channels, pieces, seed_ptr, offset,
                      ELEMENTWISE: tl.constexpr, BLOCK: tl.constexpr):
    row, idx, mask, first = _row_piece(tl.program_id(0).to(tl.int64), inner, pieces, offset, BLOCK)
    x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
    if ELEMENTWISE:
        alpha = tl.load(alpha_ptr + idx, mask=mask)
    else:
        alpha = tl.load(alpha_ptr + row % channels)
    eta = normal4_blocks(tl.load(seed_ptr), first, BLOCK)
    out = x + tl.load(std_ptr) * alpha * eta
    tl.store(out_ptr + idx, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=RANDOM_KEY)
def _noise_alpha_grad_kernel(grad_ptr, std_ptr, out_ptr, inner, pieces, seed_ptr, offset,
                             ELEMENTWISE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    row, idx, mask, first = _row_piece(pid, inner, pieces, offset, BLOCK)
    g = tl.load(grad_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    product = g * normal4_blocks(tl.load(seed_ptr), first, BLOCK)
    if ELEMENTWISE:
        tl.store(out_ptr + idx, product * tl.load(std_ptr), mask=mask)
    else:  # one float64 partial sum per program, reduced by the caller
        tl.store(out_ptr + pid, tl.sum(product.to(tl.float64), axis=0))


def _layout(n, inner, elementwise, offset):
    """(rows, pieces per row, elements per row, BLOCK). A row spans its elements' Philox blocks:
    ``offset % 4`` more counters in front when every row starts alike (inner a multiple of 4, or
    one row), up to 3 otherwise."""
    inner = n if elementwise else inner
    span = inner + (offset % 4 if inner % 4 == 0 or inner == n else 3)
    block = min(_MAX_BLOCK, triton.next_power_of_2(max(span, 4)))
    return n // inner, triton.cdiv(span, block), inner, block


def _check_dtype(x):
    if x.dtype == torch.float64:
        raise TypeError("the triton noise kernels take fp32/bf16/fp16 (math in fp32), not float64")


def noise_add(x, alpha, std, channels, inner, elementwise, seed, offset):
    _check_dtype(x)
    out = torch.empty_like(x)
    if x.numel():
        rows, pieces, inner, block = _layout(x.numel(), inner, elementwise, offset)
        launch(_noise_add_kernel, programs(rows, pieces), x, alpha, std, out, inner, channels, pieces, seed, offset,
               ELEMENTWISE=elementwise, BLOCK=block)
    return out


def noise_alpha_grad(grad, alpha, std, channels, inner, elementwise, seed, offset):
    _check_dtype(grad)
    n = grad.numel()
    rows, pieces, inner, block = _layout(n, inner, elementwise, offset)
    if elementwise:
        out = torch.empty(n, dtype=torch.float32, device=grad.device)
    else:
        out = torch.empty(rows, pieces, dtype=torch.float64, device=grad.device)
    if n:
        launch(_noise_alpha_grad_kernel, programs(rows, pieces), grad, std, out, inner, pieces, seed, offset,
               ELEMENTWISE=elementwise, BLOCK=block)
    if elementwise:
        return out
    per_row = out.sum(dim=1)
    return (per_row.view(-1, channels).sum(dim=0) * std.double()).float()
