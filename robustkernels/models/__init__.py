"""Models used across the robustness literature, and :func:`build_model` to make one by name."""

from __future__ import annotations

import re

from torch import nn

from ..nn.lwta import convert_activations
from ..nn.pni import convert_to_pni
from .external import load_weights, model_from_import
from .preact import PreActResNet, preact_resnet18
from .small import lenet5, small_cnn
from .wide_resnet import WideResNet, wide_resnet

MODEL_NAMES = ("cnn", "cnn-bn", "lenet5", "preact-resnet18", "wrn-DEPTH-WIDTH")


def build_model(name: str, *, activation: str = "relu", pni: bool = False, in_channels: int = 3,
                num_classes: int = 10, image_size: int = 32, competitors: int = 2) -> nn.Module:
    """``"cnn"`` / ``"cnn-bn"`` (:func:`small_cnn`, with BatchNorm), ``"lenet5"``, ``"preact-resnet18"`` or
    ``"wrn-34-10"`` style WideResNets, with
    ``activation="relu"|"lwta"`` and optionally PNI on every conv/linear layer (``pni=True``)."""
    if activation not in ("relu", "lwta"):
        raise ValueError(f"activation must be 'relu' or 'lwta', got {activation!r}")
    wrn = re.fullmatch(r"wrn-(\d+)-(\d+)", name) if isinstance(name, str) else None
    if wrn:
        model = wide_resnet(int(wrn.group(1)), int(wrn.group(2)), num_classes, activation, competitors, in_channels)
    elif name in ("preact-resnet18", "preact_resnet18"):
        model = preact_resnet18(num_classes, activation, competitors, in_channels)
    elif name in ("cnn", "cnn-bn"):
        model = small_cnn(in_channels, num_classes, image_size, batch_norm=name == "cnn-bn")
    elif name == "lenet5":
        model = lenet5(in_channels, num_classes, image_size)
    else:
        raise ValueError(f"model must be one of {MODEL_NAMES} (e.g. wrn-34-1), got {name!r}")
    if activation == "lwta" and not wrn and not name.startswith("preact"):
        convert_activations(model, competitors=competitors)
    return convert_to_pni(model) if pni else model


__all__ = ["MODEL_NAMES", "PreActResNet", "WideResNet", "build_model", "lenet5", "load_weights", "model_from_import",
           "preact_resnet18", "small_cnn", "wide_resnet"]
