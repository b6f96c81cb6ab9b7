"""Every attack by name, in one place: :func:`make_attack` (the settings :func:`evaluate` runs) and
:func:`autoattack_attack` (a stage of an AutoAttack version, at its settings)."""

from __future__ import annotations

from torch import nn

from ..attacks import APGD, APGDT, CW, FAB, FGSM, MD, PGD, SmoothedPGD, Square
from ..threat import ThreatModel, default_step
from .aa_versions import Stage, version_for

_SMOOTHED = version_for("fast", "linf").stages[-1]  # fast's last stage in Linf: evaluate's smoothed-pgd

ATTACKS = ("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr", "md", "smoothed-pgd", "square")
WHITE_BOX = ("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr", "md", "smoothed-pgd")
LINF_ONLY = ("md", "smoothed-pgd")  # their classes' NORMS: signed steps in the Linf ball
# the attack lengths evaluate(steps=...) may set
STEP_KEYS = ("pgd", "cw", "apgd", "md", "smoothed-pgd", "square")


def make_attack(name: str, model, *, eps: float, norm: str, eot_iter: int, generator, steps: dict | None = None,
                restarts: int = 1, **threat):
    """``fgsm``; ``pgd`` (20 steps of 2.5 eps / 20, Madry et al.'s ratio); ``cw`` (Linf: PGD on
    the CW margin loss, the "CW-inf" of the robustness literature; L2: Carlini-Wagner, a success
    counts only within eps);
    ``apgd-ce`` / ``apgd-dlr`` (100 steps); ``md`` (Linf: the original's 50 steps, the change
    at half, both terms); ``smoothed-pgd`` (Linf: fast's last stage, 25 margin steps, the
    gradient averaged over 2 Gaussian draws); ``square`` (1000 queries, Linf). ``restarts``
    applies to the PGD-based attacks, APGD, MD and smoothed PGD."""
    steps = steps or {}
    common = dict(norm=norm, eot_iter=eot_iter, generator=generator, early_stop=True, **threat)
    if name == "fgsm":
        return FGSM(model, eps=eps, restarts=restarts, **common)
    if name == "pgd":
        n = steps.get("pgd", 20)
        return PGD(model, eps=eps, alpha=default_step(eps, n), steps=n, restarts=restarts, **common)
    if name == "cw":
        if norm == "l2":
            common.pop("norm")
            common.pop("early_stop")
            return CW(model, steps=steps.get("cw", 100), **common)
        n = steps.get("cw", 30)
        return PGD(model, eps=eps, alpha=default_step(eps, n), steps=n, loss="margin", restarts=restarts, **common)
    if name in ("apgd-ce", "apgd-dlr"):
        return APGD(model, eps=eps, steps=steps.get("apgd", 100), loss=name.split("-")[1], restarts=restarts, **common)
    if name == "md":
        n = steps.get("md", 50)
        return MD(model, eps=eps, steps=n, change_point=max(n // 2, 1), restarts=restarts, **common)
    if name == "smoothed-pgd":
        return SmoothedPGD(model, eps=eps, steps=steps.get("smoothed-pgd", _SMOOTHED.steps), draws=_SMOOTHED.draws,
                           restarts=restarts, **common)
    if name == "square":
        common.pop("early_stop")
        return Square(model, eps=eps, n_queries=steps.get("square", 1000), **common)
    raise ValueError(f"attacks: unknown attack {name!r}; choose among {ATTACKS}")


def autoattack_attack(stage: Stage, model: nn.Module, threat: ThreatModel, *, generator, eot_iter: int = 1,
                      steps: int = 100, n_queries: int = 5000, n_target_classes: int = 9, autocast=None, **options):
    """One stage of an AutoAttack version (:mod:`~robustkernels.eval.aa_versions`), on our
    contract (early_stop on); its caps applied to the run's ``steps``, ``n_queries`` and
    ``n_target_classes``. ``autocast`` reaches the gradient attacks (APGD, smoothed PGD) only:
    FAB's linearisation (logit differences and the hyperplane) and Square's accept/reject on
    margins need fp32 values, and measured, bf16 made Square weaker (MNIST: 37.0% against 35.0%)
    and FAB no faster (its success checks are fp32). ``options``: active_set, eot_batched."""
    common = dict(eps=threat.eps, norm=threat.norm, bounds=threat.bounds, normalization=threat.normalization,
                  generator=generator, early_stop=True, **options)
    stage = stage.capped(steps, n_queries, n_target_classes)
    gradient = dict(steps=stage.steps, eot_iter=eot_iter, autocast=autocast, **common)
    if stage.name == "smoothed-pgd":
        return SmoothedPGD(model, draws=stage.draws, restarts=stage.restarts, **gradient)
    if stage.name in ("apgd-ce", "apgd-dlr"):
        return APGD(model, loss=stage.name.split("-")[1], restarts=stage.restarts, use_largereps=stage.largereps,
                    **gradient)
    if stage.name == "apgd-t":
        return APGDT(model, n_target_classes=stage.targets, first_target_steps=stage.first_target_steps,
                     use_largereps=stage.largereps, **gradient)
    if stage.name in ("fab", "fab-t"):
        common.pop("eot_batched", None)
        return FAB(model, steps=stage.steps, targeted=stage.name == "fab-t", restarts=stage.restarts,
                   n_target_classes=stage.targets, **common)
    if stage.name == "square":
        return Square(model, n_queries=stage.queries, p_init=0.8, eot_iter=eot_iter, **common)
    raise ValueError(f"attack {stage.name!r} is not part of AutoAttack")
