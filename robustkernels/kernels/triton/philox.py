"""Triton side of the shared Philox stream.

Integers come from ``tl.randint4x`` and uniforms from Triton's own ``uint_to_uniform_float``.
Normals use Triton's Box-Muller formula with the shared fp32 polynomials for log/sin/cos
(csrc/common/fast_math.h), op for op, so they match the C++/CUDA/reference draws bit for bit.
Launch these kernels with ``enable_fp_fusion=False``: no a*b+c is contracted into an FMA.

One draw per block: element i uses counter offset + i. Four per block: output (offset + i) % 4
of the block with counter (offset + i) // 4; the kernels compute each block once and use its
four outputs (``normal4_blocks`` / ``uniform4_blocks`` when a program's draws start on a block;
``uniform4_span`` / ``uniform4_rows`` gather draws that start anywhere, as LWTA's units).
"""

import torch
import triton
import triton.language as tl

from .launch import RANDOM_STATE, launch, programs

_BLOCK = 1024


@triton.jit
def log_poly(x):
    bits = x.to(tl.int32, bitcast=True)
    exponent = (bits >> 23) - 127
    m = ((bits & 0x007FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)
    high = m > 1.41421356237
    m = tl.where(high, 0.5 * m, m)
    e = (exponent + high.to(tl.int32)).to(tl.float32)
    f = m - 1.0
    z = f * f
    y = 7.0376836292e-2 * f
    y = (y - 1.1514610310e-1) * f
    y = (y + 1.1676998740e-1) * f
    y = (y - 1.2420140846e-1) * f
    y = (y + 1.4249322787e-1) * f
    y = (y - 1.6668057665e-1) * f
    y = (y + 2.0000714765e-1) * f
    y = (y - 2.4999993993e-1) * f
    y = y + 3.3333331174e-1
    y = y * f * z
    y = y + -2.12194440e-4 * e
    y = y + -0.5 * z
    return (f + y) + 0.693359375 * e


@triton.jit
def _sincos_poly(theta):
    quadrant = (theta * 0.636619772367581 + 0.5).to(tl.int32)
    q = quadrant.to(tl.float32)
    r = ((theta - q * 1.5703125) - q * 4.837512969970703125e-4) - q * 7.54978995489188216e-8
    z = r * r
    sin_r = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1)
    cos_r = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2)
    k = quadrant & 3
    odd = (k & 1) == 1
    c = tl.where(odd, sin_r, cos_r)
    s = tl.where(odd, cos_r, sin_r)
    return tl.where(k >= 2, -s, s), tl.where((k == 1) | (k == 2), -c, c)


@triton.jit
def box_muller(u1, u2):
    """(r cos(theta), r sin(theta)), r = sqrt(-2 log max(u1, 1e-7)), theta = 2 pi u2."""
    radius = tl.sqrt_rn(-2.0 * log_poly(tl.maximum(u1, 1.0e-7)))
    sin, cos = _sincos_poly(6.283185307179586 * u2)
    return radius * cos, radius * sin


@triton.jit
def select4(index, v0, v1, v2, v3):
    """Output ``index % 4`` of a four-per-block draw."""
    k = index % 4
    return tl.where(k == 0, v0, tl.where(k == 1, v1, tl.where(k == 2, v2, v3)))


@triton.jit
def uniform_at(seed, index):
    i0, _, _, _ = tl.randint4x(seed, index)
    return tl.uint_to_uniform_float(i0)


@triton.jit
def normal_at(seed, index):
    i0, i1, _, _ = tl.randint4x(seed, index)
    n0, _ = box_muller(tl.uint_to_uniform_float(i0), tl.uint_to_uniform_float(i1))
    return n0


@triton.jit
def _joined4(v0, v1, v2, v3):
    """v_j [..., K] -> [..., K, 2, 2], whose last three dimensions flattened hold v_j[k] at
    4 k + j: the outputs of consecutive Philox blocks in stream order."""
    return tl.join(tl.join(v0, v2), tl.join(v1, v3))


@triton.jit
def _interleave4(v0, v1, v2, v3, BLOCK: tl.constexpr):
    """[BLOCK] with element 4 k + j = v_j[k] (v_j: [BLOCK // 4])."""
    return tl.reshape(_joined4(v0, v1, v2, v3), (BLOCK,))


@triton.jit
def uniform4_blocks(seed, first_block, BLOCK: tl.constexpr):
    """Draws ``4 * first_block`` .. ``+ BLOCK - 1`` of the four-per-block uniform stream: BLOCK // 4
    Philox blocks, each one's four outputs used (not one block per draw)."""
    v0, v1, v2, v3 = _uniforms4(first_block + tl.arange(0, BLOCK // 4), seed)
    return _interleave4(v0, v1, v2, v3, BLOCK)


@triton.jit
def _uniforms4(first_block, seed):
    i0, i1, i2, i3 = tl.randint4x(seed, first_block)
    return (tl.uint_to_uniform_float(i0), tl.uint_to_uniform_float(i1), tl.uint_to_uniform_float(i2),
            tl.uint_to_uniform_float(i3))


@triton.jit
def uniform4_span(seed, start, index, N: tl.constexpr):
    """Draws ``start + index`` of the four-per-block uniform stream (``start``: an int64 scalar;
    ``index``: int32, any 2-D shape, values in [0, N)). Reads the N // 4 + 1 Philox blocks from
    the one holding draw ``start`` on, each block's four outputs used, and gathers."""
    shift = (start % 4).to(tl.int32)
    main = uniform4_blocks(seed, start // 4, N)
    t0, t1, t2, t3 = _uniforms4(start // 4 + N // 4, seed)
    m = index + shift
    flat = tl.reshape(tl.minimum(m, N - 1), (N,))
    inside = tl.reshape(tl.gather(main, flat, axis=0), m.shape)
    return tl.where(m < N, inside, select4(m, t0, t1, t2, t3))


@triton.jit
def uniform4_rows(seed, start, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """[ROWS, BLOCK]: element (r, j) is draw ``start[r] + j`` of the four-per-block uniform stream
    (``start``: int64 [ROWS, 1], BLOCK >= 4). Each row reads BLOCK // 4 + 1 Philox blocks, each
    block's four outputs used (not one block per draw), and shifts them into place."""
    first = start // 4
    shift = (start % 4).to(tl.int32)
    v0, v1, v2, v3 = _uniforms4(first + tl.arange(0, BLOCK // 4)[None, :], seed)
    main = tl.reshape(_joined4(v0, v1, v2, v3), (ROWS, BLOCK))
    t0, t1, t2, t3 = _uniforms4(first + BLOCK // 4, seed)
    m = tl.arange(0, BLOCK)[None, :] + shift
    inside = tl.gather(main, tl.minimum(m, BLOCK - 1), axis=1)
    return tl.where(m < BLOCK, inside, select4(m, t0, t1, t2, t3))


@triton.jit
def normal4_blocks(seed, first_block, BLOCK: tl.constexpr):
    """Draws ``4 * first_block`` .. ``+ BLOCK - 1`` of the four-per-block normal stream: BLOCK // 4
    Philox blocks, each one's four normals (both Box-Muller pairs) used."""
    i0, i1, i2, i3 = tl.randint4x(seed, first_block + tl.arange(0, BLOCK // 4))
    n0, n1 = box_muller(tl.uint_to_uniform_float(i0), tl.uint_to_uniform_float(i1))
    n2, n3 = box_muller(tl.uint_to_uniform_float(i2), tl.uint_to_uniform_float(i3))
    return _interleave4(n0, n1, n2, n3, BLOCK)


@triton.jit(do_not_specialize=RANDOM_STATE)
def _philox_fill_kernel(out_ptr, n, seed, offset, NORMAL: tl.constexpr, PER_BLOCK: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    if PER_BLOCK == 4:  # program p: the BLOCK counters from 4 (offset // 4) + p BLOCK, whole Philox blocks
        first = offset // 4 + pid * (BLOCK // 4)
        idx = (first * 4 - offset) + tl.arange(0, BLOCK)  # no int64 overflow near 2**63
        if NORMAL:
            value = normal4_blocks(seed, first, BLOCK)
        else:
            value = uniform4_blocks(seed, first, BLOCK)
    else:
        idx = pid * BLOCK + tl.arange(0, BLOCK)
        counter = idx + offset  # int64, so the high word of the Philox counter is used past 2**32
        if NORMAL:
            value = normal_at(seed, counter)
        else:
            value = uniform_at(seed, counter)
    tl.store(out_ptr + idx, value, mask=(idx >= 0) & (idx < n))


def philox_draw(n: int, seed: int, offset: int, normal: bool, per_block: int, device: torch.device) -> torch.Tensor:
    out = torch.empty(n, dtype=torch.float32, device=device)
    if n:
        span = n + (offset % 4 if per_block == 4 else 0)  # four per block: programs start on a block
        launch(_philox_fill_kernel, programs(triton.cdiv(span, _BLOCK), 1), out, n, seed, offset, NORMAL=normal,
               PER_BLOCK=per_block, BLOCK=_BLOCK)
    return out
