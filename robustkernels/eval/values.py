"""The value types of every evaluation report (a leaf module: it imports nothing of ours)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stat:
    """Mean and standard deviation over repeated evaluation passes (std 0 for one pass)."""

    mean: float
    std: float = 0.0
    runs: int = 1

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f}%" + (f" ± {100 * self.std:.1f}" if self.runs > 1 else "")

    @classmethod
    def of(cls, per_run) -> Stat:
        """Mean and spread of per-run accuracies (a [R] tensor)."""
        runs = len(per_run)
        return cls(float(per_run.mean()), float(per_run.std()) if runs > 1 else 0.0, runs)


@dataclass
class AttackResult:
    """One attack's figures: robust accuracy (mean ± std over passes), success rate among the
    clean-correct samples, confidence on the adversarial inputs, mean perturbation of the fooled
    samples (threat model's norm), seconds per image."""

    robust_accuracy: Stat
    success_rate: float  # fooled / clean-correct
    confidence_adv: float  # mean max-softmax on the adversarial inputs
    perturbation_norm: float  # mean ||x_adv - x|| (threat model's norm) over the fooled samples
    seconds_per_image: float


@dataclass
class Check:
    """One sanity check of an evaluation: its name, ``status`` (pass / warn / fail / n/a) and what
    it measured."""

    name: str
    status: str  # "pass" | "warn" | "fail" | "n/a"
    detail: str
