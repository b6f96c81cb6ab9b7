"""Fast adversarial training (Wong, Rice & Kolter 2020): FGSM from a uniform random start with
step 1.25 eps; pair it with the cyclic learning rate (the trainer's ``schedule="cyclic"``).
``random_start=False`` gives plain FGSM training with step ``step_factor * eps`` (the setting that
overfits catastrophically)."""

from .base import BatchResult, Method, cross_entropy


class FGSMRS(Method):
    name = "fgsm_rs"
    default_schedule = "cyclic"
    single_step = True

    def __init__(self, *, step_factor: float = 1.25, **kwargs):
        kwargs.setdefault("steps", 1)
        super().__init__(**kwargs)
        self.target_alpha = step_factor * self.target_eps

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(self.attack(steps=1), x, y)
            logits = self.forward(model, x_adv)
        return BatchResult(cross_entropy(logits, y, ctx.targets) + self.regularizer(), logits)
