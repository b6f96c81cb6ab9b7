"""What :func:`~robustkernels.eval.autoattack` reports: :class:`AutoAttackReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .checks import above_chance
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
    skipped: list[str] = field(default_factory=list)  # attacks of the version not run, with why
    robust: list[bool] = field(default_factory=list)  # per sample, in data order (cascade verdict)
    classes: int = 0  # the model's outputs
    gradients: str = "the model's own"  # or BPDA through the named front-ends

    def warnings(self) -> list[str]:
        """What makes the figures meaningless (a model at chance)."""
        check = above_chance(self.clean_accuracy.mean, self.classes, self.n_samples) if self.classes else None
        return [f"warning: {check.detail}"] if check is not None and check.status != "pass" else []

    def log(self) -> str:
        """The cumulative log, in the original's words."""
        lines = [f"using {self.version} version including {', '.join(self.attacks)}.",
                 f"initial accuracy: {100 * self.clean_accuracy.mean:.2f}%"]
        total = 0.0
        for name, acc in zip(self.attacks, self.robust_after):
            total += self.seconds.get(name, 0.0)
            lines.append(f"robust accuracy after {name.upper()}: {100 * acc:.2f}% (total time {total:.1f} s)")
        lines += [f"skipped {s}" for s in self.skipped]
        if self.gradients != "the model's own":
            lines.append(f"attack gradients: {self.gradients}")
        lines.append(f"robust accuracy: {self.robust_accuracy}")
        lines += self.warnings()
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = ["| attack | points attacked | robust accuracy after it | seconds |", "| --- | --- | --- | --- |",
                f"| clean | | {self.clean_accuracy} | |"]
        rows += [f"| {n} | {self.attacked.get(n, 0)} | {100 * a:.2f}% | {self.seconds.get(n, 0.0):.1f} |"
                 for n, a in zip(self.attacks, self.robust_after)]
        what = (f"stochastic model: EOT-{self.eot_iter}, accuracies over {self.repeats} passes"
                if self.stochastic else "deterministic model")
        if self.gradients != "the model's own":
            what += f"; attack gradients: {self.gradients}"
        return "\n".join([f"AutoAttack ({self.version}), {self.norm} eps = {self.eps:.4g}, {self.n_samples} samples, "
                          f"{what}", "", *rows, "", f"**AutoAttack robust accuracy: {self.robust_accuracy}**",
                          *self.warnings()])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AutoAttackReport:
        stats = {k: Stat(**data[k]) for k in ("clean_accuracy", "robust_accuracy")}
        return cls(**{**data, **stats})
