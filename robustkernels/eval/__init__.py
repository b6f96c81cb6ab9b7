"""Honest robustness evaluation: :func:`evaluate` -> :class:`RobustnessReport` (Markdown, JSON,
plots) and :func:`autoattack` -> :class:`AutoAttackReport` (the field's standard number)."""

from ..certify import CertifiedReport, certified_accuracy
from .aa_merge import merge_shards
from .autoattack import VERSIONS, AutoAttackOptions, AutoAttackReport, AutoAttackRun, autoattack
from .corruptions import CORRUPTIONS, CorruptionReport, corruption_accuracy
from .eval_state import merge_eval_shards
from .evaluate import evaluate
from .options import EvalOptions
from .probe import check_version_classes, is_stochastic
from .report import AttackResult, Check, RobustnessReport, Stat
from .suite import ATTACKS, make_attack

__all__ = ["ATTACKS", "CORRUPTIONS", "VERSIONS", "AttackResult", "AutoAttackOptions", "AutoAttackReport",
           "AutoAttackRun", "CertifiedReport", "Check", "CorruptionReport", "EvalOptions", "RobustnessReport", "Stat",
           "autoattack", "certified_accuracy", "check_version_classes", "corruption_accuracy", "evaluate",
           "is_stochastic", "make_attack", "merge_eval_shards", "merge_shards"]
