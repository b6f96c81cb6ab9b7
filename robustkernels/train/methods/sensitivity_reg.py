"""Sensitivity-regularised training: ``CE + lambda * sensitivity(model, x, eps)`` (weight decay
comes from the optimizer), the sensitivity being the log-volume of the interval-bound box of the
logits over the eps-ball (:func:`robustkernels.train.sensitivity`)."""

from ...common import non_negative
from ..losses import sensitivity
from .base import BatchResult, Method, cross_entropy


class SensitivityRegularized(Method):
    name = "sensitivity"

    def __init__(self, *, weight: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.weight = non_negative("weight", weight)
        if not self.target_eps > 0:
            raise ValueError("method sensitivity needs eps > 0")

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            logits = self.forward(model, x)
            volume = sensitivity(self.net, x, self.eps, bounds=self.bounds)
        self.last_sensitivity = float(volume.detach())
        loss = cross_entropy(logits, y, ctx.targets) + self.weight * volume
        return BatchResult(loss + self.regularizer(), logits)

    def epoch_metrics(self):
        return {"sensitivity": getattr(self, "last_sensitivity", None)}
