"""Modules: thin wrappers over robustkernels.ops."""

from .ibp import IBPConv2d, IBPLinear, elbo_loss
from .kinds import is_pni, is_stochastic
from .lwta import LWTA, BatchNormLWTA, convert_activations, lwta_kl
from .outputs import LogitsOf
from .pni import PNIConv2d, PNILinear, convert_to_pni, pni_param_groups, set_pni_noise

__all__ = [
    "BatchNormLWTA",
    "IBPConv2d",
    "IBPLinear",
    "LWTA",
    "LogitsOf",
    "PNIConv2d",
    "PNILinear",
    "convert_activations",
    "convert_to_pni",
    "elbo_loss",
    "is_pni",
    "is_stochastic",
    "lwta_kl",
    "pni_param_groups",
    "set_pni_noise",
]
