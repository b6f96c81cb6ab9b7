"""Pre-activation residual networks (He et al. 2016), the shape of the AT literature's reference
models: BN -> act -> conv3x3 -> BN -> act -> conv3x3 + shortcut, where a 1x1 shortcut conv (when
the shape changes) reads the pre-activation. :class:`PreActResNet` is the stem conv, stages of
blocks, a final BN -> act, global average pooling and a linear layer; WideResNet and
PreActResNet-18 are two settings of it.

Every BN -> act pair comes from one factory ``norm_act(channels) -> (bn, act)``. With LWTA the
pair is one fused :class:`~robustkernels.nn.BatchNormLWTA` (as ``bn``; ``act`` is an
``nn.Identity``), which keeps one activation-sized tensor for the backward instead of two; the
``state_dict`` keys are the same as with separate BN and activation modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..nn.lwta import BatchNormLWTA

ACTIVATIONS = ("relu", "lwta")
NormAct = Callable[[int], tuple[nn.Module, nn.Module]]


def norm_act_factory(activation: str, competitors: int = 2) -> NormAct:
    """``channels -> (BatchNorm2d, ReLU)`` or the fused ``(BatchNormLWTA, Identity)``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation == "relu":
        return lambda c: (nn.BatchNorm2d(c), nn.ReLU(inplace=True))
    return lambda c: (BatchNormLWTA(c, competitors), nn.Identity())


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


class PreActResNet(nn.Module):
    """Stem conv3x3 to ``stem`` channels, then for each stage ``blocks`` blocks of ``width``
    channels (the first with ``stride``), BN -> act, global average pooling, linear."""

    def __init__(self, stem: int, widths: Sequence[int], strides: Sequence[int], blocks: int, num_classes: int,
                 norm_act: NormAct, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        layers, in_planes = [], stem
        for width, stride in zip(widths, strides):
            for block in range(blocks):
                layers.append(PreActBlock(in_planes, width, stride if block == 0 else 1, norm_act))
                in_planes = width
        self.blocks = nn.Sequential(*layers)
        self.bn, self.act = norm_act(in_planes)
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.act(self.bn(self.blocks(self.conv1(x)))))))


def check_competitors(activation: str, competitors: int, stem: int) -> None:
    if activation == "lwta" and stem % competitors:
        raise ValueError(f"competitors must divide the {stem} channels of the first layer, got {competitors}")


def preact_resnet18(num_classes: int = 10, activation: str = "relu", competitors: int = 2,
                    in_channels: int = 3) -> PreActResNet:
    """PreActResNet-18 (11.2M parameters): stem 64, stages of 2 blocks at 64/128/256/512 channels
    with strides 1/2/2/2 - the model of Wong et al. 2020, Rice et al. 2020 and most fast-AT work."""
    check_competitors(activation, competitors, 64)
    return PreActResNet(64, (64, 128, 256, 512), (1, 2, 2, 2), 2, num_classes,
                        norm_act_factory(activation, competitors), in_channels)
