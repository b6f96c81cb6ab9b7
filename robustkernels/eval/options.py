"""Everything :func:`~robustkernels.eval.evaluate` takes besides the model and the data, checked
once: :class:`EvalOptions` and :func:`check_eval_options` (as ``FitOptions`` serves ``fit``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from ..attacks.base import finite_eps
from ..certify import bound_method
from ..common import flag, is_number, non_negative, non_negative_int, positive_int
from ..levers import check_autocast, check_lever
from ..threat import check_norm
from .aa_options import AutoAttackOptions, checked_shard
from .suite import ATTACKS, LINF_ONLY, STEP_KEYS

SUITES = ("default", "autoattack")
NORMS = ("linf", "l2")  # evaluate's threat models (L1: autoattack(norm="l1"))


@dataclass
class EvalOptions:
    """Everything :func:`~robustkernels.eval.evaluate` takes besides the model and the data (each
    field is documented there); ``evaluate(model, data, options=EvalOptions(eps=8/255, ...))`` or
    the same fields as keywords."""

    eps: float
    norm: str = "linf"
    attacks: tuple = ("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr")
    eot_iter: int | str = "auto"
    restarts: int = 1
    batch_size: int = 256
    generator: torch.Generator | None = None
    repeats: int | str = "auto"
    checks: bool = True
    check_samples: int = 200
    curve_eps: tuple = (0.25, 0.5, 1.0, 1.5, 2.0)
    tolerance: float = 0.03
    steps: dict | None = None
    bounds: tuple = (0.0, 1.0)
    normalization: tuple | None = None
    examples: int = 16
    title: str = ""
    progress: bool = True
    suite: str = "default"
    autoattack: AutoAttackOptions = field(default_factory=AutoAttackOptions)  # with suite="autoattack"
    autocast: str | None = "auto"
    channels_last: bool | str = "auto"
    compile: bool | str = False
    bpda: bool | str = "auto"
    surrogate: nn.Module | None = None
    corruptions: tuple | str = ()
    certify: str | None = None
    shard: tuple | None = None  # (K, N): this run is shard K of N (evaluate's docstring)
    state_path: str | None = None  # a shard's state file
    resume: bool = False  # continue a killed shard from its state file


def _check_steps(steps) -> dict:
    if steps is None:
        return {}
    if not isinstance(steps, dict):
        raise TypeError(f"steps must be a dict like {{'pgd': 50}}, got {type(steps).__name__}")
    unknown = sorted(set(steps) - set(STEP_KEYS))
    if unknown:
        raise ValueError(f"steps: unknown keys {unknown}; choose among {STEP_KEYS}")
    return {k: positive_int(f"steps[{k!r}]", v) for k, v in steps.items()}


# what evaluate gives AutoAttack from its own options (one setting for both)
SHARED_WITH_AUTOATTACK = ("autocast", "channels_last", "compile", "progress", "batch_size")


def _check_autoattack(aa) -> None:
    if not isinstance(aa, AutoAttackOptions):
        raise TypeError(f"autoattack must be an AutoAttackOptions, got {type(aa).__name__}")
    defaults = AutoAttackOptions()
    shared = [f.name for f in fields(aa) if f.name in SHARED_WITH_AUTOATTACK
              and getattr(aa, f.name) != getattr(defaults, f.name)]
    if shared:
        raise ValueError(f"autoattack: set {', '.join(shared)} on evaluate(...) itself, which gives "
                         f"{'it' if len(shared) == 1 else 'them'} to AutoAttack too")
    if aa.shard is not None:
        raise ValueError("autoattack: set shard= on evaluate(...) itself, which shards its AutoAttack part with "
                         "the rest")


def _check_report_options(o: EvalOptions) -> None:
    """The report's own options: examples, the checks' eps curve and tolerance, the flags, the title."""
    o.examples = non_negative_int("examples", o.examples, " (adversarial examples kept for the report)")
    curve = o.curve_eps
    if isinstance(curve, (str, bytes)) or not isinstance(curve, (tuple, list)) or not curve or not all(
            is_number(m) and m > 0 for m in curve):
        raise ValueError(f"curve_eps must be a sequence of multiples of eps > 0, e.g. (0.5, 1.0, 2.0), got {curve!r}")
    o.curve_eps = tuple(float(m) for m in curve)
    o.tolerance = non_negative("tolerance", o.tolerance)
    o.checks, o.progress = flag("checks", o.checks), flag("progress", o.progress)
    if not isinstance(o.title, str):
        raise TypeError(f"title must be a str, got {type(o.title).__name__}")


def _check_shard(o: EvalOptions) -> None:
    """A shard: (K, N), its state file, and nothing that streams across batches."""
    if not isinstance(o.resume, bool):
        raise TypeError(f"resume must be True or False, got {o.resume!r}")
    if o.shard is None:
        if o.state_path is not None or o.resume:
            raise ValueError("state_path / resume keep a shard's values: pass shard=(K, N) too (a whole run that can "
                             "resume is shard=(0, 1))")
        return
    o.shard = checked_shard(o.shard)
    if o.state_path is None:
        raise ValueError("shard= keeps the shard's values for the merge: pass state_path= (a file path) too")
    if not isinstance(o.state_path, (str, os.PathLike)):
        raise TypeError(f"state_path must be a file path, got {type(o.state_path).__name__}")
    o.state_path = os.fspath(o.state_path)
    if o.corruptions:
        raise ValueError("corruptions: not with shard= (their noise streams across the batches); run "
                         "robustkernels.eval.corruption_accuracy on the whole data instead")
    if o.autoattack.state_path is not None:
        raise ValueError("autoattack: leave state_path out with shard=: a shard keeps AutoAttack's state beside its "
                         "own (state_path + '.autoattack.json')")


def check_eval_options(model: nn.Module, o: EvalOptions) -> EvalOptions:
    """``o`` validated (a ValueError / TypeError naming the argument), normalised in place."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if o.surrogate is not None and not isinstance(o.surrogate, nn.Module):
        raise TypeError(f"surrogate must be an nn.Module (another model of the same task), got "
                        f"{type(o.surrogate).__name__}")
    if o.surrogate is model:
        raise ValueError("surrogate must be another model of the same task, not the evaluated model itself")
    _check_report_options(o)
    if o.suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {o.suite!r}")
    check_norm(o.norm, NORMS, "evaluate (L1: robustkernels.eval.autoattack(norm='l1'))")
    o.eps = non_negative("eps", o.eps)
    finite_eps(o.eps, "evaluate", "its attacks' steps are derived from eps")
    o.attacks = (o.attacks,) if isinstance(o.attacks, str) else tuple(o.attacks)
    unknown = [a for a in o.attacks if a not in ATTACKS]
    if unknown or not o.attacks:
        raise ValueError(f"attacks must be a non-empty selection of {ATTACKS}, got {list(o.attacks)}")
    o.batch_size, o.restarts = positive_int("batch_size", o.batch_size), positive_int("restarts", o.restarts)
    o.check_samples = positive_int("check_samples", o.check_samples)
    for name in ("eot_iter", "repeats"):
        if getattr(o, name) != "auto":
            setattr(o, name, positive_int(name, getattr(o, name)))
    o.steps = _check_steps(o.steps)
    linf_only = [a for a in o.attacks if a in LINF_ONLY]
    if linf_only and o.norm != "linf":
        raise ValueError(f"attacks: {' and '.join(linf_only)} need{'s' * (len(linf_only) == 1)} norm='linf', "
                         f"got {o.norm!r}")
    if "md" in o.attacks and o.steps.get("md", 2) < 2:
        raise ValueError("attacks: md needs steps['md'] >= 2 (its two stages)")
    check_lever("channels_last", o.channels_last)
    check_lever("compile", o.compile)
    check_autocast(o.autocast)
    _check_autoattack(o.autoattack)
    _check_shard(o)
    if o.suite != "autoattack" and o.autoattack != AutoAttackOptions():
        raise ValueError("autoattack= sets the AutoAttack part, which runs with suite='autoattack' only: pass that too")
    if o.certify is not None:
        bound_method("certify", o.certify)
        if o.norm != "linf":
            raise ValueError(f"certify needs norm='linf' (bounds over the Linf box), got norm={o.norm!r}")
    return o
