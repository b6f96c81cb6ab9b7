"""PGD adversarial training (Madry et al. 2018): cross-entropy on PGD-k examples crafted in eval mode."""

from .base import BatchResult, Method, cross_entropy


class PGDAT(Method):
    name = "pgd_at"

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_adv = self.run_attack(self.attack(), x, y)
            logits = self.forward(model, x_adv)
        return BatchResult(cross_entropy(logits, y, ctx.targets) + self.regularizer(), logits)
