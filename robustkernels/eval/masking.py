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


def _curves(report, runner: EvalRunner, x, y, clean, robust_subset, curve_eps) -> None:
    eps, clean_acc = report.eps, float(clean.float().mean())
    for name in (n for n in report.attacks if n != "transfer"):  # transfer examples come from the surrogate
        report.curves[name] = {"0": clean_acc}
        for m in curve_eps:
            report.curves[name][f"{m * eps:.6g}"] = (
                float(robust_subset[name].float().mean()) if m == 1.0
                else accuracy(runner, runner.build(name, m * eps), x, y, clean, f"{name} @ {m:g} eps"))


def run_checks(report, runner: EvalRunner, x, y, clean, robust_subset, curve_eps, tol) -> None:
    """The curves and the masking checks on the subset (x, y), whose clean predictions are the
    evaluation's first pass (``clean``); appended to ``report``."""
    eps, norm = report.eps, report.norm
    _curves(report, runner, x, y, clean, robust_subset, curve_eps)
    acc = {n: r.robust_accuracy.mean for n, r in report.attacks.items()}
    report.checks.append(iterative_vs_single_step(acc.get("pgd", acc.get("apgd-ce")), acc.get("fgsm"), tol))
    iterative = next((n for n in ("pgd", "apgd-ce", "apgd-dlr", "cw") if n in report.curves), None)
    report.checks.append(monotone_in_eps({float(e): a for e, a in report.curves.get(iterative, {}).items()}, tol))
    lo, hi = channel_bounds(runner.threat.bounds, x)
    span = float((hi - lo).max())
    unbounded = span if norm == "linf" else span * x[0].numel() ** 0.5
    big = PGD(runner.attacked, eps=unbounded, alpha=unbounded / 10, steps=50, eot_iter=report.eot_iter,
              generator=runner.generator, **runner.threat.space_kwargs())  # plain PGD with large steps
    report.checks.append(unbounded_eps(accuracy(runner, big, x, y, clean, "unbounded eps")))
    white_box = [n for n in robust_subset if n in WHITE_BOX]
    worst_wb = float(torch.stack([robust_subset[n] for n in white_box]).all(dim=0).float().mean()) if white_box else 1.0
    square = None
    if x.dim() == 4:  # Square: images, Linf or L2
        square = (float(robust_subset["square"].float().mean()) if "square" in robust_subset
                  else accuracy(runner, runner.build("square", eps), x, y, clean, "square"))
        report.curves.setdefault("square", {"0": float(clean.float().mean()), f"{eps:.6g}": square})
    report.checks.append(gradient_free_not_stronger(square, worst_wb, tol))
    acc_eot = acc_no_eot = None
    if report.stochastic and report.eot_iter > 1:
        acc_eot = float(robust_subset["pgd"].float().mean()) if "pgd" in robust_subset else accuracy(
            runner, runner.build("pgd", eps), x, y, clean, "pgd (EOT)")
        acc_no_eot = accuracy(runner, runner.build("pgd", eps, eot=1), x, y, clean, "pgd (no EOT)")
    report.checks.append(eot_helps(report.stochastic, acc_eot, acc_no_eot, report.eot_iter, tol))
    if "transfer" in robust_subset:
        report.checks.append(transfer_not_stronger(float(robust_subset["transfer"].float().mean()), worst_wb, tol))


def naive_gap(runner: EvalRunner, model, fronts, x, y, clean, tol):
    """PGD on the model's own gradients against PGD through BPDA, on the check subset."""
    eps, kwargs = runner.threat.eps, dict(steps=20, eot_iter=runner.eot, generator=runner.generator,
                                       **runner.threat.space_kwargs())
    naive = PGD(model, eps=eps, alpha=default_step(eps, 20), **kwargs)
    through = PGD(runner.attacked, eps=eps, alpha=default_step(eps, 20), **kwargs)
    return naive_vs_bpda(accuracy(runner, naive, x, y, clean, "pgd (naive)"),
                           accuracy(runner, through, x, y, clean, "pgd (BPDA)"), fronts, tol)
