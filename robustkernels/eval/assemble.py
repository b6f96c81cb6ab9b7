"""The report of :func:`~robustkernels.eval.evaluate` from plain values, with no model: the
per-batch :class:`~robustkernels.eval.tally.BatchValues` summed in batch order, the lead's
examples and check figures, and the facts about the model. One pass and the merge of its shards
(:func:`~robustkernels.eval.merge_eval_shards`) both end here, so equal values give equal reports."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch

from .checks import MASKING_CHECKS, above_chance, certified_below_empirical
from .masking import judge_checks
from .report import Check, RobustnessReport, Stat
from .tally import PassTally


@dataclass
class ModelFacts:
    """What the evaluation found about the model (JSON-able: a shard notes it for the merge)."""

    stochastic: bool
    eot: int
    reps: int
    classes: int
    gradients: str
    levers: str
    fronts: list
    masked: bool

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class LeadFigures:
    """What the first samples give the report: the examples of each attack (``shown``: images
    as nested lists, ``predictions``: the model's labels for them), their ``labels``, and the
    masking checks' figures (``measured``; None when the checks were not run)."""

    shown: dict
    predictions: dict
    labels: list
    measured: dict | None

    def to_json(self) -> dict:
        return asdict(self)


def assemble(tally: PassTally, lead: LeadFigures, facts: ModelFacts, opts, autoattack: dict | None = None,
             corruptions: dict | None = None) -> RobustnessReport:
    """The report: figures over the tally, the examples of the strongest attack, the
    certificate (refused if an attack fooled a certified sample) and the checks."""
    masks = tally.masks()
    results = {name: tally.result(name, masks) for name in tally.names}
    robust_all = torch.stack(list(masks.values())).all(dim=0)  # [R, N]: robust to every attack
    clean_correct, y = tally.clean_correct(), torch.cat(tally.labels)
    strongest = min(results, key=lambda n: results[n].robust_accuracy.mean)
    images = lead.shown[strongest][:opts.examples]
    report = RobustnessReport(
        eps=opts.eps, norm=opts.norm, n_samples=len(y), stochastic=facts.stochastic, eot_iter=facts.eot,
        repeats=facts.reps, clean_accuracy=Stat.of(clean_correct.double().mean(dim=1)),
        confidence_clean=float(torch.cat(tally.confidence).mean()), attacks=results,
        worst_case=Stat.of(robust_all.double().mean(dim=1)),
        overhead=sum(tally.seconds.values()) / max(tally.clean_seconds, 1e-9),
        clean_probabilities=torch.cat(tally.confidence).tolist(), clean_correct=clean_correct[0].tolist(),
        examples={"images": images, "labels": lead.labels[:len(images)],
                  "predictions": lead.predictions[strongest][:len(images)], "attack": strongest},
        title=opts.title, autoattack=autoattack, gradients=facts.gradients, levers=facts.levers,
        corruptions=corruptions)
    if opts.certify is not None:
        _certificate(report, opts.certify, tally.certified, robust_all)
    _checks(report, facts, lead.measured, opts, tally.n)
    return report


def empty_report(facts: ModelFacts, opts, why: str) -> RobustnessReport:
    """The report of a share of the data that holds no sample (a shard past the last batch)."""
    none = Stat(float("nan"), 0.0, 0)
    return RobustnessReport(eps=opts.eps, norm=opts.norm, n_samples=0, stochastic=facts.stochastic,
                            eot_iter=facts.eot, repeats=facts.reps, clean_accuracy=none, confidence_clean=float("nan"),
                            attacks={}, worst_case=none, overhead=0.0, checks=[Check("samples", "n/a", why)],
                            title=opts.title, gradients=facts.gradients, levers=facts.levers)


def _certificate(report: RobustnessReport, method: str, certified: list, robust_all: torch.Tensor) -> None:
    cert_acc = sum(certified) / len(certified)
    fell = torch.nonzero(torch.tensor(certified) & ~robust_all[0]).flatten().tolist()
    report.certified = {"method": method, "accuracy": None if fell else cert_acc, "broken": fell}
    report.checks.append(certified_below_empirical(cert_acc, report.worst_case.mean, fell))
    if fell:
        warnings.warn(f"certify: {report.checks[-1].detail}", stacklevel=4)


def _checks(report: RobustnessReport, facts: ModelFacts, measured: dict | None, opts, n: int) -> None:
    """Clean accuracy above chance first; then the masking checks and the BPDA gap."""
    report.checks.append(above_chance(report.clean_accuracy.mean, facts.classes, n))
    if report.checks[-1].status != "pass":
        report.checks += [Check(c, "n/a", "the model is at chance") for c in MASKING_CHECKS] if opts.checks else []
    elif opts.checks and measured is None:  # a shard other than 0
        report.checks += [Check(c, "n/a", "shard 0 runs the checks: merge the shards") for c in MASKING_CHECKS]
    elif opts.checks:
        judge_checks(report, measured, opts.tolerance)
    if facts.masked and not facts.fronts:
        report.checks.append(Check("gradients reach the input", "warn", "the input gradient is missing or zero "
                                   "and no known front-end was found: wrap the non-differentiable part in "
                                   "robustkernels.defences.BPDA, or the figures overstate robustness"))
