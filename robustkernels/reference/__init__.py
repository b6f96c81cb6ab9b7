"""Plain eager PyTorch versions of every op: the ground truth for tests and benchmarks.

Nothing here imports the rest of robustkernels.
"""

from .philox import philox4x32_10, philox_block, philox_normal, philox_uniform

__all__ = ["philox4x32_10", "philox_block", "philox_normal", "philox_uniform"]
