"""Plain eager PyTorch versions of every op: the ground truth for tests and benchmarks.

Nothing here imports the rest of robustkernels.
"""

from . import lwta, noise, pgd
from .noise import inject_noise, noisy_weight
from .philox import philox4x32_10, philox_block, philox_normal, philox_uniform

__all__ = [
    "inject_noise",
    "lwta",
    "noise",
    "pgd",
    "noisy_weight","philox4x32_10", "philox_block", "philox_normal", "philox_uniform"]
