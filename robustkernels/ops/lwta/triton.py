"""Triton Stochastic LWTA, forward and backward (the backward regenerates the noise).

A program handles one block of U competing units for BLOCK positions, as a [U_POW2, BLOCK]
tile. Layouts: contiguous [outer, D, inner], channels_last [B, P, D] (dim 1 of NCHW), or flat
(inner = 1, e.g. [B, F]: the tile's columns are BLOCK consecutive blocks). The
random counter is the element's row-major NCHW index in both. The same fp32 operations as the
C++ kernel (shared log/exp polynomials, sums over the block in order, round-to-nearest
divisions), so the outputs are bit-identical. The uniforms of a tile come from whole Philox
blocks (four draws each), gathered into place: about a quarter of the Philox work of one block
per unit.
"""

import torch
import triton
import triton.language as tl

from ...kernels.modes import LwtaMode
from ...kernels.triton.launch import RANDOM_KEY, launch, programs
from ...kernels.triton.philox import log_poly, uniform4_rows, uniform4_span

_MAX_BLOCK = 256
HARD: tl.constexpr = tl.constexpr(int(LwtaMode.HARD))
ARGMAX: tl.constexpr = tl.constexpr(int(LwtaMode.ARGMAX))
CHANNELS_LAST: tl.constexpr = tl.constexpr(1)  # layouts; 0 is contiguous [outer, D, inner]
FLAT: tl.constexpr = tl.constexpr(2)


@triton.jit
def _exp_poly(x):
    clamped = tl.minimum(tl.maximum(x, -87.0), 88.0)
    # floor by truncation (v is within [-125, 128]): tl.floor lowers to cvt.rmi.ftz, flush-to-zero
    v = 1.44269504088896341 * clamped + 0.5
    t = v.to(tl.int32)
    n = (t - (t.to(tl.float32) > v).to(tl.int32)).to(tl.float32)
    r = clamped - n * 0.693359375
    r = r - n * -2.12194440e-4
    z = r * r
    y = 1.9875691500e-4 * r + 1.3981999507e-3
    y = y * r + 8.3334519073e-3
    y = y * r + 4.1665795894e-2
    y = y * r + 1.6666665459e-1
    y = y * r + 5.0000001201e-1
    y = (y * z + r) + 1.0
    scale = ((n.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    # tl.minimum / tl.maximum drop NaN; C++'s clamp keeps it: NaN in, NaN out on every backend
    return tl.where(x < -87.0, 0.0, tl.where(x == x, y * scale, x))


@triton.jit
def _row_sum(values, units, U: tl.constexpr):
    """Sum over the competitors in order u = 0, 1, ... (each row picked out exactly)."""
    total = tl.sum(tl.where(units == 0, values, 0.0), axis=0)
    for u in tl.static_range(1, U):
        total = total + tl.sum(tl.where(units == u, values, 0.0), axis=0)
    return total


@triton.jit
def _tile(program, chunk, dim_size, inner, positions, U: tl.constexpr, U_POW2: tl.constexpr,
          BLOCK: tl.constexpr, LAYOUT: tl.constexpr):
    """Memory offsets, mask and unit index of a tile, and ``start``: the logical (NCHW) index of
    its first element, per row ([U_POW2, 1]; the row's others follow it) or, FLAT, for the whole
    tile (element (u, j) is ``start + j U + u``). FLAT (inner == 1, e.g. [B, F]): the tile's
    columns are BLOCK consecutive blocks (``positions`` of them in all), not BLOCK positions of
    one block, so a program does not idle on a single block."""
    blocks = dim_size // U
    outer, block = program // blocks, program % blocks
    units = tl.arange(0, U_POW2)[:, None]
    pos = chunk * BLOCK + tl.arange(0, BLOCK)[None, :]
    unit = (block * U + units).to(tl.int64)
    if LAYOUT == FLAT:
        mem = pos.to(tl.int64) * U + units
        start = chunk * BLOCK * U
        mask = (units < U) & (pos < positions)
    elif LAYOUT == CHANNELS_LAST:
        mem = (outer * positions + pos) * dim_size + unit
        start = (outer * dim_size + unit) * positions + chunk * BLOCK
        mask = (units < U) & (pos < positions)
    else:
        mem = (outer * dim_size + unit) * inner + pos
        start = (outer * dim_size + unit) * inner + chunk * BLOCK
        mask = (units < U) & (pos < inner)
    return mem, start, mask, units


@triton.jit
def _uniforms(seed, offset, start, units, U: tl.constexpr, U_POW2: tl.constexpr, BLOCK: tl.constexpr,
              LAYOUT: tl.constexpr):
    """[U_POW2, BLOCK]: the four-per-block uniform of every element, draw offset + its logical index."""
    if LAYOUT == FLAT:
        u = uniform4_span(seed, offset + start, units + tl.arange(0, BLOCK)[None, :] * U, U_POW2 * BLOCK)
    else:
        u = uniform4_rows(seed, offset + start, U_POW2, BLOCK)
    return u


@triton.jit
def _pair_rows(values, units):
    """(row of unit 0, row of unit 1) of a [2, BLOCK] tile."""
    return tl.sum(tl.where(units == 0, values, 0), axis=0), tl.sum(tl.where(units == 0, 0, values), axis=0)


@triton.jit
def _pair_weights(h, uniforms, units, temperature, MODE: tl.constexpr):
    """Two competitors: one logistic draw per block (unit 0's uniform), d = (h0 - h1 + L) / T,
    xi0 = b = 1 / (1 + e) and xi1 = e * b with e = exp(-|d|) when d >= 0 (swapped otherwise)."""
    first_row = units == 0
    h0, h1 = _pair_rows(h, units)
    u, _ = _pair_rows(uniforms, units)
    noise = log_poly(tl.math.div_rn(u + 1.0e-10, (1.0 - u) + 1.0e-10))
    d = tl.math.div_rn((h0 - h1) + noise, temperature)
    first = d >= 0.0
    e = _exp_poly(tl.where(first, -d, d))
    total = 1.0 + e
    big = tl.math.div_rn(1.0, total)
    small = e * big
    xi = tl.where(first_row, tl.where(first, big, small)[None, :], tl.where(first, small, big)[None, :])
    if MODE == HARD:
        return (first_row == first[None, :]).to(tl.float32), xi
    return xi, xi


@triton.jit
def _gumbel_weights(h, u, units, temperature, MODE: tl.constexpr, U: tl.constexpr):
    """U > 2: xi = softmax((h + G) / T) with one Gumbel per unit (padding rows never win)."""
    g = -log_poly(-log_poly(u + 1.0e-10) + 1.0e-10)
    z = tl.where(units < U, tl.math.div_rn(h + g, temperature), float("-inf"))
    e = _exp_poly(z - tl.max(z, axis=0)[None, :])
    xi = tl.math.div_rn(e, _row_sum(e, units, U)[None, :])
    if MODE == HARD:
        return (units == tl.argmax(z, axis=0)[None, :]).to(tl.float32), xi
    return xi, xi


@triton.jit
def _weights(h, start, units, seed, offset, temperature, MODE: tl.constexpr, U: tl.constexpr,
             U_POW2: tl.constexpr, BLOCK: tl.constexpr, LAYOUT: tl.constexpr):
    """(w, xi): the forward weights (xi, or the one-hot winner) and the relaxed xi. (if/else, not
    early returns: the compiler builds the statements after a taken constexpr return too.)"""
    if MODE == ARGMAX:  # padding rows never win; padded positions are 0
        w = (units == tl.argmax(tl.where(units < U, h, float("-inf")), axis=0)[None, :]).to(tl.float32)
        xi = w
    else:
        u = _uniforms(seed, offset, start, units, U, U_POW2, BLOCK, LAYOUT)
        if U == 2:
            w, xi = _pair_weights(h, u, units, temperature, MODE)
        else:
            w, xi = _gumbel_weights(h, u, units, temperature, MODE, U)
    return w, xi


@triton.jit
def _poison_non_finite(values, h, units, U: tl.constexpr):
    """NaN in every unit of a block whose input holds a NaN or +-inf (h - h is 0 exactly when h is
    finite; padding rows and positions were loaded as 0): the rule of every backend."""
    bad = _row_sum(tl.where(h - h == 0.0, 0.0, 1.0), units, U) != 0.0
    return tl.where(bad[None, :], float("nan"), values)


@triton.jit(do_not_specialize=RANDOM_KEY)
def _lwta_forward_kernel(h_ptr, out_ptr, dim_size, inner, positions, chunks, temperature, seed_ptr, offset,
                         U: tl.constexpr, U_POW2: tl.constexpr, BLOCK: tl.constexpr, MODE: tl.constexpr,
                         LAYOUT: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    mem, start, mask, units = _tile(pid // chunks, pid % chunks, dim_size, inner, positions, U, U_POW2, BLOCK,
                                    LAYOUT)
    h = tl.load(h_ptr + mem, mask=mask, other=0.0).to(tl.float32)
    w, _ = _weights(h, start, units, tl.load(seed_ptr), offset, temperature, MODE, U, U_POW2, BLOCK, LAYOUT)
    out = _poison_non_finite(h * w, h, units, U)
    tl.store(out_ptr + mem, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=RANDOM_KEY)
def _lwta_backward_kernel(g_ptr, h_ptr, out_ptr, dim_size, inner, positions, chunks, temperature, seed_ptr, offset,
                          U: tl.constexpr, U_POW2: tl.constexpr, BLOCK: tl.constexpr, MODE: tl.constexpr,
                          LAYOUT: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    mem, start, mask, units = _tile(pid // chunks, pid % chunks, dim_size, inner, positions, U, U_POW2, BLOCK,
                                    LAYOUT)
    h = tl.load(h_ptr + mem, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + mem, mask=mask, other=0.0).to(tl.float32)
    w, xi = _weights(h, start, units, tl.load(seed_ptr), offset, temperature, MODE, U, U_POW2, BLOCK, LAYOUT)
    grad = g * w
    if U == 2 and MODE != ARGMAX:  # c = xi0 xi1 (g0 h0 - g1 h1) / T; g0 w0 + c and g1 w1 - c
        xi0, xi1 = _pair_rows(xi, units)
        gh0, gh1 = _pair_rows(g * h, units)
        c = (xi0 * xi1) * tl.math.div_rn(gh0 - gh1, temperature)
        grad = grad + tl.where(units == 0, c[None, :], -c[None, :])
    elif MODE != ARGMAX:
        total = _row_sum((g * h) * xi, units, U)
        grad = grad + tl.math.div_rn(xi * (g * h - total[None, :]), temperature)
    grad = _poison_non_finite(grad, h, units, U)
    tl.store(out_ptr + mem, grad.to(out_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, tensors, competitors, dim_size, inner, positions, temperature, mode, seed, offset):
    h = tensors[-2]
    if h.dtype == torch.float64:
        raise TypeError("the triton LWTA kernels take fp32/bf16/fp16 (math in fp32), not float64")
    if h.numel() == 0:
        return
    layout, rows = (1, None) if positions > 0 else (2, 1) if inner == 1 else (0, None)
    if layout == 2:  # [outer, D] rows: the tile's columns are consecutive blocks
        positions = length = h.numel() // competitors
    else:
        length = positions if positions > 0 else inner
        rows = h.numel() // (dim_size * length) * (dim_size // competitors)
    block = min(_MAX_BLOCK, max(4, triton.next_power_of_2(length)))  # >= 4: whole Philox blocks
    chunks = triton.cdiv(length, block)
    launch(kernel, programs(rows, chunks), *tensors, dim_size, inner, positions, chunks, temperature, seed, offset,
           U=competitors, U_POW2=triton.next_power_of_2(competitors), BLOCK=block, MODE=mode, LAYOUT=layout)


def lwta_forward(h, competitors, dim_size, inner, positions, temperature, mode, seed, offset):
    out = torch.empty_like(h)
    _launch(_lwta_forward_kernel, (h, out), competitors, dim_size, inner, positions, temperature, mode, seed, offset)
    return out


def lwta_backward(grad, h, competitors, dim_size, inner, positions, temperature, mode, seed, offset):
    out = torch.empty_like(h)
    _launch(_lwta_backward_kernel, (grad, h, out), competitors, dim_size, inner, positions, temperature, mode, seed,
            offset)
    return out
