"""Honest robustness evaluation: :func:`evaluate` -> :class:`RobustnessReport` (Markdown, JSON,
plots) and :func:`autoattack` -> :class:`AutoAttackReport` (the field's standard number)."""

from .autoattack import VERSIONS, AutoAttackReport, autoattack
from .evaluate import evaluate
from .probe import is_stochastic
from .report import AttackResult, Check, RobustnessReport, Stat
from .suite import ATTACKS, make_attack

__all__ = ["ATTACKS", "VERSIONS", "AttackResult", "AutoAttackReport", "Check", "RobustnessReport", "Stat", "autoattack",
           "evaluate", "is_stochastic", "make_attack"]
