"""Public functional ops. Each is a ``torch.library`` custom op (``torch.ops.robustkernels.*``)
with a fake implementation, autograd where it is differentiable, and one implementation per
backend."""

from ._random import draw_seed, draw_seed_tensor, seed_tensor
from .l1 import project_l1
from .lwta import lwta
from .lwta.batch_norm import batch_norm_lwta
from .noise import inject_noise, noisy_weight
from .pgd import pgd_step, project, random_init
from .philox import philox_normal, philox_uniform

__all__ = [
    "batch_norm_lwta",
    "draw_seed",
    "draw_seed_tensor",
    "inject_noise",
    "lwta",
    "noisy_weight",
    "pgd_step",
    "philox_normal",
    "philox_uniform",
    "project",
    "project_l1",
    "random_init",
    "seed_tensor",
]
