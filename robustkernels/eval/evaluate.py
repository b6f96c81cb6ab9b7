"""``evaluate(model, data, eps=...)``: every attack on every sample, EOT for stochastic models,
worst-case accuracy, the gradient-masking checks and the figures for the plots. In named steps:
the model's setup (shared with ``autoattack``), the clean pass, the attacks, the report, the
extras (corruptions, certification), the checks - at most twice, the second time through BPDA
when the model's own gradients fail the masking checks."""

from __future__ import annotations

import dataclasses
import time
import warnings

import torch
from torch import nn

from ..certify import certified_accuracy, model_steps
from ..common import frozen_model, progress_bar
from ..data import as_tensors, check_label_range
from ..defences import with_bpda
from ..ops import draw_seed
from ..threat import ThreatModel, lp_norms
from . import checks as C
from .autoattack import ATTACKS as AUTOATTACK_ATTACKS
from .autoattack import autoattack
from .corruptions import CORRUPTIONS, corruption_accuracy
from .masking import naive_gap, run_checks
from .options import EvalOptions, check_eval_options
from .probe import check_classes_for, checked_logits
from .report import AttackResult, Check, RobustnessReport, Stat
from .setup import ModelSetup, eot_and_repeats, model_setup
from .suite import make_attack


class _Runner:
    """Batched forward passes and attacks over (x, y) on the model's device, and this
    evaluation's attacks by name."""

    def __init__(self, model: nn.Module, setup: ModelSetup, threat: ThreatModel, opts: EvalOptions, generator):
        self.model, self.attacked, self.device, self.forward = model, setup.attacked, setup.device, setup.forward
        self.threat, self.threat_kwargs = threat, dict(bounds=threat.bounds, normalization=threat.normalization)
        self.bs, self.progress, self.generator = opts.batch_size, opts.progress, generator
        self.steps, self.restarts = opts.steps, opts.restarts
        self.eot, self.reps = eot_and_repeats(setup.stochastic, opts.eot_iter, opts.repeats)

    def build(self, name: str, eps: float, eot: int | None = None):
        return make_attack(name, self.attacked, eps=eps, norm=self.threat.norm, eot_iter=self.eot if eot is None
                           else eot, generator=self.generator, steps=self.steps, restarts=self.restarts,
                           **self.threat_kwargs)

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
        for xb, yb in progress_bar(list(zip(x.split(self.bs), y.split(self.bs))), desc=desc, enabled=self.progress,
                                   leave=False):
            self.fresh_noise()
            out.append(attack(xb.to(self.device), yb.to(self.device)).cpu())
        return torch.cat(out), time.perf_counter() - tic


def _stat(per_run: torch.Tensor) -> Stat:
    """Mean and spread of per-run accuracies [R]."""
    runs = len(per_run)
    return Stat(float(per_run.mean()), float(per_run.std()) if runs > 1 else 0.0, runs)


def evaluate(model: nn.Module, data, *, eps: float, **options) -> RobustnessReport:
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
            standard | plus | rand | custom | auto; ``aa_attacks`` for custom, ``aa_individual``
            for every attack on every point) on the same data; its log is part of the report and
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
            (:func:`~robustkernels.eval.certified_accuracy`; deterministic models, Linf) joins the
            report beside the empirical figures, with a check that no certified sample fell to an
            attack (if one did, no certified figure is printed and the check fails).

    Every option is a field of :class:`~robustkernels.eval.options.EvalOptions`.

    The model's modes, ``requires_grad`` flags and the global RNG are restored; nothing of the
    caller's is modified. A sample is robust to an attack if it is classified correctly both
    clean and attacked; worst case: robust to every attack.
    """
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(EvalOptions)})
    if unknown:
        raise TypeError(f"evaluate() got unexpected keyword argument(s): {', '.join(unknown)}")
    opts = check_eval_options(model, EvalOptions(eps=eps, **options))
    rng_state = torch.get_rng_state()  # before the data: a shuffling DataLoader draws from it
    try:
        # the checks, the worst case over attacks and the plots need every sample's verdicts side
        # by side, in one order (a shuffling loader read twice would not give it)
        x, y = as_tensors(data, opts.batch_size)
        threat = ThreatModel.build(opts.eps, opts.norm, opts.bounds, opts.normalization)
        gen = opts.generator if opts.generator is not None else torch.Generator().manual_seed(draw_seed())
        bpda, note = opts.bpda, ""
        for _ in range(2):  # a second pass only to go through BPDA when the model's own gradients mislead
            setup = model_setup(model, threat, x, bpda)
            _check_model(model, setup, y, opts)
            report = _one_pass(model, x, y, opts, threat, setup, gen)
            failed = [c.name for c in report.checks if c.name in C.MASKING_CHECKS and c.status == "warn"]
            if bpda != "auto" or not failed or setup.fronts or not with_bpda(model)[1]:
                break
            bpda, note = True, f" (the model's own gradients failed the masking checks: {', '.join(failed)})"
        report.gradients += note
        return report
    finally:
        torch.set_rng_state(rng_state)


def _check_model(model: nn.Module, setup: ModelSetup, y: torch.Tensor, opts: EvalOptions) -> None:
    """What the model must be for these options, before any attack runs."""
    check_label_range(y, setup.classes)
    check_classes_for(opts.attacks, setup.classes)
    if opts.suite == "autoattack":
        chosen = ("rand" if setup.stochastic else "standard") if opts.version == "auto" else opts.version
        check_classes_for(AUTOATTACK_ATTACKS.get(chosen, ()), setup.classes, 9)
    if opts.certify is not None:
        if setup.stochastic:
            raise ValueError("certify needs a deterministic model: bounds do not hold for a stochastic one")
        with frozen_model(model, "eval"):
            model_steps(model, opts.normalization)  # refuse an unknown layer before any attack runs


def _one_pass(model, x, y, opts: EvalOptions, threat: ThreatModel, setup: ModelSetup, gen) -> RobustnessReport:
    run = _Runner(model, setup, threat, opts, gen)
    tic = time.perf_counter()
    clean_preds = [run.predict(x) for _ in range(run.reps)]
    clean_seconds = (time.perf_counter() - tic) / run.reps
    clean_correct = torch.stack([p == y for p, _ in clean_preds])  # [R, N]
    results, robust_masks, adversarial, seconds = _attacks(run, opts, x, y, clean_correct)
    aa = None
    if opts.suite == "autoattack":
        aa = autoattack(setup.attacked, (x, y), eps=opts.eps, norm=opts.norm, version=opts.version,
                        batch_size=opts.batch_size, bounds=opts.bounds, normalization=opts.normalization,
                        seed=draw_seed(gen), autocast=opts.autocast, progress=opts.progress, attacks=opts.aa_attacks,
                        individual=opts.aa_individual, state_path=opts.aa_state_path, resume=opts.aa_resume)
        robust_masks["autoattack"] = torch.tensor(aa.robust).expand(run.reps, -1)
    robust_all = torch.stack(list(robust_masks.values())).all(dim=0)  # [R, N]: robust to every attack
    report = _assemble(run, opts, setup, y, clean_preds, clean_correct, results, adversarial, robust_all, aa,
                       seconds / max(clean_seconds, 1e-9))
    _extras(report, model, x, y, opts, gen, robust_all)
    robust_masks.pop("autoattack", None)
    _checks(report, run, model, setup, x, y, clean_correct, robust_masks, opts)
    return report


def _attacks(run: _Runner, opts: EvalOptions, x, y, clean_correct):
    """Each attack (and the transfer attack from a surrogate) on every sample: results,
    per-sample robust masks [R, N], adversarial inputs, and the attacks' seconds."""
    crafted = [(name, run.build(name, opts.eps)) for name in opts.attacks]
    if opts.surrogate is not None:  # black-box check: PGD white-box on the surrogate, tried on the model
        crafted.append(("transfer", make_attack("pgd", opts.surrogate, eps=opts.eps, norm=opts.norm, eot_iter=1,
                                                generator=run.generator, steps=opts.steps, restarts=opts.restarts,
                                                **run.threat_kwargs)))
    results, robust_masks, adversarial, total = {}, {}, {}, 0.0
    for name, attack in crafted:
        x_adv, seconds = run.attack(attack, x, y, desc=name)
        if name == "cw" and opts.norm == "l2":  # minimal-norm attack: only perturbations within eps count
            outside = lp_norms(x_adv - x, opts.norm) > opts.eps * (1 + 1e-6)
            x_adv = torch.where(outside.view(-1, *[1] * (x.dim() - 1)), x, x_adv)
        total += seconds
        preds = [run.predict(x_adv) for _ in range(run.reps)]
        robust = clean_correct & torch.stack([p == y for p, _ in preds])
        fooled = (clean_correct & ~robust).sum(dim=1).float() / clean_correct.sum(dim=1).clamp_min(1)
        moved = lp_norms(x_adv - x, opts.norm)[~robust[0] & clean_correct[0]]
        results[name] = AttackResult(robust_accuracy=_stat(robust.float().mean(dim=1)),
                                     success_rate=float(fooled.mean()), confidence_adv=float(preds[0][1].mean()),
                                     perturbation_norm=float(moved.mean().nan_to_num(0.0)),
                                     seconds_per_image=seconds / len(y))
        robust_masks[name], adversarial[name] = robust, x_adv
    return results, robust_masks, adversarial, total


def _assemble(run, opts, setup, y, clean_preds, clean_correct, results, adversarial, robust_all, aa, overhead):
    strongest = min(results, key=lambda n: results[n].robust_accuracy.mean)
    k = min(opts.examples, len(y))
    shown = adversarial[strongest][:k]
    return RobustnessReport(
        eps=opts.eps, norm=opts.norm, n_samples=len(y), stochastic=setup.stochastic, eot_iter=run.eot,
        repeats=run.reps, clean_accuracy=_stat(clean_correct.float().mean(dim=1)),
        confidence_clean=float(clean_preds[0][1].mean()), attacks=results,
        worst_case=_stat(robust_all.float().mean(dim=1)), overhead=overhead,
        clean_probabilities=clean_preds[0][1].tolist(), clean_correct=clean_correct[0].tolist(),
        examples={"images": shown.float().tolist(), "labels": y[:k].tolist(),
                  "predictions": run.predict(shown)[0].tolist(), "attack": strongest},
        title=opts.title, autoattack=None if aa is None else aa.to_dict(), gradients=setup.gradients)


def _extras(report, model, x, y, opts: EvalOptions, gen, robust_all) -> None:
    """Natural corruptions and certification, when asked for."""
    if opts.corruptions:
        names = CORRUPTIONS if opts.corruptions == "all" else tuple(opts.corruptions)
        report.corruptions = corruption_accuracy(model, (x, y), corruptions=names, batch_size=opts.batch_size,
                                                 seed=draw_seed(gen)).to_dict()
    if opts.certify is None:
        return
    cert = certified_accuracy(model, (x, y), opts.eps, bounds=opts.bounds, normalization=opts.normalization,
                              method=opts.certify, batch_size=min(opts.batch_size, 64))
    fell = torch.nonzero(torch.tensor(cert.certified) & ~robust_all[0]).flatten().tolist()
    report.certified = {"method": opts.certify, "accuracy": None if fell else cert.certified_accuracy, "broken": fell}
    report.checks.append(C.certified_below_empirical(cert.certified_accuracy, report.worst_case.mean, fell))
    if fell:
        warnings.warn(f"certify: {report.checks[-1].detail}", stacklevel=3)


def _checks(report, run, model, setup: ModelSetup, x, y, clean_correct, robust_masks, opts: EvalOptions) -> None:
    """Clean accuracy above chance first; then the masking checks and the BPDA gap."""
    report.checks.append(C.above_chance(report.clean_accuracy.mean, setup.classes, len(y)))
    n = opts.check_samples
    if report.checks[-1].status != "pass":
        report.checks += [Check(c, "n/a", "the model is at chance") for c in C.MASKING_CHECKS] if opts.checks else []
    elif opts.checks:
        subset = {name: mask[0, :n] for name, mask in robust_masks.items()}
        run_checks(report, run, x[:n], y[:n], clean_correct[0, :n], subset, opts.curve_eps, opts.tolerance)
        if setup.fronts:
            report.checks.append(naive_gap(run, model, setup.fronts, x[:n], y[:n], clean_correct[0, :n],
                                           opts.tolerance))
    if setup.masked and not setup.fronts:
        report.checks.append(Check("gradients reach the input", "warn", "the input gradient is missing or zero "
                                   "and no known front-end was found: wrap the non-differentiable part in "
                                   "robustkernels.defences.BPDA, or the figures overstate robustness"))
