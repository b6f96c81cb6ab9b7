"""MI-FGSM (Dong et al. 2018): sign steps along an accumulated, L1-normalised gradient."""

from __future__ import annotations

import torch

from ..common import non_negative, positive_int
from .base import Attack


class MIFGSM(Attack):
    """MI-FGSM (Dong et al. 2018): ``g = decay * g + grad / mean(|grad|)`` per sample, then a
    fused step along ``sign(g)``.

    Threat model: Linf or L2 (``norm``), untargeted or targeted.

    Args:
        model: returns logits [B, K].
        eps: radius of the ball; alpha: step size; steps: iterations; decay: the momentum's.
        **kwargs: the base's settings (bounds, normalization, eot_iter, early_stop,
            generator and the levers): see :class:`~robustkernels.attacks.Attack`.

    Shapes: x [B, ...] in ``bounds``, y [B] integer labels; returns x_adv of x's shape.

    Example:
        >>> x_adv = MIFGSM(model, eps=8/255, alpha=2/255, steps=10)(x, y)
    """

    def __init__(self, model, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, decay: float = 1.0,
                 **kwargs):
        super().__init__(model, eps=eps, **kwargs)
        self.alpha = non_negative("alpha", alpha)
        self.steps = positive_int("steps", steps)
        self.decay = non_negative("decay", decay)

    def perturb(self, ctx, x, y, target):
        x_adv, momentum = x.clone(), torch.zeros_like(x)
        alpha = self.step_sizes(self.alpha, x)
        for _ in range(self.steps):
            _, grad, logits = ctx.oracle.loss_and_grad(x_adv, y, target)
            scale = grad.abs().flatten(1).mean(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
            momentum = self.decay * momentum + grad / scale
            step = torch.where(ctx.oracle.succeeded(logits, y, target, x_adv), 0.0, alpha) if self.early_stop else alpha
            ctx.step(x_adv, x, momentum, step, out=x_adv)
        return x_adv
