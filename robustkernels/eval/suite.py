"""The attacks :func:`evaluate` runs, by name, at a given eps (one place for their settings)."""

from __future__ import annotations

from ..attacks import APGD, CW, FGSM, PGD, Square

ATTACKS = ("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr", "square")
WHITE_BOX = ("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr")
STEP_KEYS = ("pgd", "cw", "apgd", "square")  # the attack lengths evaluate(steps=...) may set


def make_attack(name: str, model, *, eps: float, norm: str, eot_iter: int, generator, steps: dict | None = None,
                restarts: int = 1, **threat):
    """``fgsm``; ``pgd`` (20 steps of 2.5 eps / 20, Madry et al.'s ratio); ``cw`` (Linf: PGD on
    the CW margin loss, the "CW-inf" of the robustness literature; L2: Carlini-Wagner, a success
    counts only within eps);
    ``apgd-ce`` / ``apgd-dlr`` (100 steps); ``square`` (1000 queries, Linf). ``restarts`` applies
    to the PGD-based attacks and APGD."""
    steps = steps or {}
    common = dict(norm=norm, eot_iter=eot_iter, generator=generator, early_stop=True, **threat)
    if name == "fgsm":
        return FGSM(model, eps=eps, restarts=restarts, **common)
    if name == "pgd":
        n = steps.get("pgd", 20)
        return PGD(model, eps=eps, alpha=eps * 2.5 / n, steps=n, restarts=restarts, **common)
    if name == "cw":
        if norm == "l2":
            common.pop("norm")
            common.pop("early_stop")
            return CW(model, steps=steps.get("cw", 100), **common)
        n = steps.get("cw", 30)
        return PGD(model, eps=eps, alpha=eps * 2.5 / n, steps=n, loss="margin", restarts=restarts, **common)
    if name in ("apgd-ce", "apgd-dlr"):
        return APGD(model, eps=eps, steps=steps.get("apgd", 100), loss=name.split("-")[1], restarts=restarts, **common)
    if name == "square":
        common.pop("early_stop")
        return Square(model, eps=eps, n_queries=steps.get("square", 1000), **common)
    raise ValueError(f"attacks: unknown attack {name!r}; choose among {ATTACKS}")
