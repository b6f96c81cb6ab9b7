"""Fast adversarial training (Wong, Rice & Kolter 2020): FGSM from a uniform random start with
step 1.25 eps; pair it with the cyclic learning rate (the trainer's ``schedule="cyclic"``)."""

from ...attacks import FGSM_RS
from .base import BatchResult, Method, cross_entropy


class FGSMRS(Method):
    name = "fgsm_rs"
    default_schedule = "cyclic"

    def __init__(self, *, step_factor: float = 1.25, **kwargs):
        kwargs.setdefault("steps", 1)
        super().__init__(**kwargs)
        self.alpha = step_factor * self.eps

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(FGSM_RS(self.net, eps=self.eps, alpha=self.alpha, **self.threat()), x, y)
            logits = self.forward(model, x_adv)
        return BatchResult(cross_entropy(logits, y) + self.regularizer(), logits)
