"""Honest robustness evaluation: :func:`evaluate` -> :class:`RobustnessReport` (Markdown, JSON, plots)."""

from .evaluate import evaluate, is_stochastic
from .report import AttackResult, Check, RobustnessReport, Stat
from .suite import ATTACKS, make_attack

__all__ = ["ATTACKS", "AttackResult", "Check", "RobustnessReport", "Stat", "evaluate", "is_stochastic", "make_attack"]
