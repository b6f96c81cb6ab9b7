"""What one pass of :func:`~robustkernels.eval.evaluate` keeps while the data stream by: per-sample
verdicts ([R, n] per batch: R evaluation passes), the per-attack sums behind the report's
figures, and the first samples (for the masking checks and the examples) - nothing else of the
data."""

from __future__ import annotations

import torch

from ..threat import lp_norms
from .values import AttackResult, Stat


class PassTally:
    """Per-batch verdicts of one evaluation pass. The first ``keep`` inputs are kept whole (the
    masking checks run on them) and the first ``show`` adversarial inputs of each attack (the
    report's examples)."""

    def __init__(self, names: list[str], norm: str, keep: int, show: int):
        self.names, self.norm, self.keep, self.show = names, norm, keep, show
        self.clean, self.confidence, self.labels, self.xs = [], [], [], []
        self.robust = {n: [] for n in names}  # name -> [R, n] per batch (AutoAttack: [1, n])
        self.confidence_adv, self.moved = {n: [] for n in names}, {n: [] for n in names}
        self.shown = {n: [] for n in names}
        self.seconds, self.clean_seconds = dict.fromkeys(names, 0.0), 0.0

    @property
    def n(self) -> int:
        return sum(len(y) for y in self.labels)

    def add_clean(self, x, y, preds, seconds: float) -> None:
        """One batch's clean passes: ``preds`` = R (labels [n], max softmax [n]) pairs."""
        kept = sum(len(v) for v in self.xs)
        if kept < self.keep:
            self.xs.append(x[: self.keep - kept].cpu())
        self.labels.append(y.cpu())
        self.clean.append(torch.stack([p == y.cpu() for p, _ in preds]))
        self.confidence.append(preds[0][1])
        self.clean_seconds += seconds

    def add_attack(self, name: str, x, x_adv, preds, seconds: float) -> None:
        """One batch under attack ``name`` (after :meth:`add_clean` of the same batch)."""
        y, clean = self.labels[-1], self.clean[-1]
        robust = clean & torch.stack([p == y for p, _ in preds])
        self.robust[name].append(robust)
        self.confidence_adv[name].append(preds[0][1])
        self.moved[name].append(lp_norms(x_adv - x, self.norm)[~robust[0] & clean[0]])
        self.seconds[name] += seconds
        shown = sum(len(v) for v in self.shown[name])
        if shown < self.show or not self.shown[name]:  # (an empty slice keeps the shape when show is 0)
            self.shown[name].append(x_adv[: max(self.show - shown, 0)])

    def add_robust(self, name: str, robust: torch.Tensor) -> None:
        """Verdicts [n] of a run that reports only them (AutoAttack), for the worst case."""
        self.robust.setdefault(name, []).append(robust.view(1, -1))

    # -- the whole pass ---------------------------------------------------------------------
    def clean_correct(self) -> torch.Tensor:
        return torch.cat(self.clean, dim=1)  # [R, N]

    def masks(self) -> dict[str, torch.Tensor]:
        """name -> robust [R, N] (AutoAttack's [1, N] expanded to R passes)."""
        reps = self.clean[0].shape[0]
        return {n: torch.cat(v, dim=1).expand(reps, -1) for n, v in self.robust.items()}

    def result(self, name: str, masks: dict) -> AttackResult:
        """The report's row for attack ``name``."""
        robust, clean = masks[name], self.clean_correct()
        fooled = (clean & ~robust).sum(dim=1).float() / clean.sum(dim=1).clamp_min(1)
        return AttackResult(robust_accuracy=Stat.of(robust.float().mean(dim=1)), success_rate=float(fooled.mean()),
                            confidence_adv=float(torch.cat(self.confidence_adv[name]).mean()),
                            perturbation_norm=float(torch.cat(self.moved[name]).mean().nan_to_num(0.0)),
                            seconds_per_image=self.seconds[name] / self.n)

    def kept(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The leading samples kept: x [k, ...], y [k]."""
        x = torch.cat(self.xs)
        return x, torch.cat(self.labels)[: len(x)]

    def shown_inputs(self, name: str) -> torch.Tensor:
        return torch.cat(self.shown[name])
