"""Triton noise injection: out = x + std * alpha * eta, eta = element offset + i of the
four-per-block normal stream (see philox.py), and the alpha
gradient regenerating the same noise. Grid (rows, pieces): a program never crosses a row, the
slice of ``inner`` elements that shares one alpha, so per-channel sums need no atomics."""

import torch
import triton
import triton.language as tl

from .philox import normal4_at

_MAX_BLOCK = 1024


@triton.jit
def _noise_add_kernel(x_ptr, alpha_ptr, std_ptr, out_ptr, inner, channels, seed, offset,
                      ELEMENTWISE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    in_row = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = in_row < inner
    idx = row * inner + in_row
    x = tl.load(x_ptr + idx, mask=mask).to(tl.float32)
    if ELEMENTWISE:
        alpha = tl.load(alpha_ptr + idx, mask=mask)
    else:
        alpha = tl.load(alpha_ptr + row % channels)
    eta = normal4_at(seed, idx + offset)
    out = x + tl.load(std_ptr) * alpha * eta
    tl.store(out_ptr + idx, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _noise_alpha_grad_kernel(grad_ptr, std_ptr, out_ptr, inner, seed, offset,
                             ELEMENTWISE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    in_row = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = in_row < inner
    idx = row * inner + in_row
    g = tl.load(grad_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    product = g * normal4_at(seed, idx + offset)
    if ELEMENTWISE:
        tl.store(out_ptr + idx, product * tl.load(std_ptr), mask=mask)
    else:  # one partial sum per program, reduced by the caller
        tl.store(out_ptr + row * tl.num_programs(1) + tl.program_id(1), tl.sum(product, axis=0))


def _grid(n, channels, inner, elementwise):
    inner = n if elementwise else inner
    block = min(_MAX_BLOCK, triton.next_power_of_2(max(inner, 1)))
    return (n // inner, triton.cdiv(inner, block)), inner, block


def _check_dtype(x):
    if x.dtype == torch.float64:
        raise TypeError("the triton noise kernels take fp32/bf16/fp16 (math in fp32), not float64")


def noise_add(x, alpha, std, channels, inner, elementwise, seed, offset):
    _check_dtype(x)
    out = torch.empty_like(x)
    if x.numel():
        grid, inner, block = _grid(x.numel(), channels, inner, elementwise)
        _noise_add_kernel[grid](x, alpha, std, out, inner, channels, seed, offset,
                                ELEMENTWISE=elementwise, BLOCK=block, enable_fp_fusion=False)
    return out


def noise_alpha_grad(grad, alpha, std, channels, inner, elementwise, seed, offset):
    _check_dtype(grad)
    n = grad.numel()
    grid, inner, block = _grid(n, channels, inner, elementwise)
    if elementwise:
        out = torch.empty(n, dtype=torch.float32, device=grad.device)
    else:
        out = torch.empty(grid, dtype=torch.float32, device=grad.device)
    if n:
        _noise_alpha_grad_kernel[grid](
            grad, std, out, inner, seed, offset, ELEMENTWISE=elementwise, BLOCK=block, enable_fp_fusion=False
        )
    if elementwise:
        return out
    per_row = out.double().sum(dim=1)
    return (per_row.view(-1, channels).sum(dim=0) * std.double()).float()
