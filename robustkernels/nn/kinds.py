"""What kind of layer a module is, as a public predicate for the packages above ``nn``."""

from __future__ import annotations

from torch import nn

from .lwta import LWTA, BatchNormLWTA
from .pni import _PNIMixin


def is_stochastic(module: nn.Module) -> bool:
    """True for the library's stochastic layers (PNI, LWTA, BatchNormLWTA): their output is a
    random function of the input, so bounds and deterministic checks do not apply to them."""
    return isinstance(module, (_PNIMixin, LWTA, BatchNormLWTA))


def is_pni(module: nn.Module) -> bool:
    """True for a Parametric Noise Injection layer (PNIConv2d, PNILinear)."""
    return isinstance(module, _PNIMixin)
