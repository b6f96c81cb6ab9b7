"""IBP training (Gowal et al. 2018): ``kappa CE(z(x), y) + (1 - kappa) CE(z_worst, y)``, where
``z_worst_j = -lower(z_y - z_j)`` is the worst case over the eps-ball that interval bounds can
certify. eps ramps linearly from 0 and kappa from 1 to ``kappa_end`` over the first
``ramp_fraction`` of training (or over ``eps_warmup_epochs`` when given). ``bound="crown-ibp"``
trains on CROWN-IBP's bounds (Zhang et al. 2020): ``beta * CROWN-IBP + (1 - beta) * IBP``, beta
going from 1 to 0 over the same ramp. Needs a deterministic model without BatchNorm in training
mode (e.g. ``cnn``)."""

from ...certify import bound_method, crown_ibp_margins, margin_lower_bounds
from ...common import non_negative
from .base import BatchResult, Method, cross_entropy


class IBP(Method):
    name = "ibp"

    def __init__(self, *, kappa_end: float = 0.5, ramp_fraction: float = 0.5, bound: str = "ibp", **kwargs):
        super().__init__(**kwargs)
        self.bound = bound_method("bound", bound)
        self.kappa_end = non_negative("kappa_end", kappa_end)
        self.ramp_fraction = non_negative("ramp_fraction", ramp_fraction)
        if self.kappa_end > 1 or not 0 < self.ramp_fraction <= 1:
            raise ValueError("need kappa_end in [0, 1] and ramp_fraction in (0, 1]")
        self.kappa, self.beta = 1.0, 1.0 if bound == "crown-ibp" else 0.0

    def set_progress(self, epochs_done, epochs):
        if self.eps_warmup_epochs > 0:
            super().set_progress(epochs_done, epochs)
        else:
            self.eps_scale = min(1.0, epochs_done / (self.ramp_fraction * epochs))
        self.kappa = 1.0 - (1.0 - self.kappa_end) * self.eps_scale
        self.beta = 1.0 - self.eps_scale if self.bound == "crown-ibp" else 0.0

    def batch_loss(self, model, x, y, ctx):
        lo, hi = self.bounds
        with ctx.autocast():
            logits = self.forward(model, x)
        box = (x - self.eps).clamp(lo, hi), (x + self.eps).clamp(lo, hi)
        margins = margin_lower_bounds(self.net, *box, y)
        if self.beta > 0:
            margins = self.beta * crown_ibp_margins(self.net, *box, y) + (1 - self.beta) * margins
        worst = -margins.float()  # column y is 0
        loss = self.kappa * cross_entropy(logits, y, ctx.targets) + (1 - self.kappa) * cross_entropy(
            worst, y, ctx.targets)
        return BatchResult(loss + self.regularizer(), logits)

    def epoch_metrics(self):
        return {"eps": self.eps, "kappa": self.kappa, "beta": self.beta}

