"""Standard (non-robust) training: cross-entropy on clean inputs."""

from .base import BatchResult, Method, cross_entropy


class Standard(Method):
    name = "standard"

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            logits = self.forward(model, x)
        return BatchResult(cross_entropy(logits, y, ctx.targets) + self.regularizer(), logits)
