"""What :func:`~robustkernels.eval.autoattack` reports: :class:`AutoAttackReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .checks import above_chance, percent
from .values import Stat


@dataclass
class AutoAttackReport:
    """What :func:`autoattack` measured. ``robust_after[i]`` is the robust accuracy after the
    first i+1 attacks (the original's log); ``robust_accuracy`` the final AA accuracy: the
    cascade's verdict, and for a stochastic model mean ± std over ``repeats`` evaluation passes
    in which a point counts as robust only if the cascade never fooled it and the pass
    classifies both its clean and its returned input correctly (never above the cascade's
    figure: a noisy model cannot win back a point an attack broke)."""

    version: str
    norm: str
    eps: float
    n_samples: int
    attacks: list[str]
    clean_accuracy: Stat
    robust_after: list[float]
    robust_accuracy: Stat
    seconds: dict[str, float]
    attacked: dict[str, int]  # points each attack ran on
    stochastic: bool = False
    eot_iter: int = 1
    repeats: int = 1
    autocast: str | None = None
    robust: list[bool] = field(default_factory=list)  # per sample, in data order (cascade verdict)
    classes: int = 0  # the model's outputs
    gradients: str = "the model's own"  # or BPDA through the named front-ends
    levers: str = "none"  # the speed levers of the model inside the attacks (eval.levers)
    individual: dict[str, float] = field(default_factory=dict)  # each attack alone on every point
    probabilities: bool = False  # the model returned probabilities, not logits
    not_autoattack: str | None = None  # a version of ours (fast): what it runs instead of AutoAttack
    measured: str | None = None  # that version's gap to standard, measured on the benchmark models

    def warnings(self) -> list[str]:
        """What makes the figures meaningless or suspect, as the original warns: a model at chance,
        probabilities for logits, the gradient-free Square beating the white-box attacks."""
        out = []
        check = above_chance(self.clean_accuracy.mean, self.classes, self.n_samples) if self.classes else None
        if check is not None and check.status != "pass":
            out.append(f"warning: {check.detail}")
        if self.probabilities:
            out.append("warning: the model returns probabilities (rows sum to 1), not logits: the CE gradient is "
                       "masked; evaluate the model without its final softmax")
        broken, smoothed = self._breaks("square"), self._breaks("smoothed-pgd")
        if broken:
            out.append(f"warning: Square (gradient-free) fooled {percent(broken)} of the points that the white-box "
                       "attacks before it did not: a sign of gradient masking")
        if smoothed:
            out.append(f"warning: smoothed PGD (gradients averaged over input noise) fooled {percent(smoothed)} of "
                       "the points that the attacks before it did not: a sign of gradient masking")
        if self.not_autoattack and self._masked():
            out.append(f"warning: {self.version} found signs of gradient masking: its figure can be many points above "
                       "standard's; run version='standard' for a figure to report")
        return out

    def _masked(self) -> bool:
        """Whether the gradient-free or the smoothed attack fooled points the attacks before it did not."""
        return bool(self._breaks("square") or self._breaks("smoothed-pgd"))

    def _fast_gap(self) -> str:
        """fast's gap to standard: the one measured on the benchmark models, which says nothing for
        a model where this run found masking signs (there fast can be many points above)."""
        if self._masked():
            return ("the gap measured against standard on other models does not apply here: this model shows "
                    "signs of gradient masking")
        return f"measured against standard: {self.measured}"

    def _breaks(self, name: str) -> float:
        """The share of points attack ``name`` fooled after the attacks before it failed on them."""
        if name not in self.attacks:
            return 0.0
        if self.individual:
            others = [a for n, a in self.individual.items() if n != name]
            return max(0.0, min(others) - self.individual[name]) if others else 0.0
        k = self.attacks.index(name)
        before = self.robust_after[k - 1] if k else self.clean_accuracy.mean
        return max(0.0, before - self.robust_after[k])

    def log(self) -> str:
        """The cumulative log, in the original's words."""
        lines = [f"using {self.version} version including {', '.join(self.attacks)}."]
        if self.not_autoattack:
            lines.append(f"NOT AutoAttack standard: {self.not_autoattack}; {self._fast_gap()}")
        lines.append(f"initial accuracy: {percent(self.clean_accuracy.mean)}")
        total = 0.0
        for name, acc in zip(self.attacks, self.robust_after):
            total += self.seconds.get(name, 0.0)
            lines.append(f"robust accuracy after {name.upper()}: {percent(acc)} (total time {total:.1f} s)")
        lines += [f"robust accuracy of {name.upper()} alone: {percent(acc)}" for name, acc in self.individual.items()]
        if self.gradients != "the model's own":
            lines.append(f"attack gradients: {self.gradients}")
        inside = self._inside()
        if inside:
            lines.append(f"model inside the attacks: {inside}")
        lines.append(f"robust accuracy: {self.robust_accuracy}")
        lines += self.warnings()
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = ["| attack | points attacked | robust accuracy after it | seconds |", "| --- | --- | --- | --- |",
                f"| clean | | {self.clean_accuracy} | |"]
        rows += [f"| {n} | {self.attacked.get(n, 0)} | {percent(a)} | {self.seconds.get(n, 0.0):.1f} |"
                 for n, a in zip(self.attacks, self.robust_after)]
        what = (f"stochastic model: EOT-{self.eot_iter}, accuracies over {self.repeats} passes"
                if self.stochastic else "deterministic model")
        if self.gradients != "the model's own":
            what += f"; attack gradients: {self.gradients}"
        inside = self._inside()
        if inside:
            what += f"; model inside the attacks: {inside}"
        title, figure = f"AutoAttack ({self.version})", f"**AutoAttack robust accuracy: {self.robust_accuracy}**"
        if self.not_autoattack:
            title = f"Fast evaluation (NOT AutoAttack standard: {self.not_autoattack})"
            figure = f"**Fast robust accuracy: {self.robust_accuracy}** (not AutoAttack's figure; {self._fast_gap()})"
        return "\n".join([f"{title}, {self.norm} eps = {self.eps:.4g}, {self.n_samples} samples, {what}", "", *rows,
                          "", figure, *self._individual_line(), *self.warnings()])

    def _inside(self) -> str:
        """The model inside the attacks ("" when it is the model itself, in fp32)."""
        if self.levers == "none" and not self.autocast:
            return ""
        precision = f"{self.autocast} autocast in APGD and smoothed PGD, fp32 verdicts" if self.autocast else "fp32"
        return precision + ("" if self.levers == "none" else f", {self.levers}")

    def _individual_line(self) -> list[str]:
        if not self.individual:
            return []
        return ["", "Each attack alone on every point: " + ", ".join(
            f"{name} {percent(acc)}" for name, acc in self.individual.items()) + "."]

    def __str__(self) -> str:
        """A short summary: the setting, clean and robust accuracy, one line per attack and the
        warnings (the per-sample verdicts stay in ``robust``; :meth:`log` and
        :meth:`to_markdown` give the rest)."""
        lines = [f"AutoAttack ({self.version}), {self.norm} eps = {self.eps:.4g}, {self.n_samples} samples",
                 f"  clean accuracy: {self.clean_accuracy}"]
        lines += [f"  after {name}: {percent(acc)}" for name, acc in zip(self.attacks, self.robust_after)]
        lines.append(f"  robust accuracy: {self.robust_accuracy}")
        return "\n".join(lines + [f"  {w}" for w in self.warnings()])

    def __repr__(self) -> str:
        """One line with the figures (not the hundreds of per-sample verdicts)."""
        after = ", ".join(f"{name!r}: {percent(acc)!r}" for name, acc in zip(self.attacks, self.robust_after))
        return (f"AutoAttackReport(version={self.version!r}, norm={self.norm!r}, eps={self.eps:.4g}, "
                f"n_samples={self.n_samples}, clean_accuracy={str(self.clean_accuracy)!r}, "
                f"robust_accuracy={str(self.robust_accuracy)!r}, robust_after={{{after}}})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AutoAttackReport:
        stats = {k: Stat(**data[k]) for k in ("clean_accuracy", "robust_accuracy")}
        return cls(**{**data, **stats})
