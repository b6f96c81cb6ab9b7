"""WideResNet (Zagoruyko & Komodakis 2016) with pre-activation blocks, as in the adversarial
training literature's reference code (see :mod:`robustkernels.models.preact`)."""

from __future__ import annotations

from .preact import NormAct, PreActResNet, check_competitors, norm_act_factory


class WideResNet(PreActResNet):
    """WRN-depth-width (Zagoruyko & Komodakis 2016) as a pre-activation ResNet: stem 16, three
    stages of (depth - 4) / 6 blocks at 16k, 32k, 64k channels, strides 1 / 2 / 2."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int, norm_act: NormAct, in_channels: int = 3):
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(16, widths, (1, 2, 2), (depth - 4) // 6, num_classes, norm_act, in_channels)


def wide_resnet(depth: int = 34, widen_factor: int = 10, num_classes: int = 10, activation: str = "relu",
                competitors: int = 2, in_channels: int = 3) -> WideResNet:
    """WRN-depth-widen_factor, e.g. ``wide_resnet(34, 10)`` (46M parameters) or ``wide_resnet(16, 4)``;
    ``activation="lwta"`` uses Stochastic LWTA with ``competitors`` units per block."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth!r}")
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
        raise ValueError(f"widen_factor must be an int >= 1, got {widen_factor!r}")
    norm_act = norm_act_factory(activation, competitors)
    check_competitors(activation, competitors, 16)
    return WideResNet(depth, widen_factor, num_classes, norm_act, in_channels)
