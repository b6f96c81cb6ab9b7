"""The gradient-masking checks of :func:`~robustkernels.eval.evaluate` (Carlini et al. 2019), on
the first ``check_samples`` samples: accuracy-vs-eps curves, iterative at least as strong as
single-step, an unbounded eps driving accuracy to ~0, the gradient-free Square attack not
beating the white-box worst case, EOT on vs off, and - through BPDA - the naive-versus-BPDA gap."""

from __future__ import annotations

import torch

from ..attacks import PGD
from ..threat import channel_bounds, default_step
from .checks import (
    eot_helps,
    gradient_free_not_stronger,
    iterative_vs_single_step,
    monotone_in_eps,
    naive_vs_bpda,
    transfer_not_stronger,
    unbounded_eps,
)
from .runner import EvalRunner
from .suite import WHITE_BOX


def accuracy(runner: EvalRunner, attack, x, y, clean, desc) -> float:
    """Robust accuracy on (x, y): correct clean (the mask ``clean``) and after ``attack``."""
    x_adv, _ = runner.attack(attack, x, y, desc)
    return float((clean & (runner.predict(x_adv)[0] == y)).float().mean())


def _curves(runner: EvalRunner, names, eps, x, y, clean, robust_subset, curve_eps) -> dict:
    curves, clean_acc = {}, float(clean.float().mean())
    for name in (n for n in names if n != "transfer"):  # transfer examples come from the surrogate
        curves[name] = {"0": clean_acc}
        for m in curve_eps:
            curves[name][f"{m * eps:.6g}"] = (
                float(robust_subset[name].float().mean()) if m == 1.0
                else accuracy(runner, runner.build(name, m * eps), x, y, clean, f"{name} @ {m:g} eps"))
    return curves


def measure_checks(runner: EvalRunner, names, x, y, clean, robust_subset, curve_eps, stochastic: bool) -> dict:
    """What the masking checks compare, measured with the model on the subset (x, y) whose
    clean predictions are the evaluation's first pass (``clean``) and whose verdicts under the
    crafted attacks ``names`` are ``robust_subset``: JSON values, judged by :func:`judge_checks`
    (a shard measures them, a merge judges)."""
    eps, norm = runner.threat.eps, runner.threat.norm
    curves = _curves(runner, names, eps, x, y, clean, robust_subset, curve_eps)
    lo, hi = channel_bounds(runner.threat.bounds, x)
    span = float((hi - lo).max())
    unbounded = span if norm == "linf" else span * x[0].numel() ** 0.5
    big = PGD(runner.attacked, eps=unbounded, alpha=unbounded / 10, steps=50, eot_iter=runner.eot,
              generator=runner.generator, **runner.threat.space_kwargs())  # plain PGD with large steps
    white_box = [n for n in robust_subset if n in WHITE_BOX]
    out = {"curves": curves, "unbounded": accuracy(runner, big, x, y, clean, "unbounded eps"),
           "worst_white_box": float(torch.stack([robust_subset[n] for n in white_box]).all(dim=0).float().mean())
           if white_box else 1.0, "square": None, "eot": None, "transfer": None}
    if x.dim() == 4:  # Square: images, Linf or L2
        out["square"] = (float(robust_subset["square"].float().mean()) if "square" in robust_subset
                         else accuracy(runner, runner.build("square", eps), x, y, clean, "square"))
        curves.setdefault("square", {"0": float(clean.float().mean()), f"{eps:.6g}": out["square"]})
    if stochastic and runner.eot > 1:
        acc_eot = float(robust_subset["pgd"].float().mean()) if "pgd" in robust_subset else accuracy(
            runner, runner.build("pgd", eps), x, y, clean, "pgd (EOT)")
        out["eot"] = [acc_eot, accuracy(runner, runner.build("pgd", eps, eot=1), x, y, clean, "pgd (no EOT)")]
    if "transfer" in robust_subset:
        out["transfer"] = float(robust_subset["transfer"].float().mean())
    return out


def judge_checks(report, measured: dict, tol) -> None:
    """The masking checks from :func:`measure_checks`' figures and the report's accuracies over
    all the data: the curves into ``report.curves``, the verdicts appended to ``report.checks``."""
    report.curves.update(measured["curves"])
    acc = {n: r.robust_accuracy.mean for n, r in report.attacks.items()}
    report.checks.append(iterative_vs_single_step(acc.get("pgd", acc.get("apgd-ce")), acc.get("fgsm"), tol))
    iterative = next((n for n in ("pgd", "apgd-ce", "apgd-dlr", "cw") if n in report.curves), None)
    report.checks.append(monotone_in_eps({float(e): a for e, a in report.curves.get(iterative, {}).items()}, tol))
    report.checks.append(unbounded_eps(measured["unbounded"]))
    report.checks.append(gradient_free_not_stronger(measured["square"], measured["worst_white_box"], tol))
    acc_eot, acc_no_eot = measured["eot"] or (None, None)
    report.checks.append(eot_helps(report.stochastic, acc_eot, acc_no_eot, report.eot_iter, tol))
    if measured["transfer"] is not None:
        report.checks.append(transfer_not_stronger(measured["transfer"], measured["worst_white_box"], tol))
    if measured.get("naive") is not None:
        naive, through, fronts = measured["naive"]
        report.checks.append(naive_vs_bpda(naive, through, fronts, tol))


def naive_gap(runner: EvalRunner, model, fronts, x, y, clean) -> list:
    """PGD on the model's own gradients against PGD through BPDA, on the check subset: [naive
    accuracy, BPDA accuracy, the front-ends], judged by :func:`judge_checks`."""
    eps, kwargs = runner.threat.eps, dict(steps=20, eot_iter=runner.eot, generator=runner.generator,
                                       **runner.threat.space_kwargs())
    naive = PGD(model, eps=eps, alpha=default_step(eps, 20), **kwargs)
    through = PGD(runner.attacked, eps=eps, alpha=default_step(eps, 20), **kwargs)
    return [accuracy(runner, naive, x, y, clean, "pgd (naive)"), accuracy(runner, through, x, y, clean, "pgd (BPDA)"),
            list(fronts)]
