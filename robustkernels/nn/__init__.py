"""Modules: thin wrappers over robustkernels.ops."""

from .pni import PNIConv2d, PNILinear, convert_to_pni, pni_param_groups, set_pni_noise

__all__ = ["PNIConv2d", "PNILinear", "convert_to_pni", "pni_param_groups", "set_pni_noise"]
