"""Philox4x32-10 with vectorised torch integer ops, bit-identical to Triton's ``tl.rand``.

uint32 values are held in int64 tensors; 32x32-bit products are split into 16-bit halves so
nothing overflows. Element ``i`` of a draw at ``(seed, offset)`` is the Philox block with
counter ``(lo32(offset + i), hi32(offset + i), 0, 0)`` and key ``(lo32(seed), hi32(seed))``.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_UNIFORM_SCALE = 4.6566127342e-10  # Triton's: the largest s with (2**31 - 1) * s < 1 in fp32


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of the 64-bit product of a uint32 constant and uint32 values."""
    low_part = a * (b & 0xFFFF)  # < 2**48
    t = a * (b >> 16) + (low_part >> 16)  # a * b == t * 2**16 + (low_part & 0xFFFF)
    return t >> 16, ((t & 0xFFFF) << 16) | (low_part & 0xFFFF)


def philox4x32_10(
    counter: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], key: tuple[int, int]
) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 (Salmon et al. 2011) on uint32 counter words held in int64 tensors."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        hi_b, lo_b = _mulhilo(_ROUND_B, c2)
        hi_a, lo_a = _mulhilo(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _KEY_A) & _MASK32, (k1 + _KEY_B) & _MASK32
    return c0, c1, c2, c3


def philox_block(seed: int, counter: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Triton's ``tl.randint4x(seed, counter)`` for int64 counters >= 0: counter words
    ``(lo32, hi32, 0, 0)``, key ``(lo32(seed), hi32(seed))``."""
    zero = torch.zeros_like(counter)
    words = (counter & _MASK32, (counter >> 32) & _MASK32, zero, zero)
    return philox4x32_10(words, (seed & _MASK32, (seed >> 32) & _MASK32))


def uint_to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """Triton's conversion: reinterpret as int32, fold negatives with ``~x``, scale to [0, 1)."""
    signed = torch.where(bits >= 2**31, bits - 2**32, bits)
    folded = torch.where(signed < 0, ~signed, signed)
    return folded.to(torch.float32) * _UNIFORM_SCALE


def log_poly(x: torch.Tensor) -> torch.Tensor:
    """Natural log of positive normal float32s: the fp32 operations of csrc/common/fast_math.h
    (Cephes logf), one by one, so that every backend rounds alike."""
    bits = x.view(torch.int32)
    exponent = (bits >> 23) - 127
    m = ((bits & 0x007FFFFF) | 0x3F800000).view(torch.float32)  # [1, 2)
    high = m > 1.41421356237  # fold to [sqrt(1/2), sqrt(2))
    m = torch.where(high, 0.5 * m, m)
    e = (exponent + high.to(torch.int32)).to(torch.float32)
    f = m - 1.0
    z = f * f
    y = f * 7.0376836292e-2
    for c in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
              2.0000714765e-1, -2.4999993993e-1):
        y = (y + c) * f
    y = y + 3.3333331174e-1
    y = y * f * z
    y = y + -2.12194440e-4 * e
    y = y + -0.5 * z
    return (f + y) + 0.693359375 * e


def sincos_poly(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos) of float32 0 <= theta < 2**20, as csrc/common/fast_math.h computes them."""
    quadrant = (theta * 0.636619772367581 + 0.5).to(torch.int32)
    q = quadrant.to(torch.float32)
    r = ((theta - q * 1.5703125) - q * 4.837512969970703125e-4) - q * 7.54978995489188216e-8
    z = r * r
    sin_r = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1)
    cos_r = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2)
    k = quadrant & 3
    odd = (k & 1) == 1
    c, s = torch.where(odd, sin_r, cos_r), torch.where(odd, cos_r, sin_r)
    return torch.where(k >= 2, -s, s), torch.where((k == 1) | (k == 2), -c, c)


def box_muller(u1: torch.Tensor, u2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton's ``pair_uniform_to_normal`` formula in float32, ``(r cos(theta), r sin(theta))``
    with ``r = sqrt(-2 log max(u1, 1e-7))``, ``theta = 2 pi u2``; log/sin/cos are the shared
    polynomials, so the draws are bit-identical on every backend."""
    # torch.sqrt on CPU float32 is not correctly rounded (about 19% of values are off by an
    # ulp); sqrt in float64 rounded once to float32 is, like sqrtf and tl.sqrt_rn.
    radius = torch.sqrt((-2.0 * log_poly(u1.clamp_min(1.0e-7))).double()).float()
    sin, cos = sincos_poly(6.283185307179586 * u2)
    return radius * cos, radius * sin


def _check_per_block(per_block: int) -> None:
    if per_block not in (1, 4):
        raise ValueError(f"per_block must be 1 or 4, got {per_block!r}")


def _four_per_block(n, seed, offset, device, convert) -> torch.Tensor:
    """Element i = output (offset + i) % 4 of the block with counter (offset + i) // 4."""
    first, last = offset // 4, (offset + max(n, 1) - 1) // 4
    words = philox_block(seed, torch.arange(first, last + 1, dtype=torch.int64, device=device))
    interleaved = torch.stack(convert(words), dim=1).reshape(-1)
    start = offset - 4 * first
    return interleaved[start : start + n].clone()  # a fresh tensor, not a view at an offset


def _uniform4(words):
    return [uint_to_uniform(w) for w in words]


def _normal4(words):
    u0, u1, u2, u3 = _uniform4(words)
    return [*box_muller(u0, u1), *box_muller(u2, u3)]


def _counters(n: int, offset: int, device: torch.device | str) -> torch.Tensor:
    return torch.arange(n, dtype=torch.int64, device=device) + offset


def philox_uniform(
    n: int, seed: int, offset: int = 0, device: torch.device | str = "cpu", per_block: int = 1
) -> torch.Tensor:
    """[n] float32 in [0, 1). ``per_block=1``: element i equals ``tl.rand(seed, offset + i)``;
    ``per_block=4``: output ``(offset + i) % 4`` of ``tl.rand4x(seed, (offset + i) // 4)``."""
    _check_per_block(per_block)
    if per_block == 4:
        return _four_per_block(n, seed, offset, device, _uniform4)
    c0, _, _, _ = philox_block(seed, _counters(n, offset, device))
    return uint_to_uniform(c0)


def philox_normal(
    n: int, seed: int, offset: int = 0, device: torch.device | str = "cpu", per_block: int = 1
) -> torch.Tensor:
    """[n] float32 standard normal. ``per_block=1``: element i equals ``tl.randn(seed, offset + i)``;
    ``per_block=4``: output ``(offset + i) % 4`` of ``tl.randn4x(seed, (offset + i) // 4)``."""
    _check_per_block(per_block)
    if per_block == 4:
        return _four_per_block(n, seed, offset, device, _normal4)
    c0, c1, _, _ = philox_block(seed, _counters(n, offset, device))
    return box_muller(uint_to_uniform(c0), uint_to_uniform(c1))[0]
