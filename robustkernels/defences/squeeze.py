"""The deterministic squeezers: bit-depth reduction and median smoothing (Xu et al. 2018)."""

from __future__ import annotations

import torch

from ..common import positive_int
from .base import Preprocessing


class BitDepthReduction(Preprocessing):
    """``round(x * (2^bits - 1)) / (2^bits - 1)``: ``bits`` in 1..8. Its gradient is zero almost
    everywhere (non-differentiable for attacks: use BPDA)."""

    differentiable = False

    def __init__(self, bits: int = 4):
        super().__init__()
        if positive_int("bits", bits) > 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.bits = bits

    def transform(self, x):
        levels = 2 ** self.bits - 1
        return torch.round(x.clamp(0, 1) * levels) / levels


def symmetric_pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Pad H and W by mirroring with the edge repeated (``d c b a | a b c d | d c b a``: scipy's
    ``mode="reflect"``, numpy's ``"symmetric"``)."""
    def index(n: int) -> torch.Tensor:
        i = torch.arange(-before, n + after, device=x.device)
        i = torch.where(i < 0, -i - 1, i)
        return torch.where(i >= n, 2 * n - i - 1, i).clamp(0, n - 1)

    return x.index_select(2, index(x.shape[2])).index_select(3, index(x.shape[3]))


class MedianSmoothing(Preprocessing):
    """Median over each ``k x k`` window per channel, as scipy's ``median_filter(mode="reflect")``
    that Xu et al. use: edges mirrored, the window from ``k // 2`` before to ``(k - 1) // 2`` after
    the pixel, and for an even ``k`` the upper of the two middle values. Differentiable almost
    everywhere (the gradient flows to the median pixel)."""

    unit_range = False  # a median of any values: no range assumed

    def __init__(self, kernel_size: int = 2):
        super().__init__()
        self.k = positive_int("kernel_size", kernel_size)

    def transform(self, x):
        k = self.k
        padded = symmetric_pad(x, k // 2, (k - 1) // 2)
        windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # [N, C, H, W, k, k]
        return windows.reshape(*windows.shape[:4], k * k).kthvalue(k * k // 2 + 1, dim=-1).values
