"""``evaluate(model, data, eps=...)``: every attack on every sample, EOT for stochastic models,
worst-case accuracy, the gradient-masking checks and the figures for the plots."""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from ..attacks import PGD
from ..certify import bound_method, certified_accuracy, model_steps
from ..data import batches, check_label_range
from ..defences import with_bpda
from ..ops._random import draw_seed
from ..progress import progress_bar
from ..threat import (
    channel_bounds,
    check_norm,
    frozen_model,
    lp_norms,
    non_negative,
    normalize,
    positive_int,
)
from . import checks as C
from .autoattack import ATTACKS as AUTOATTACK_ATTACKS
from .autoattack import autoattack
from .corruptions import CORRUPTIONS, corruption_accuracy
from .probe import check_classes_for, checked_logits, gradient_masked, probe
from .report import AttackResult, Check, RobustnessReport, Stat
from .suite import ATTACKS, STEP_KEYS, WHITE_BOX, make_attack

AUTO_EOT, AUTO_REPEATS = 20, 5  # EOT-20 as AutoAttack's "rand" version
SUITES = ("default", "autoattack")


def _gather(data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole of ``data`` (tensors, Dataset or DataLoader) as one (x, y) pair: the checks and
    plots need every sample's clean and attacked predictions side by side."""
    parts = [(x, y) for x, y, _ in batches(data, batch_size)]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def _check_steps(steps) -> dict:
    if steps is None:
        return {}
    if not isinstance(steps, dict):
        raise TypeError(f"steps must be a dict like {{'pgd': 50}}, got {type(steps).__name__}")
    unknown = sorted(set(steps) - set(STEP_KEYS))
    if unknown:
        raise ValueError(f"steps: unknown keys {unknown}; choose among {STEP_KEYS}")
    return {k: positive_int(f"steps[{k!r}]", v) for k, v in steps.items()}


class _Runner:
    """Batched forward passes and attacks over (x, y) on the model's device."""

    def __init__(self, model, x, y, batch_size, device, threat, progress, generator):
        self.model, self.x, self.y, self.bs, self.device, self.threat = model, x, y, batch_size, device, threat
        self.progress, self.generator = progress, generator

    def forward(self, x):
        return self.model(normalize(x, self.threat.get("normalization")))

    def fresh_noise(self) -> None:
        """Reseed the global RNG (LWTA / PNI noise) from the evaluation's generator: each pass
        draws new noise; the attacks restore the RNG on exit, which would replay their draws."""
        torch.manual_seed(draw_seed(self.generator))

    def predict(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted labels, max softmax) for every row of x, eval mode."""
        self.fresh_noise()
        labels, probs = [], []
        with frozen_model(self.model, "eval"), torch.no_grad():
            for xb in x.split(self.bs):
                p = checked_logits(self.forward(xb.to(self.device)), len(xb)).float().softmax(dim=1)
                conf, pred = p.max(dim=1)
                labels.append(pred.cpu())
                probs.append(conf.cpu())
        return torch.cat(labels), torch.cat(probs)

    def attack(self, attack, x, y, desc) -> tuple[torch.Tensor, float]:
        out, tic = [], time.perf_counter()
        batches = list(zip(x.split(self.bs), y.split(self.bs)))
        for xb, yb in progress_bar(batches, desc=desc, enabled=self.progress, leave=False):
            self.fresh_noise()
            out.append(attack(xb.to(self.device), yb.to(self.device)).cpu())
        return torch.cat(out), time.perf_counter() - tic


def _stat(per_run: torch.Tensor) -> Stat:
    """Mean and spread of per-run accuracies [R]."""
    runs = len(per_run)
    return Stat(float(per_run.mean()), float(per_run.std()) if runs > 1 else 0.0, runs)


def evaluate(model: nn.Module, data, *, eps: float, norm: str = "linf",
             attacks=("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr"), eot_iter="auto", restarts: int = 1,
             batch_size: int = 256, generator: torch.Generator | None = None, repeats="auto", checks: bool = True,
             check_samples: int = 200, curve_eps=(0.25, 0.5, 1.0, 1.5, 2.0), tolerance: float = 0.03,
             steps: dict | None = None, bounds=(0.0, 1.0), normalization=None, examples: int = 16,
             title: str = "", progress: bool = True, suite: str = "default", version: str = "auto",
             autocast: str | None = None, bpda="auto", surrogate: nn.Module | None = None,
             corruptions=(), certify: str | None = None) -> RobustnessReport:
    """Evaluate ``model`` against ``attacks`` within the ``norm`` ball of radius ``eps``.

    Args:
        data: a DataLoader of ``(x, y)`` batches or a pair of tensors; x in ``bounds``.
        attacks: names among ``fgsm, pgd, cw, apgd-ce, apgd-dlr, square``.
        eot_iter: gradient/prediction averaging passes per attack step; ``"auto"``: 20 if the
            model is stochastic (two forward passes differ), else 1.
        repeats: evaluation passes over the adversarial inputs whose accuracies give mean and
            spread; ``"auto"``: 5 for stochastic models, else 1.
        checks: run the gradient-masking checks and the eps curves on the first
            ``check_samples`` samples; ``curve_eps`` are multiples of ``eps``.
        steps: override attack lengths, e.g. ``{"pgd": 50, "apgd": 100, "cw": 30, "square": 1000}``.
        suite: ``"autoattack"`` also runs :func:`~robustkernels.eval.autoattack` (``version``:
            standard | plus | rand | auto) on the same data; its log is part of the report and
            its verdicts part of the worst case.
        autocast: ``"bf16"``/``"fp16"`` for the model inside AutoAttack's attacks (fp32 verdicts).
        bpda: ``"auto"``: if the input gradient through the model is missing or zero, attack
            through every non-differentiable :class:`~robustkernels.defences.Preprocessing`
            front-end with BPDA (identity backward; the forward is unchanged), and report the
            naive-versus-BPDA gap among the checks; if the gradient is there but the masking
            checks fail and such a front-end exists, evaluate again through BPDA and report
            that; ``True`` always, ``False`` never.
        surrogate: another model of the same task: PGD examples crafted on it (white-box on the
            surrogate, never touching ``model``) are tried on ``model`` as the ``"transfer"``
            attack, part of the worst case; a check warns if they beat the white-box attacks.
        corruptions: names from :data:`~robustkernels.eval.corruptions.CORRUPTIONS` (or ``"all"``):
            accuracy under each at the five CIFAR-10-C severities joins the report (a table,
            and ``corruptions.png`` among the plots).
        certify: ``"ibp"`` or ``"crown-ibp"``: the certified accuracy from those bounds
            (:func:`~robustkernels.eval.certified_accuracy`; deterministic models, Linf, no
            ``normalization``) joins the report beside the empirical figures, with a check that
            no certified sample fell to an attack.

    The model's modes, ``requires_grad`` flags and the global RNG are restored; nothing of the
    caller's is modified. A sample is robust to an attack if it is classified correctly both
    clean and attacked; worst case: robust to every attack.
    """
    arguments = dict(locals())  # for the BPDA rerun when the masking checks fail
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if surrogate is not None and (not isinstance(surrogate, nn.Module) or surrogate is model):
        raise TypeError("surrogate must be another nn.Module (a model of the same task), not the model itself")
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    check_norm(norm)
    eps = non_negative("eps", eps)
    attacks = (attacks,) if isinstance(attacks, str) else tuple(attacks)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"attacks must be a non-empty selection of {ATTACKS}, got {list(attacks)}")
    batch_size, restarts = positive_int("batch_size", batch_size), positive_int("restarts", restarts)
    check_samples = positive_int("check_samples", check_samples)
    if eot_iter != "auto":
        positive_int("eot_iter", eot_iter)
    if repeats != "auto":
        positive_int("repeats", repeats)
    steps = _check_steps(steps)
    if certify is not None:
        bound_method("certify", certify)
        if norm != "linf":
            raise ValueError(f"certify needs norm='linf' (bounds over the Linf box), got norm={norm!r}")
    rng_state = torch.get_rng_state()  # before the data: a shuffling DataLoader draws from it
    try:
        x, y = _gather(data, batch_size)
        params = list(model.parameters())
        device = params[0].device if params else torch.device("cpu")
        threat = dict(bounds=bounds, normalization=normalization)
        gen = generator if generator is not None else torch.Generator().manual_seed(draw_seed())
        run = _Runner(model, x, y, batch_size, device, threat, progress, gen)
        classes, stochastic = probe(model, run.forward, x[:64].to(device))
        check_label_range(y, classes)
        check_classes_for(attacks, classes)
        if suite == "autoattack":
            chosen = ("rand" if stochastic else "standard") if version == "auto" else version
            check_classes_for(AUTOATTACK_ATTACKS.get(chosen, ()), classes, 9)
        if certify is not None and stochastic:
            raise ValueError("certify needs a deterministic model: bounds do not hold for a stochastic one")
        if certify is not None:
            with frozen_model(model, "eval"):
                model_steps(model, normalization)  # refuse an unknown layer before any attack runs
        masked = gradient_masked(model, run.forward, x[:16].to(device))
        attacked, fronts = with_bpda(model) if bpda is True or (bpda == "auto" and masked) else (model, [])
        eot = (AUTO_EOT if stochastic else 1) if eot_iter == "auto" else eot_iter
        reps = (AUTO_REPEATS if stochastic else 1) if repeats == "auto" else repeats

        def build(name, eps_, eot_=None):
            return make_attack(name, attacked, eps=eps_, norm=norm, eot_iter=eot if eot_ is None else eot_,
                               generator=gen, steps=steps, restarts=restarts, **threat)

        tic = time.perf_counter()
        clean_preds = [run.predict(x) for _ in range(reps)]
        clean_seconds = (time.perf_counter() - tic) / reps
        clean_correct = torch.stack([p == y for p, _ in clean_preds])  # [R, N]
        results, robust_masks, adversarial = {}, {}, {}
        total_attack_seconds = 0.0
        crafted = [(name, build(name, eps)) for name in attacks]
        if surrogate is not None:  # black-box check: PGD white-box on the surrogate, tried on the model
            crafted.append(("transfer", make_attack("pgd", surrogate, eps=eps, norm=norm, eot_iter=1, generator=gen,
                                                    steps=steps, restarts=restarts, **threat)))
        for name, attack in crafted:
            x_adv, seconds = run.attack(attack, x, y, desc=name)
            if name == "cw" and norm == "l2":  # minimal-norm attack: only perturbations within eps count
                x_adv = torch.where(
                    (lp_norms(x_adv - x, norm) > eps * (1 + 1e-6)).view(-1, *[1] * (x.dim() - 1)), x, x_adv
                )
            total_attack_seconds += seconds
            preds = [run.predict(x_adv) for _ in range(reps)]
            robust = clean_correct & torch.stack([p == y for p, _ in preds])
            fooled = (clean_correct & ~robust).sum(dim=1).float() / clean_correct.sum(dim=1).clamp_min(1)
            per_run = robust.float().mean(dim=1)
            results[name] = AttackResult(
                robust_accuracy=_stat(per_run),
                success_rate=float(fooled.mean()),
                confidence_adv=float(preds[0][1].mean()),
                perturbation_norm=float(
                    lp_norms(x_adv - x, norm)[~robust[0] & clean_correct[0]].mean().nan_to_num(0.0)
                ),
                seconds_per_image=seconds / len(y),
            )
            robust_masks[name], adversarial[name] = robust, x_adv
        aa = None
        if suite == "autoattack":
            aa = autoattack(attacked, (x, y), eps=eps, norm=norm, version=version, batch_size=batch_size, bounds=bounds,
                            normalization=normalization, seed=draw_seed(gen), autocast=autocast, progress=progress)
            robust_masks["autoattack"] = torch.tensor(aa.robust).expand(reps, -1)
        robust_all = torch.stack(list(robust_masks.values())).all(dim=0)  # [R, N]: robust to every attack
        worst = robust_all.float().mean(dim=1)  # [R]
        clean_runs = clean_correct.float().mean(dim=1)
        strongest = min(results, key=lambda n: results[n].robust_accuracy.mean)
        k = min(examples, len(y))
        shown = adversarial[strongest][:k]
        report = RobustnessReport(
            eps=eps, norm=norm, n_samples=len(y), stochastic=stochastic, eot_iter=eot, repeats=reps,
            clean_accuracy=_stat(clean_runs),
            confidence_clean=float(clean_preds[0][1].mean()), attacks=results,
            worst_case=_stat(worst),
            overhead=total_attack_seconds / max(clean_seconds, 1e-9),
            clean_probabilities=clean_preds[0][1].tolist(), clean_correct=clean_correct[0].tolist(),
            examples={"images": shown.float().tolist(), "labels": y[:k].tolist(),
                      "predictions": run.predict(shown)[0].tolist(), "attack": strongest},
            title=title, autoattack=None if aa is None else aa.to_dict(),
            gradients=f"BPDA (identity backward) through {', '.join(fronts)}" if fronts else "the model's own")
        if corruptions:
            names = CORRUPTIONS if corruptions == "all" else tuple(corruptions)
            report.corruptions = corruption_accuracy(model, (x, y), corruptions=names, batch_size=batch_size,
                                                     seed=draw_seed(gen)).to_dict()
        if certify is not None:
            cert = certified_accuracy(model, (x, y), eps, bounds=bounds, normalization=normalization, method=certify,
                                      batch_size=min(batch_size, 64))
            fell = torch.nonzero(torch.tensor(cert.certified) & ~robust_all[0]).flatten().tolist()
            report.certified = {"method": certify, "accuracy": None if fell else cert.certified_accuracy,
                                "broken": fell}
            report.checks.append(C.certified_below_empirical(cert.certified_accuracy, float(worst.mean()), fell))
            if fell:
                warnings.warn(f"certify: {report.checks[-1].detail}", stacklevel=2)
        robust_masks.pop("autoattack", None)
        report.checks.append(C.above_chance(float(clean_runs.mean()), classes, len(y)))
        if report.checks[-1].status != "pass":
            report.checks += [Check(n, "n/a", "the model is at chance") for n in C.MASKING_CHECKS] if checks else []
        elif checks:
            run.attacked = attacked
            _run_checks(report, run, build, x[:check_samples], y[:check_samples], clean_correct[0, :check_samples],
                        {n: m[0, :check_samples] for n, m in robust_masks.items()}, curve_eps, tolerance, norm,
                        bounds)
            if fronts:
                report.checks.append(_naive_gap(run, model, fronts, eps, norm, eot, x[:check_samples],
                                                y[:check_samples], clean_correct[0, :check_samples], tolerance))
        if masked and not fronts:
            report.checks.append(Check("gradients reach the input", "warn", "the input gradient is missing or zero "
                                       "and no known front-end was found: wrap the non-differentiable part in "
                                       "robustkernels.defences.BPDA, or the figures overstate robustness"))
        failed = [c.name for c in report.checks if c.name in C.MASKING_CHECKS and c.status == "warn"]
        if bpda == "auto" and failed and not fronts and with_bpda(model)[1]:  # misleading, not zero, gradients
            report = evaluate(**{**arguments, "data": (x, y), "bpda": True})
            report.gradients += f" (the model's own gradients failed the masking checks: {', '.join(failed)})"
        return report
    finally:
        torch.set_rng_state(rng_state)


def _naive_gap(run, model, fronts, eps, norm, eot, x, y, clean, tol) -> Check:
    """PGD on the model's own gradients against PGD through BPDA, on the check subset."""
    naive = PGD(model, eps=eps, alpha=2.5 * eps / 20, steps=20, norm=norm, eot_iter=eot, generator=run.generator,
                **run.threat)
    through = PGD(run.attacked, eps=eps, alpha=2.5 * eps / 20, steps=20, norm=norm, eot_iter=eot,
                  generator=run.generator, **run.threat)
    return C.naive_vs_bpda(_accuracy(run, naive, x, y, clean, "pgd (naive)"),
                           _accuracy(run, through, x, y, clean, "pgd (BPDA)"), fronts, tol)


def _accuracy(run, attack, x, y, clean, desc) -> float:
    """Robust accuracy on (x, y): correct clean (the mask ``clean``) and after ``attack``."""
    x_adv, _ = run.attack(attack, x, y, desc)
    return float((clean & (run.predict(x_adv)[0] == y)).float().mean())


def _run_checks(report, run, build, x, y, clean, robust_subset, curve_eps, tol, norm, bounds) -> None:
    """Curves of accuracy vs eps per attack and the five checks, on the subset (x, y), whose
    clean predictions are the evaluation's first pass (``clean``)."""
    eps = report.eps
    clean_acc = float(clean.float().mean())
    for name in (n for n in report.attacks if n != "transfer"):  # transfer examples come from the surrogate
        report.curves[name] = {"0": clean_acc}
        for m in curve_eps:
            report.curves[name][f"{m * eps:.6g}"] = (
                float(robust_subset[name].float().mean()) if m == 1.0 else _accuracy(run, build(name, m * eps), x, y,
                                                                                     clean, f"{name} @ {m:g} eps"))
    acc = {n: r.robust_accuracy.mean for n, r in report.attacks.items()}
    report.checks.append(C.iterative_vs_single_step(acc.get("pgd", acc.get("apgd-ce")), acc.get("fgsm"), tol))
    iterative = next((n for n in ("pgd", "apgd-ce", "apgd-dlr", "cw") if n in report.curves), None)
    curve = {float(e): a for e, a in report.curves.get(iterative, {}).items()}
    report.checks.append(C.monotone_in_eps(curve, tol))
    lo, hi = channel_bounds(bounds, x)
    span = float((hi - lo).max())
    unbounded = span if norm == "linf" else span * x[0].numel() ** 0.5
    big = PGD(run.attacked, eps=unbounded, alpha=unbounded / 10, steps=50, norm=norm, eot_iter=report.eot_iter,
              generator=run.generator, **run.threat)  # plain PGD with large steps
    report.checks.append(C.unbounded_eps(_accuracy(run, big, x, y, clean, "unbounded eps")))
    white_box = [n for n in robust_subset if n in WHITE_BOX]
    worst_wb = float(torch.stack([robust_subset[n] for n in white_box]).all(dim=0).float().mean()) if white_box else 1.0
    square = None
    if norm == "linf" and x.dim() == 4:
        square = (float(robust_subset["square"].float().mean()) if "square" in robust_subset
                  else _accuracy(run, build("square", eps), x, y, clean, "square"))
        report.curves.setdefault("square", {"0": clean_acc, f"{eps:.6g}": square})
    report.checks.append(C.gradient_free_not_stronger(square, worst_wb, tol))
    acc_eot = acc_no_eot = None
    if report.stochastic and report.eot_iter > 1:
        acc_eot = float(robust_subset["pgd"].float().mean()) if "pgd" in robust_subset else _accuracy(
            run, build("pgd", eps), x, y, clean, "pgd (EOT)")
        acc_no_eot = _accuracy(run, build("pgd", eps, eot_=1), x, y, clean, "pgd (no EOT)")
    report.checks.append(C.eot_helps(report.stochastic, acc_eot, acc_no_eot, report.eot_iter, tol))
    if "transfer" in robust_subset:
        report.checks.append(C.transfer_not_stronger(float(robust_subset["transfer"].float().mean()), worst_wb, tol))
