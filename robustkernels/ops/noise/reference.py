"""Noise injection (PNI, He et al. 2019) in eager PyTorch: ``x + alpha * std(x) * eta``.

``eta`` is the shared Philox normal stream, four draws per block (``tl.randn4x``), the cheapest
form of the stream; draw ``offset + i`` goes to the element at position ``i`` of ``x``'s memory
(row-major for a contiguous tensor, NHWC for channels_last; a tensor that is not dense in any
order of its dims, row-major), as the kernels read it. ``std`` is the unbiased std over the
whole tensor, treated as a constant, as in the paper's code. Autograd gives the gradients.
"""

from __future__ import annotations

import torch

from ..philox.reference import philox_normal


def _opmath(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _memory_order(x: torch.Tensor) -> list[int]:
    """The dims from the outermost in memory to the innermost if x is dense in that order, else
    the identity (row-major)."""
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    return order if x.permute(order).is_contiguous() else list(range(x.dim()))


def memory_order_normal(x: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """[x's shape] float32: draw ``offset + i`` of the four-per-block normal stream at the element
    in memory position ``i`` (see the module docstring)."""
    order = _memory_order(x)
    physical_shape = [x.shape[d] for d in order]
    eta = philox_normal(x.numel(), seed, offset, device=x.device, per_block=4).view(physical_shape)
    return eta.permute(sorted(range(x.dim()), key=order.__getitem__))


def add_noise(x: torch.Tensor, alpha: torch.Tensor, seed: int, offset: int = 0, channel_dim: int = 0) -> torch.Tensor:
    """``x + alpha * std(x) * eta`` with alpha of numel 1, ``[C]`` (C = x.shape[channel_dim]),
    broadcastable to x, or x's shape. Math in fp32 (fp64 for fp64 x); result in x's dtype."""
    compute = _opmath(x.dtype)
    eta = memory_order_normal(x, seed, offset).to(compute)
    if alpha.numel() != 1 and alpha.dim() == 1 and x.dim() > 1:  # per-channel [C]
        alpha = alpha.view([-1] + [1] * (x.dim() - channel_dim - 1))
    std = x.detach().to(compute).std()
    return (x.to(compute) + alpha.to(compute) * std * eta).to(x.dtype)


def noisy_weight(weight: torch.Tensor, alpha: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """PNI-W: noise on a weight; a per-channel alpha is per output channel (dim 0)."""
    return add_noise(weight, alpha, seed, offset, channel_dim=0)


def inject_noise(
    x: torch.Tensor, alpha: torch.Tensor, seed: int, offset: int = 0, channel_dim: int = 1
) -> torch.Tensor:
    """PNI-A / PNI-I: noise on activations or inputs; per-channel alpha along ``channel_dim``."""
    return add_noise(x, alpha, seed, offset, channel_dim=channel_dim)


# The op's flat form, as the kernels see it: x contiguous, alpha flat in op-math dtype, scaled by
# alpha[(i // inner) % channels], or alpha[i] when elementwise.
def _flat_alpha(alpha: torch.Tensor, n: int, channels: int, inner: int, elementwise: bool) -> torch.Tensor:
    if elementwise:
        return alpha
    return alpha.view(1, channels, 1).expand(n // (channels * inner), channels, inner).reshape(n)


def noise_add(x, alpha, std, channels, inner, elementwise, seed, offset):
    eta = philox_normal(x.numel(), int(seed), offset, device=x.device, per_block=4).to(alpha.dtype)
    scale = std * _flat_alpha(alpha, x.numel(), channels, inner, elementwise)
    return (x.reshape(-1).to(alpha.dtype) + scale * eta).to(x.dtype).view(x.shape)


def noise_alpha_grad(grad, alpha, std, channels, inner, elementwise, seed, offset):
    eta = philox_normal(grad.numel(), int(seed), offset, device=grad.device, per_block=4).to(alpha.dtype)
    per_element = grad.reshape(-1).to(alpha.dtype) * eta * std
    if elementwise:
        return per_element
    return per_element.view(-1, channels, inner).sum(dim=(0, 2))
