"""``evaluate(model, data, eps=...)``: every attack on every sample, EOT for stochastic models,
worst-case accuracy, the gradient-masking checks and the figures for the plots. In named steps:
the model's setup (shared with ``autoattack``), the clean passes, the attacks, the extras
(AutoAttack, corruptions, certification), the report, the checks - at most twice, the second time
through BPDA when the model's own gradients fail the masking checks.

The data stream batch by batch, as in ``autoattack``: every attack and extra runs on a batch
before the next one is read, so the data are read once per pass (a shuffling DataLoader too) and
per-sample verdicts line up across attacks. Kept: the verdicts, the first ``check_samples``
inputs (the masking checks) and the first adversarial inputs of each attack (the examples)."""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings

import torch
from torch import nn

from ..certify import certified_accuracy, model_steps
from ..common import frozen_model, grad_enabled, normal_tensor, progress_bar, typed_options
from ..data import batches, check_label_range
from ..defences import with_bpda
from ..ops import draw_seed
from ..threat import ThreatModel, lp_norms
from .autoattack import AutoAttackRun
from .checks import MASKING_CHECKS, above_chance, certified_below_empirical
from .corruptions import CORRUPTIONS, CorruptionTally
from .masking import naive_gap, run_checks
from .options import EvalOptions, check_eval_options
from .probe import check_classes_for, check_version_classes
from .report import Check, RobustnessReport, Stat
from .runner import EvalRunner
from .setup import ModelSetup, model_setup
from .suite import make_attack
from .tally import PassTally


def evaluate(model: nn.Module, data, options: EvalOptions | None = None, **fields) -> RobustnessReport:
    """Evaluate ``model`` against ``attacks`` within the ``norm`` ball of radius ``eps``.

    Args:
        data: a DataLoader of ``(x, y)`` batches or a pair of tensors; x in ``bounds``.
        options: an :class:`~robustkernels.eval.options.EvalOptions` (typed: its fields are the
            arguments below), or those fields as keywords (which override it where both are given).
        eps: the radius of the threat model (required).
        attacks: names among ``fgsm, pgd, cw, apgd-ce, apgd-dlr, md, square`` (``md``: Linf).
        eot_iter: gradient/prediction averaging passes per attack step; ``"auto"``: 20 if the
            model is stochastic (two forward passes differ), else 1.
        repeats: evaluation passes over the adversarial inputs whose accuracies give mean and
            spread; ``"auto"``: 5 for stochastic models, else 1.
        checks: run the gradient-masking checks and the eps curves on the first
            ``check_samples`` samples; ``curve_eps`` are multiples of ``eps``.
        steps: override attack lengths, e.g. ``{"pgd": 50, "apgd": 100, "cw": 30, "md": 50, "square": 1000}``.
        suite: ``"autoattack"`` also runs :func:`~robustkernels.eval.autoattack` on the same data,
            as ``autoattack`` (an :class:`~robustkernels.eval.AutoAttackOptions`: version, attacks,
            individual, state file...) sets it; its log is part of the report and its verdicts
            part of the worst case. ``autocast``, ``channels_last``, ``compile``, ``progress``
            and ``batch_size`` are evaluate's own and AutoAttack's at once.
        autocast: ``"bf16"``/``"fp16"`` for the model inside AutoAttack's gradient attacks (fp32
            verdicts); ``"auto"``: as :func:`~robustkernels.eval.autoattack` (timed bf16 for the
            fast version only).
        channels_last, compile: the attacks run a channels_last and / or ``torch.compile`` copy of
            the model (:mod:`~robustkernels.levers`; fp32; clean passes and verdicts on the
            model itself); ``"auto"``: channels_last for a CNN on images, no compile.
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
    if options is None and "eps" not in fields:
        raise TypeError("evaluate() needs eps= (the radius of the threat model), or options=EvalOptions(eps=...)")
    opts = check_eval_options(model, typed_options(EvalOptions, options, fields, "evaluate"))
    rng_state = torch.get_rng_state()  # before the data: a shuffling DataLoader draws from it
    try:
        threat = ThreatModel.build(opts.eps, opts.norm, opts.bounds, opts.normalization)
        gen = opts.generator if opts.generator is not None else torch.Generator().manual_seed(draw_seed())
        bpda, note = opts.bpda, ""
        for _ in range(2):  # a second pass only to go through BPDA when the model's own gradients mislead
            with grad_enabled():  # inside the caller's torch.inference_mode() too
                report, setup = _one_pass(model, data, opts, threat, bpda, gen)
            failed = [c.name for c in report.checks if c.name in MASKING_CHECKS and c.status == "warn"]
            if bpda != "auto" or not failed or setup.fronts or not with_bpda(model)[1]:
                break
            bpda, note = True, f" (the model's own gradients failed the masking checks: {', '.join(failed)})"
        report.gradients += note
        return report
    finally:
        torch.set_rng_state(rng_state)


def _check_model(model: nn.Module, setup: ModelSetup, opts: EvalOptions) -> None:
    """What the model must be for these options, before any attack runs."""
    check_classes_for(opts.attacks, setup.classes)
    if opts.suite == "autoattack":
        aa = opts.autoattack
        chosen = ("rand" if setup.stochastic else "standard") if aa.version == "auto" else aa.version
        check_version_classes(chosen, opts.norm, setup.classes, aa.n_target_classes, aa.attacks)
    if opts.certify is not None:
        if setup.stochastic:
            raise ValueError("certify needs a deterministic model: bounds do not hold for a stochastic one")
        with frozen_model(model, "eval"):
            model_steps(model, opts.normalization)  # refuse an unknown layer before any attack runs


def _one_pass(model, data, opts: EvalOptions, threat: ThreatModel, bpda, gen) -> tuple[RobustnessReport, ModelSetup]:
    """One pass over the data: each batch through the clean passes, every attack and the
    extras; then the report and the checks on the kept samples."""
    # empty batches (a custom batch_sampler may yield them) carry nothing: the set-up probes the first with samples
    stream = ((normal_tensor(x), normal_tensor(y), index) for x, y, index in batches(data, opts.batch_size) if len(y))
    first = next(stream, None)
    if first is None:
        raise ValueError("data: no samples (every batch is empty)")
    setup = model_setup(model, threat, first[0], bpda, opts.channels_last, opts.compile)
    _check_model(model, setup, opts)
    runner = EvalRunner(model, setup, threat, opts, gen)
    crafted = _crafted_attacks(runner, opts)
    tally = PassTally([name for name, _ in crafted], opts.norm, opts.check_samples if opts.checks else 0,
                      opts.examples)
    extras = _Extras(model, setup, opts, gen)
    for x, y, index in progress_bar(itertools.chain([first], stream), desc="evaluate", enabled=opts.progress):
        check_label_range(y, setup.classes, f"data (batch {index})")
        tic = time.perf_counter()
        clean = [runner.predict(x) for _ in range(runner.reps)]
        tally.add_clean(x, y, clean, (time.perf_counter() - tic) / runner.reps)
        for name, attack in crafted:
            x_adv, seconds = runner.attack(attack, x, y, desc=name)
            if name == "cw" and opts.norm == "l2":  # minimal-norm attack: only perturbations within eps count
                outside = lp_norms(x_adv - x, opts.norm) > opts.eps * (1 + 1e-6)
                x_adv = torch.where(outside.view(-1, *[1] * (x.dim() - 1)), x, x_adv)
            tally.add_attack(name, x, x_adv, [runner.predict(x_adv) for _ in range(runner.reps)], seconds)
        extras.add(x, y, index, tally)
    report = _assemble(runner, opts, setup, tally, extras)
    _checks(report, runner, model, setup, tally, opts)
    return report, setup


def _crafted_attacks(runner, opts: EvalOptions) -> list:
    """(name, attack) for each of ``opts.attacks``, and the transfer attack from a surrogate."""
    crafted = [(name, runner.build(name, opts.eps)) for name in opts.attacks]
    if opts.surrogate is not None:  # black-box check: PGD white-box on the surrogate, tried on the model
        crafted.append(("transfer", make_attack("pgd", opts.surrogate, eps=opts.eps, eot_iter=1,
                                                generator=runner.generator, steps=opts.steps, restarts=opts.restarts,
                                                **runner.threat.space_kwargs())))
    return crafted


class _Extras:
    """AutoAttack, the corruptions and the certificate, batch by batch, when asked for."""

    def __init__(self, model: nn.Module, setup: ModelSetup, opts: EvalOptions, gen):
        self.model, self.setup, self.opts, self.certified = model, setup, opts, []
        self.aa = None
        if opts.suite == "autoattack":
            drawn = draw_seed(gen)  # drawn either way: the generator's later draws stay the same
            seed = drawn if opts.autoattack.seed is None else opts.autoattack.seed
            aa = dataclasses.replace(opts.autoattack, seed=seed,
                                     autocast=opts.autocast, progress=opts.progress, channels_last=opts.channels_last,
                                     compile=opts.compile, batch_size=opts.batch_size)
            self.aa = AutoAttackRun(setup.base, ThreatModel.build(opts.eps, opts.norm, opts.bounds, opts.normalization),
                                    aa)
        if self.aa is not None:
            self.aa.use_layout(setup.levers.channels_last)  # measured once, above
        names = CORRUPTIONS if opts.corruptions == "all" else tuple(opts.corruptions)
        self.corruptions = CorruptionTally(names, seed=draw_seed(gen)) if names else None

    def add(self, x, y, index: int, tally: PassTally) -> None:
        opts, device = self.opts, self.setup.device
        if self.aa is not None:
            tally.add_robust("autoattack", self.aa.add(x, y, index))
        if self.corruptions is not None:
            with frozen_model(self.model, "eval"):
                self.corruptions.add(self.setup.forward, x.to(device), y.to(device))
        if opts.certify is not None:
            self.certified += certified_accuracy(self.model, (x, y), opts.eps, bounds=opts.bounds,
                                                 normalization=opts.normalization, method=opts.certify,
                                                 batch_size=min(opts.batch_size, 64)).certified

    def finish(self, report: RobustnessReport, robust_all: torch.Tensor) -> None:
        """The corruption table and the certified figure (refused if an attack fooled a
        certified sample) into ``report``."""
        if self.corruptions is not None:
            report.corruptions = self.corruptions.report().to_dict()
        if self.opts.certify is None:
            return
        cert_acc = sum(self.certified) / len(self.certified)
        fell = torch.nonzero(torch.tensor(self.certified) & ~robust_all[0]).flatten().tolist()
        report.certified = {"method": self.opts.certify, "accuracy": None if fell else cert_acc, "broken": fell}
        report.checks.append(certified_below_empirical(cert_acc, report.worst_case.mean, fell))
        if fell:
            warnings.warn(f"certify: {report.checks[-1].detail}", stacklevel=4)


def _assemble(runner, opts: EvalOptions, setup: ModelSetup, tally: PassTally, extras: _Extras) -> RobustnessReport:
    masks = tally.masks()
    results = {name: tally.result(name, masks) for name in tally.names}
    robust_all = torch.stack(list(masks.values())).all(dim=0)  # [R, N]: robust to every attack
    clean_correct, y = tally.clean_correct(), torch.cat(tally.labels)
    strongest = min(results, key=lambda n: results[n].robust_accuracy.mean)
    shown = tally.shown_inputs(strongest)[:opts.examples]
    k = len(shown)
    report = RobustnessReport(
        eps=opts.eps, norm=opts.norm, n_samples=len(y), stochastic=setup.stochastic, eot_iter=runner.eot,
        repeats=runner.reps, clean_accuracy=Stat.of(clean_correct.float().mean(dim=1)),
        confidence_clean=float(torch.cat(tally.confidence).mean()), attacks=results,
        worst_case=Stat.of(robust_all.float().mean(dim=1)),
        overhead=sum(tally.seconds.values()) / max(tally.clean_seconds, 1e-9),
        clean_probabilities=torch.cat(tally.confidence).tolist(), clean_correct=clean_correct[0].tolist(),
        examples={"images": shown.float().tolist(), "labels": y[:k].tolist(),
                  "predictions": runner.predict(shown)[0].tolist(), "attack": strongest},
        title=opts.title, autoattack=None if extras.aa is None else extras.aa.report().to_dict(),
        gradients=setup.gradients, levers=setup.levers.describe())
    extras.finish(report, robust_all)
    return report


def _checks(report, runner, model, setup: ModelSetup, tally: PassTally, opts: EvalOptions) -> None:
    """Clean accuracy above chance first; then the masking checks and the BPDA gap."""
    report.checks.append(above_chance(report.clean_accuracy.mean, setup.classes, tally.n))
    n = opts.check_samples
    if report.checks[-1].status != "pass":
        report.checks += [Check(c, "n/a", "the model is at chance") for c in MASKING_CHECKS] if opts.checks else []
    elif opts.checks:
        x, y = tally.kept()
        x, y, clean = x[:n], y[:n], tally.clean_correct()[0, :n]
        subset = {name: mask[0, :n] for name, mask in tally.masks().items() if name != "autoattack"}
        run_checks(report, runner, x, y, clean, subset, opts.curve_eps, opts.tolerance)
        if setup.fronts:
            report.checks.append(naive_gap(runner, model, setup.fronts, x, y, clean, opts.tolerance))
    if setup.masked and not setup.fronts:
        report.checks.append(Check("gradients reach the input", "warn", "the input gradient is missing or zero "
                                   "and no known front-end was found: wrap the non-differentiable part in "
                                   "robustkernels.defences.BPDA, or the figures overstate robustness"))
