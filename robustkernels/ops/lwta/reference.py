"""Stochastic Local Winner-Takes-All (Panousis, Chatzis & Theodoridis 2021) in eager PyTorch.

The units along ``dim`` form blocks of ``U`` consecutive units. In each block a winner is sampled
with the Gumbel-softmax relaxation, ``xi = softmax((h + G) / T)`` over the block, and the output
is ``y = h * xi`` (``hard``: ``xi`` replaced by the one-hot of its argmax in the forward pass,
straight-through gradient; ``"argmax"`` mode: the one-hot of ``argmax h``, no noise).

``G = -log(-log(u + 1e-10) + 1e-10)`` with ``u`` element ``offset + i`` of the shared uniform
stream (four per block), ``i`` the element's row-major index. With two competitors (the
default) the softmax depends only on ``G0 - G1``, which is Logistic(0, 1): one logistic draw per
block (unit 0's uniform) replaces the two Gumbels, a quarter of the logs and half the draws for
the same distribution. log and exp are the shared fp32 polynomials and the block sums run in
order, so every backend gives the same bits.
"""

from __future__ import annotations

import torch

from ..philox.reference import log_poly, philox_uniform


def exp_poly(x: torch.Tensor) -> torch.Tensor:
    """exp of float32, the fp32 operations of csrc/common/fast_math.h (Cephes expf) one by one."""
    clamped = x.clamp(-87.0, 88.0)
    n = torch.floor(1.44269504088896341 * clamped + 0.5)
    r = clamped - n * 0.693359375
    r = r - n * -2.12194440e-4
    z = r * r
    y = 1.9875691500e-4 * r + 1.3981999507e-3
    for c in (8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        y = y * r + c
    y = (y * z + r) + 1.0
    scale = ((n.to(torch.int32) + 127) << 23).view(torch.float32)
    return torch.where(x < -87.0, torch.zeros_like(y), y * scale)


def gumbel(u: torch.Tensor) -> torch.Tensor:
    return -log_poly(-log_poly(u + 1.0e-10) + 1.0e-10)


def logistic(u: torch.Tensor) -> torch.Tensor:
    """Logistic(0, 1) noise (the difference of two Gumbels) from one uniform per block:
    ``log((u + 1e-10) / ((1 - u) + 1e-10))``; float64 ``u`` uses libm."""
    ratio = (u + 1.0e-10) / ((1.0 - u) + 1.0e-10)
    return torch.log(ratio) if u.dtype == torch.float64 else log_poly(ratio)


def _blocks(x: torch.Tensor, competitors: int, dim: int) -> torch.Tensor:
    """View with the competing units in a new dimension right after ``dim``."""
    shape = list(x.shape)
    return x.reshape(shape[:dim] + [shape[dim] // competitors, competitors] + shape[dim + 1:])


def _sequential_sum(x: torch.Tensor, dim: int) -> torch.Tensor:
    total = x.select(dim, 0)
    for u in range(1, x.shape[dim]):
        total = total + x.select(dim, u)
    return total.unsqueeze(dim)


def pair_weights(h: torch.Tensor, u: torch.Tensor, temperature: float, dim: int):
    """(xi, z) for two competitors, block view: one logistic draw ``L`` per block (unit 0's
    uniform), ``d = (h0 - h1 + L) / T``, ``xi0 = sigmoid(d)``, ``xi1 = sigmoid(-d)`` computed as
    ``b = 1 / (1 + e)`` and ``e * b`` with ``e = exp(-|d|)``; ``z = (d, 0)`` are tempered logits
    with the same softmax (ties go to unit 0)."""
    h0, h1 = _blocks(h, 2, dim).unbind(dim + 1)
    u0 = _blocks(u, 2, dim).select(dim + 1, 0)
    d = ((h0 - h1) + logistic(u0.double() if h.dtype == torch.float64 else u0)) / temperature
    first = d >= 0
    e = (torch.exp if h.dtype == torch.float64 else exp_poly)(torch.where(first, -d, d))
    total = 1.0 + e
    big = torch.ones_like(total) / total
    small = e * big
    xi = torch.stack([torch.where(first, big, small), torch.where(first, small, big)], dim=dim + 1)
    return xi, torch.stack([d, torch.zeros_like(d)], dim=dim + 1)


def winner_weights(h: torch.Tensor, competitors: int, temperature: float, dim: int, seed: int, offset: int = 0):
    """(xi, z) for fp32 ``h`` (shared polynomials) or fp64 ``h`` (libm in double): the relaxed
    winner weights and the tempered logits, in the block view. Two competitors draw one logistic
    per block (:func:`pair_weights`); more draw one Gumbel per unit."""
    u = philox_uniform(h.numel(), seed, offset, device=h.device, per_block=4).view(h.shape)
    if competitors == 2:
        return pair_weights(h, u, temperature, dim)
    if h.dtype == torch.float64:
        noise, exp = -torch.log(-torch.log(u.double() + 1e-10) + 1e-10), torch.exp
    else:
        noise, exp = gumbel(u), exp_poly
    hb, gb = _blocks(h, competitors, dim), _blocks(noise, competitors, dim)
    z = (hb + gb) / temperature
    e = exp(z - z.amax(dim=dim + 1, keepdim=True))
    return e / _sequential_sum(e, dim + 1), z


def poison_non_finite(values: torch.Tensor, hb: torch.Tensor, dim: int) -> torch.Tensor:
    """``values`` (block view) with NaN in every unit of a block whose input ``hb`` holds a NaN
    or +-inf: the documented rule of every backend, forward and backward."""
    bad = (~torch.isfinite(hb)).any(dim=dim + 1, keepdim=True)
    return torch.where(bad, torch.full_like(values, float("nan")), values)


def lwta(h: torch.Tensor, competitors: int = 2, temperature: float = 0.67, dim: int = 1, hard: bool = False,
         mode: str = "sample", seed: int = 0, offset: int = 0) -> torch.Tensor:
    """Differentiable (through autograd) reference; fp32 math, output in h's dtype. A block whose
    input holds a NaN or +-inf outputs NaN in all its units."""
    compute = torch.float64 if h.dtype == torch.float64 else torch.float32
    x = h.to(compute)
    hb = _blocks(x, competitors, dim)
    if mode == "argmax":
        weights = torch.zeros_like(hb).scatter_(dim + 1, hb.argmax(dim=dim + 1, keepdim=True), 1.0)
        return poison_non_finite(hb * weights, hb.detach(), dim).reshape(h.shape).to(h.dtype)
    xi, z = winner_weights(x.detach(), competitors, temperature, dim, seed, offset)
    weights = xi
    if hard:
        weights = torch.zeros_like(weights).scatter_(dim + 1, z.argmax(dim=dim + 1, keepdim=True), 1.0)
    # value: h * weights exactly; gradient: autograd through softmax((h + G) / T), the noise constant
    soft = torch.softmax(z + (hb - hb.detach()) / temperature, dim=dim + 1)
    out = poison_non_finite(hb * weights + hb * (soft - soft.detach()), hb.detach(), dim)
    return out.reshape(h.shape).to(h.dtype)


def lwta_backward(grad: torch.Tensor, h: torch.Tensor, competitors: int = 2, temperature: float = 0.67, dim: int = 1,
                  hard: bool = False, mode: str = "sample", seed: int = 0, offset: int = 0) -> torch.Tensor:
    """The gradient in closed form, in the kernels' fp32 operation order:
    ``g * w + xi * (g * h - S) / T`` with ``S`` the in-order block sum of ``(g * h) * xi``
    (``w``: xi, or the one-hot winner when hard); argmax mode: ``g * w``. NaN in every unit of a
    block whose input holds a NaN or +-inf."""
    compute = torch.float64 if h.dtype == torch.float64 else torch.float32
    hb = _blocks(h.to(compute), competitors, dim)
    gb = _blocks(grad.to(compute), competitors, dim)
    return poison_non_finite(_block_grad(gb, hb, h, competitors, temperature, dim, hard, mode, seed, offset), hb,
                             dim).reshape(h.shape).to(h.dtype)


def _block_grad(gb, hb, h, competitors, temperature, dim, hard, mode, seed, offset):
    compute = hb.dtype
    if mode == "argmax":
        weights = torch.zeros_like(hb).scatter_(dim + 1, hb.argmax(dim=dim + 1, keepdim=True), 1.0)
        return gb * weights
    xi, z = winner_weights(h.to(compute), competitors, temperature, dim, seed, offset)
    weights = torch.zeros_like(xi).scatter_(dim + 1, z.argmax(dim=dim + 1, keepdim=True), 1.0) if hard else xi
    if competitors == 2:  # with xi0 + xi1 = 1: c = xi0 xi1 (g0 h0 - g1 h1) / T, then g0 w0 + c, g1 w1 - c
        (x0, x1), (g0, g1), (h0, h1), (w0, w1) = (t.unbind(dim + 1) for t in (xi, gb, hb, weights))
        c = (x0 * x1) * ((g0 * h0 - g1 * h1) / temperature)
        return torch.stack([g0 * w0 + c, g1 * w1 - c], dim=dim + 1)
    total = _sequential_sum((gb * hb) * xi, dim + 1)
    return gb * weights + xi * (gb * hb - total) / temperature
