"""Attacks, torchattacks-style: ``atk = PGD(model, eps=8/255, alpha=2/255, steps=10); x_adv = atk(x, y)``.

Inputs in [0, 1] unless ``bounds`` / ``normalization=(mean, std)`` say otherwise. Gradients are
taken w.r.t. the input only; the model's training flags, ``requires_grad`` flags and the global
RNG state are restored after every call; the caller's tensors are never modified. What every
attack returns is the contract in :mod:`robustkernels.attacks.base`.
"""

from .apgd import APGD, APGDT
from .base import Attack
from .cw import CW
from .fab import FAB
from .loop import ActiveSet, Iterative
from .losses import objective
from .md import MD
from .mifgsm import MIFGSM
from .pgd import FGSM, FGSM_RS, PGD
from .smoothed import SmoothedPGD
from .square import Square

__all__ = [
    "APGD",
    "APGDT",
    "CW",
    "FAB",
    "ActiveSet",
    "FGSM",
    "FGSM_RS",
    "MD",
    "MIFGSM",
    "PGD",
    "SmoothedPGD",
    "Attack",
    "Iterative",
    "Square",
    "objective",
]
