"""Mixed-attack training: with probability 1/2 a batch stays clean; otherwise it is attacked by
one of ``kinds`` - PGD, FGSM, CW (L2, short) or Gaussian noise (sigma = eps) - drawn uniformly."""

import torch

from ...attacks import CW, FGSM
from ...threat import broadcast_bounds
from .base import BatchResult, Method, cross_entropy

KINDS = ("pgd", "fgsm", "cw", "noise")


class Mixed(Method):
    name = "mixed"

    def __init__(self, *, attack_probability: float = 0.5, cw_steps: int = 10, kinds=KINDS, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= attack_probability <= 1.0:
            raise ValueError(f"attack_probability must be in [0, 1], got {attack_probability}")
        self.kinds = tuple(kinds)
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"kinds must be a non-empty selection of {KINDS}, got {kinds!r}")
        self.attack_probability, self.cw_steps = float(attack_probability), int(cw_steps)
        self.counts = dict.fromkeys(("clean",) + KINDS, 0)

    def perturbed(self, x, y):
        if float(torch.rand((), generator=self.generator)) >= self.attack_probability:
            self.counts["clean"] += 1
            return x
        kind = self.kinds[int(torch.randint(len(self.kinds), (), generator=self.generator))]
        self.counts[kind] += 1
        if kind == "pgd":
            return self.attack()(x, y)
        if kind == "fgsm":
            return FGSM(self.net, eps=self.eps, **self.attack_options())(x, y)
        if kind == "cw":
            threat = {k: v for k, v in self.attack_options().items() if k != "norm"}  # CW is L2 whatever the threat
            return CW(self.net, steps=self.cw_steps, binary_search_steps=1, lr=0.05, **threat)(x, y)
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype).to(x.device)
        lo, hi = (t.to(x.dtype) for t in broadcast_bounds(self.bounds, x))
        return torch.minimum(torch.maximum(x + self.eps * noise, lo), hi)

    def batch_loss(self, model, x, y, ctx):
        with ctx.autocast():
            x_in = self.run_attack(self.perturbed, x, y)
            logits = self.forward(model, x_in)
        return BatchResult(cross_entropy(logits, y, ctx.targets) + self.regularizer(), logits)

    def epoch_metrics(self):
        counts, self.counts = self.counts, dict.fromkeys(self.counts, 0)
        return {"batches": counts}
