"""N-FGSM (de Jorge et al. 2022): single-step training from strong noise without clipping. The
start is ``x + U(-k eps, k eps)`` (k = 2), the step ``alpha = eps`` along the gradient's sign,
and the result is **not** projected back onto the eps-ball (only onto the input bounds): the
training perturbation reaches up to ``k eps + alpha = 3 eps``. Linf only; pair it with the
cyclic learning rate, as the paper does."""

import math

from ...common import non_negative
from ...ops.pgd import pgd_step, random_init
from .base import BatchResult, Method, cross_entropy, summed_cross_entropy


class NFGSM(Method):
    name = "n_fgsm"
    default_schedule = "cyclic"
    single_step = True

    def __init__(self, *, noise_factor: float = 2.0, step_factor: float = 1.0, **kwargs):
        kwargs.setdefault("steps", 1)
        super().__init__(**kwargs)
        if self.norm != "linf":
            raise ValueError("method n_fgsm is defined for norm='linf'")
        self.noise_factor = non_negative("noise_factor", noise_factor)
        self.target_alpha = non_negative("step_factor", step_factor) * self.target_eps

    def perturbed(self, x, y):
        """``clip_bounds(x0 + alpha sign(grad))`` with ``x0 = clip_bounds(x + U(-k eps, k eps))``."""
        start = random_init(x, self.noise_factor * self.eps, "linf", self.bounds, generator=self.generator)
        _, grad = self.input_gradient(start, summed_cross_entropy(y))
        return pgd_step(start, x, grad, step=self.alpha, eps=math.inf, norm="linf", bounds=self.bounds)

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(self.perturbed, x, y)
            logits = self.forward(model, x_adv)
        return BatchResult(cross_entropy(logits, y, ctx.targets) + self.regularizer(), logits)
