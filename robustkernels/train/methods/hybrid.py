"""Dynamic adversarial augmentation with an adaptive loss: the attack's eps grows from eps/10 to
eps over the epochs (``eps_schedule``), and the loss is ``a * L_clean + (1 - a) * L_adv`` with
``a = acc_adv / (acc_adv + acc_clean)`` from the last validation (or, without validation data,
from the last epoch's training accuracies); ``a = 0.5`` before the first measurement."""

import math

from ...threat import default_step
from .base import BatchResult, Method, cross_entropy

EPS_SCHEDULES = ("linear", "cosine", "step")


def scheduled_eps(eps: float, epoch: int, epochs: int, schedule: str = "linear", start_fraction: float = 0.1) -> float:
    """eps for ``epoch`` (0-based): from ``start_fraction * eps`` at the first epoch to ``eps`` at the last."""
    if schedule not in EPS_SCHEDULES:
        raise ValueError(f"eps_schedule must be one of {EPS_SCHEDULES}, got {schedule!r}")
    t = epoch / (epochs - 1) if epochs > 1 else 1.0
    if schedule == "cosine":
        t = 0.5 - 0.5 * math.cos(math.pi * t)
    elif schedule == "step":
        t = math.floor(t * 4) / 4
    return eps * (start_fraction + (1 - start_fraction) * t)


class Hybrid(Method):
    name = "hybrid"

    def __init__(self, *, eps_schedule: str = "linear", **kwargs):
        super().__init__(**kwargs)
        if eps_schedule not in EPS_SCHEDULES:
            raise ValueError(f"eps_schedule must be one of {EPS_SCHEDULES}, got {eps_schedule!r}")
        self.eps_schedule = eps_schedule
        self.current_eps, self.weight = self.target_eps / 10, 0.5
        self._correct = [0, 0, 0]  # clean, adversarial, seen

    def start_epoch(self, epoch, epochs):
        self.current_eps = scheduled_eps(self.target_eps, epoch, epochs, self.eps_schedule)
        if self._correct[2]:  # no validation last epoch: adapt to the training accuracies
            clean, adv, seen = self._correct
            self.end_validation(clean / seen, adv / seen)
        self._correct = [0, 0, 0]

    def end_validation(self, clean_acc, adv_acc):
        total = clean_acc + adv_acc
        self.weight = adv_acc / total if total > 0 else 0.5
        self._correct = [0, 0, 0]

    def batch_loss(self, model, x, y, ctx):
        eps = self.current_eps * self.eps_scale
        attack = self.attack(eps=eps, alpha=default_step(eps, self.steps))
        with ctx.autocast():
            x_adv = self.run_attack(attack, x, y)
            logits_clean = self.forward(model, x)
            logits_adv = self.forward(model, x_adv)
        loss = (self.weight * cross_entropy(logits_clean, y, ctx.targets)
                + (1 - self.weight) * cross_entropy(logits_adv, y, ctx.targets))
        self._correct[0] += int((logits_clean.argmax(1) == y).sum())
        self._correct[1] += int((logits_adv.argmax(1) == y).sum())
        self._correct[2] += len(y)
        return BatchResult(loss + self.regularizer(), logits_adv)

    def epoch_metrics(self):
        return {"eps": self.current_eps * self.eps_scale, "clean_weight": self.weight}

    def state_dict(self):
        return {"current_eps": self.current_eps, "weight": self.weight, "correct": list(self._correct)}

    def load_state_dict(self, state):
        self.current_eps, self.weight = state["current_eps"], state["weight"]
        self._correct = list(state["correct"])
