"""The result of :func:`robustkernels.eval.evaluate`: figures, checks, Markdown / JSON / plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .aa_report import AutoAttackReport
from .corruptions import CorruptionReport
from .values import AttackResult, Check, Stat


@dataclass
class RobustnessReport:
    """What :func:`~robustkernels.eval.evaluate` measured: clean and per-attack accuracies, the
    worst case, the checks, curves and examples; ``to_markdown()``, ``to_json()``, ``plot()``."""

    eps: float
    norm: str
    n_samples: int
    stochastic: bool
    eot_iter: int
    repeats: int
    clean_accuracy: Stat
    confidence_clean: float
    attacks: dict[str, AttackResult]
    worst_case: Stat
    overhead: float  # attack time / time of one clean pass
    checks: list[Check] = field(default_factory=list)
    curves: dict[str, dict[str, float]] = field(default_factory=dict)  # attack -> {eps: accuracy}
    clean_probabilities: list[float] = field(default_factory=list)  # max softmax per sample
    clean_correct: list[bool] = field(default_factory=list)
    examples: dict = field(default_factory=dict)  # images, labels, predictions, attack
    title: str = ""
    autoattack: dict | None = None  # AutoAttackReport.to_dict() with suite="autoattack"
    gradients: str = "the model's own"  # or how the attacks got gradients through a front-end
    levers: str = "none"  # the speed levers of the model inside the attacks (eval.levers), fp32
    corruptions: dict | None = None  # CorruptionReport.to_dict() when asked for
    # {"method": "ibp" | "crown-ibp", "accuracy": float, "broken": [sample indices an attack fooled]}
    certified: dict | None = None

    @property
    def robustness_gap(self) -> float:
        return self.clean_accuracy.mean - self.worst_case.mean

    # -- output -----------------------------------------------------------------------------
    def to_markdown(self) -> str:
        eps = f"{self.eps:.4g}" + (f" (= {self.eps * 255:.3g}/255)" if self.eps < 1 else "")
        lines = [
            f"### {self.title or 'Robustness report'}",
            "",
            f"{self.n_samples} samples, {self.norm} eps = {eps}; "
            + (
                f"stochastic model: EOT over {self.eot_iter} passes, accuracies over {self.repeats} runs (mean ± std)"
                if self.stochastic
                else "deterministic model"
            ),
            "",
            f"Attack gradients: {self.gradients}; model inside the attacks: fp32"
            + ("" if self.levers == "none" else f", {self.levers}") + ".",
            "",
            "| attack | robust acc | success rate | conf. adv | norm (fooled) | ms / image |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| clean | {self.clean_accuracy} | | {self.confidence_clean:.2f} | | |",
        ]
        for name, r in self.attacks.items():
            lines.append(f"| {name} | {r.robust_accuracy} | {100 * r.success_rate:.1f}% | {r.confidence_adv:.2f} | "
                         f"{r.perturbation_norm:.4f} | {1000 * r.seconds_per_image:.2f} |")
        lines += [
            "",
            f"**Worst case** (robust only if every attack failed): {self.worst_case}; "
            f"robustness gap {100 * self.robustness_gap:.1f} points; attacks cost {self.overhead:.0f}x a clean pass.",
        ]
        if self.certified is not None and self.certified.get("broken"):
            lines += ["", f"**Certified** ({self.certified['method'].upper()} bounds): INVALID - attacks fooled "
                          f"{len(self.certified['broken'])} certified samples ({self.certified['broken'][:20]}); "
                          "no certified figure is reported."]
        elif self.certified is not None:
            lines += ["", f"**Certified** ({self.certified['method'].upper()} bounds; no attack within eps can go "
                          f"below it): {100 * self.certified['accuracy']:.1f}%."]
        if self.autoattack is not None:
            lines += ["", AutoAttackReport.from_dict(self.autoattack).to_markdown()]
        if self.corruptions is not None:
            lines += ["", "Natural corruptions (CIFAR-10-C severities):", "", self.corruption_report().to_markdown()]
        if self.checks:
            lines += ["", "| gradient-masking check | result | detail |", "| --- | --- | --- |"]
            lines += [f"| {c.name} | {c.status} | {c.detail} |" for c in self.checks]
        return "\n".join(lines)

    def corruption_report(self):
        data = {k: v for k, v in self.corruptions.items() if k != "mean_accuracy"}
        return CorruptionReport(**{**data, "severities": tuple(data["severities"])})

    def to_json(self, path=None) -> str:
        text = json.dumps(asdict(self), indent=1)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, text: str) -> RobustnessReport:
        data = json.loads(text)
        data["clean_accuracy"], data["worst_case"] = Stat(**data["clean_accuracy"]), Stat(**data["worst_case"])
        data["attacks"] = {k: AttackResult(**{**v, "robust_accuracy": Stat(**v["robust_accuracy"])})
                           for k, v in data["attacks"].items()}
        data["checks"] = [Check(**c) for c in data["checks"]]
        return cls(**data)

    def plot(self, path) -> list[str]:
        """Write PNGs: ``<path>/curves.png`` (accuracy vs eps per attack), ``histogram.png``
        (max-softmax of all vs correctly classified inputs) and ``examples.png`` (adversarial
        examples: green still correct, red fooled, grey wrong before the attack). Returns the files
        written."""
        import os

        from .plots import write_plots

        written = write_plots(self, path)
        if self.corruptions is not None:
            written.append(self.corruption_report().plot(os.path.join(path, "corruptions.png")))
        return written
