"""WideResNet (Zagoruyko & Komodakis 2016) with pre-activation blocks, as in the adversarial
training literature's reference code: BN -> act -> conv3x3 -> BN -> act -> conv3x3 + shortcut.

Every BN -> act pair comes from one factory ``norm_act(channels) -> (bn, act)``. With LWTA the
pair is one fused :class:`~robustkernels.nn.BatchNormLWTA` (as ``bn``; ``act`` is an
``nn.Identity``), which keeps one activation-sized tensor for the backward instead of two; the
``state_dict`` keys are the same as with separate BN and activation modules."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..nn.lwta import BatchNormLWTA

ACTIVATIONS = ("relu", "lwta")
NormAct = Callable[[int], tuple[nn.Module, nn.Module]]


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, norm_act: NormAct):
        super().__init__()
        self.bn1, self.act1 = norm_act(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2, self.act2 = norm_act(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen_factor: int, num_classes: int, norm_act: NormAct, in_channels: int = 3):
        super().__init__()
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        layers = []
        for group in range(3):
            for block in range(blocks):
                in_planes = widths[group] if block == 0 else widths[group + 1]
                stride = (1 if group == 0 else 2) if block == 0 else 1
                layers.append(PreActBlock(in_planes, widths[group + 1], stride, norm_act))
        self.blocks = nn.Sequential(*layers)
        self.bn, self.act = norm_act(widths[3])
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.act(self.bn(self.blocks(self.conv1(x)))))))


def wide_resnet(depth: int = 34, widen_factor: int = 10, num_classes: int = 10, activation: str = "relu",
                competitors: int = 2, in_channels: int = 3) -> WideResNet:
    """WRN-depth-widen_factor, e.g. ``wide_resnet(34, 10)`` (46M parameters) or ``wide_resnet(16, 4)``;
    ``activation="lwta"`` uses Stochastic LWTA with ``competitors`` units per block."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth!r}")
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
        raise ValueError(f"widen_factor must be an int >= 1, got {widen_factor!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation == "lwta" and 16 % competitors:
        raise ValueError(f"competitors must divide the 16 channels of the first layer, got {competitors}")
    if activation == "relu":
        return WideResNet(depth, widen_factor, num_classes, lambda c: (nn.BatchNorm2d(c), nn.ReLU(inplace=True)),
                          in_channels)
    return WideResNet(depth, widen_factor, num_classes, lambda c: (BatchNormLWTA(c, competitors), nn.Identity()),
                      in_channels)
