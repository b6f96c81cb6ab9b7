"""One pass of :func:`~robustkernels.eval.evaluate` over the data, batch by batch: each batch
through the clean passes, every attack and the extras (AutoAttack, corruptions, the certificate)
before the next one is read, so the data are read once (a shuffling DataLoader too) and
per-sample verdicts line up across attacks. Kept: each batch's values, the first samples (the
lead: the masking checks and the examples) - then the report from those values.

A :class:`Share` says which batches this process attacks: all of them, one shard's (``shard=(K,
N)``: every N-th from K, its values in a state file), or one ``torch.distributed`` rank's (the
values gathered at the end). The holder of batch 0 also takes the lead."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..certify import certified_accuracy, model_steps
from ..common import all_processes, frozen_model, normal_tensor, progress_bar, rank_and_world
from ..data import batches, check_label_range
from ..defences import with_bpda
from ..ops import draw_seed
from ..threat import ThreatModel, lp_norms
from .aa_state import DataDigest, batch_digest
from .assemble import LeadFigures, ModelFacts, assemble, empty_report
from .autoattack import AutoAttackRun
from .checks import above_chance
from .corruptions import CORRUPTIONS, CorruptionTally
from .eval_state import AUTOATTACK_SUFFIX, EvalState, eval_state, notes_check
from .masking import measure_checks, naive_gap
from .options import EvalOptions
from .probe import check_classes_for, check_version_classes
from .runner import EvalRunner
from .setup import ModelSetup, model_setup
from .suite import make_attack
from .tally import BatchValues, Lead, PassTally

# the runner's reseed indices of the phases after the batches
CHECKS_PHASE, EXAMPLES_PHASE, NAIVE_PHASE, EXTRAS_PHASE = -1, -2, -3, -4


@dataclass
class Share:
    """Which batches this process attacks: ``index % world == rank``; ``shard``: a shard of a
    run merged later from its state file (else ``world`` > 1 is ``torch.distributed``)."""

    rank: int = 0
    world: int = 1
    shard: bool = False

    @classmethod
    def of(cls, opts: EvalOptions, model: nn.Module) -> Share:
        rank, world = rank_and_world()
        if opts.shard is None:
            if world > 1 and opts.corruptions:
                raise ValueError("corruptions: not under torch.distributed (their noise streams across the batches); "
                                 "run robustkernels.eval.corruption_accuracy in one process")
            return cls(rank, world)
        if world > 1:
            raise ValueError("shard= runs one share of the batches in one process: start the shards as separate "
                             "processes, not under torch.distributed")
        if opts.bpda == "auto" and with_bpda(model)[1]:
            raise ValueError("shard: set bpda=True or False for a model with a non-differentiable front-end: 'auto' "
                             "may evaluate again through BPDA after the masking checks, which only shard 0 runs")
        return cls(opts.shard[0], opts.shard[1], True)

    def owns(self, index: int) -> bool:
        return index % self.world == self.rank


def one_pass(model, data, opts: EvalOptions, threat: ThreatModel, bpda, seed: int,
             share: Share) -> tuple:
    """(report, model setup) of one pass over ``data``."""
    run, whole = _Pass(model, opts, threat, bpda, seed, share), DataDigest()
    for x, y, index in progress_bar(batches(data, opts.batch_size), desc="evaluate", enabled=opts.progress):
        x, y = normal_tensor(x), normal_tensor(y)
        whole.add(x, y, index)
        if len(y):  # empty batches (a custom batch_sampler may yield them) carry nothing
            run.add(x, y, index)
    if run.setup is None:
        raise ValueError("data: no samples (every batch is empty)")
    return run.finish(whole), run.setup


class _Pass:
    """The state of one pass: the model's setup (from the first batch), the attacks, the values
    of this process's batches, the lead and the extras."""

    def __init__(self, model, opts: EvalOptions, threat: ThreatModel, bpda, seed: int, share: Share):
        self.model, self.opts, self.threat, self.bpda, self.seed, self.share = model, opts, threat, bpda, seed, share
        self.setup: ModelSetup | None = None
        self.own: list[tuple[int, BatchValues]] = []
        self.state: EvalState | None = eval_state(model, threat, opts, seed) if share.shard else None

    def _start(self, x) -> None:
        opts = self.opts
        self.first_x = x  # a shard that owns no batch still sets its AutoAttack part up on it
        self.setup = model_setup(self.model, self.threat, x, self.bpda, opts.channels_last, opts.compile)
        _check_model(self.model, self.setup, opts)
        if "square" in opts.attacks and x.dim() != 4:  # before any attack runs, not at Square
            raise ValueError(f"attacks: square needs images [B, C, H, W]; got inputs of shape {list(x.shape)}")
        if self.state is not None:
            self.state.confirm_model(self.model, self.setup, x, self.threat.bounds)
        self.runner = EvalRunner(self.model, self.setup, self.threat, opts, self.seed)
        self.crafted = _crafted_attacks(self.runner, opts)
        self.names = [name for name, _ in self.crafted]
        self.lead = Lead(self.names, opts.check_samples if opts.checks else 0, opts.examples)
        self.extras = _Extras(self.model, self.setup, opts, self.seed, self.share)

    def add(self, x, y, index: int) -> None:
        if self.setup is None:
            self._start(x)
        check_label_range(y, self.setup.classes, f"data (batch {index})")
        own, in_lead = self.share.owns(index), self.share.rank == 0 and self.lead.wants()
        if not (own or in_lead):
            return
        digest = batch_digest(x, y) if self.state is not None else ""
        stored = self.state.values(index, digest, len(y), self.runner.reps, self.names) if (
            own and not in_lead and self.state is not None) else None
        if stored is not None:
            values = stored
            self.extras.resume(x, y, index)
        else:
            values, adversarial = _batch_values(self.runner, self.crafted, x, y, index, self.opts.norm, self.opts.eps)
            if own:
                self.extras.add(values, x, y, index)
            if in_lead:
                self.lead.add(x, adversarial, values)
        if own:
            self.own.append((index, values))
            if stored is None and self.state is not None:
                self.state.add(index, digest, values.to_json(), {}, {})

    def finish(self, whole: DataDigest):
        if self.share.world > 1 and not self.share.shard:
            _same_data(whole, self.share.world)
        tally = PassTally(self.names)
        for _, values in _gathered(self.own, self.share):
            tally.add(values)
        lead = self._lead_figures(tally) if self.share.rank == 0 else None
        if self.share.world > 1 and not self.share.shard:
            lead = _from_rank0(lead, self.share.world)
        lead = lead or LeadFigures({n: [] for n in self.names}, {n: [] for n in self.names}, [], None)
        facts = self.facts()
        autoattack = self.extras.autoattack_report(whole, self.first_x)
        if self.state is not None:
            self.state.note(data=whole.summary(), facts=facts.to_json(), names=self.names,
                            lead=None if self.share.rank else lead.to_json(), title=self.opts.title, complete=True)
            self.state.note(check=notes_check(self.state.notes))
        if tally.n == 0:  # a shard that holds none of the batches (more shards than batches)
            return empty_report(facts, self.opts, f"shard {self.share.rank} of {self.share.world} holds none of the "
                                f"data's {whole.batches} batches: nothing to attack; merge it with the others")
        return assemble(tally, lead, facts, self.opts, autoattack, self.extras.corruption_report())

    def facts(self) -> ModelFacts:
        s, r = self.setup, self.runner
        return ModelFacts(bool(s.stochastic), r.eot, r.reps, s.classes, s.gradients, s.levers.describe(),
                          list(s.fronts), bool(s.masked))

    def _lead_figures(self, tally: PassTally) -> LeadFigures:
        """The examples of every attack and, where the checks will be judged, their figures."""
        runner, opts, lead = self.runner, self.opts, self.lead
        shown, predictions = {}, {}
        for name in self.names:
            images = lead.shown_inputs(name)[:opts.examples]
            runner.reseed(EXAMPLES_PHASE)
            shown[name], predictions[name] = images.float().tolist(), runner.predict(images)[0].tolist()
        measured = None
        # a shard cannot know the whole run's clean accuracy: it measures, the merge decides
        if opts.checks and (self.share.shard or _above_chance(tally, self.setup.classes)):
            x, y, clean, subset = lead.inputs()
            runner.reseed(CHECKS_PHASE)
            measured = measure_checks(runner, self.names, x, y, clean, subset, opts.curve_eps,
                                      self.setup.stochastic)
            if self.setup.fronts:
                runner.reseed(NAIVE_PHASE)
                measured["naive"] = naive_gap(runner, self.model, self.setup.fronts, x, y, clean)
        return LeadFigures(shown, predictions, lead.labels(opts.examples).tolist(), measured)


def _above_chance(tally: PassTally, classes: int) -> bool:
    return above_chance(float(tally.clean_correct().double().mean(dim=1).mean()), classes, tally.n).status == "pass"


def _gathered(own: list, share: Share) -> list:
    """(index, values) of every process's batches in batch order (``torch.distributed``), or
    this process's own."""
    if share.world == 1 or share.shard:
        return sorted(own, key=lambda item: item[0])
    every = all_processes([(i, v.to_json()) for i, v in own], share.world)
    return sorted(((i, BatchValues.from_json(v)) for i, v in every), key=lambda item: item[0])


def _same_data(whole: DataDigest, world: int) -> None:
    """Every process read the same data (each attacks its share of one stream)."""
    every = all_processes([whole.summary()], world)
    if any(d != every[0] for d in every):
        raise ValueError("data: the processes read different data (a DistributedSampler?); evaluate shares the "
                         "batches itself: give every process the whole data")


def _from_rank0(lead: LeadFigures | None, world: int) -> LeadFigures:
    return LeadFigures(**all_processes([None if lead is None else lead.to_json()], world)[0])


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


def _crafted_attacks(runner: EvalRunner, opts: EvalOptions) -> list:
    """(name, attack) for each of ``opts.attacks``, and the transfer attack from a surrogate."""
    crafted = [(name, runner.build(name, opts.eps)) for name in opts.attacks]
    if opts.surrogate is not None:  # black-box check: PGD white-box on the surrogate, tried on the model
        crafted.append(("transfer", make_attack("pgd", opts.surrogate, eps=opts.eps, eot_iter=1,
                                                generator=runner.generator, steps=opts.steps, restarts=opts.restarts,
                                                **runner.threat.space_kwargs())))
    return crafted


def _batch_values(runner: EvalRunner, crafted: list, x, y, index: int, norm: str, eps: float) -> tuple:
    """(the batch's :class:`BatchValues`, each attack's adversarial inputs) - its draws from
    the seed and ``index`` alone."""
    runner.reseed(index)
    tic = time.perf_counter()
    clean = [runner.predict(x) for _ in range(runner.reps)]
    y = y.cpu()
    correct = torch.stack([p == y for p, _ in clean])
    values = BatchValues(y, correct, clean[0][1].double(), (time.perf_counter() - tic) / runner.reps)
    adversarial = {}
    for name, attack in crafted:
        x_adv, seconds = runner.attack(attack, x, y, desc=name)
        if name == "cw" and norm == "l2":  # minimal-norm attack: only perturbations within eps count
            outside = lp_norms(x_adv - x, norm) > eps * (1 + 1e-6)
            x_adv = torch.where(outside.view(-1, *[1] * (x.dim() - 1)), x, x_adv)
        preds = [runner.predict(x_adv) for _ in range(runner.reps)]
        robust = correct & torch.stack([p == y for p, _ in preds])
        values.robust[name], values.confidence_adv[name] = robust, preds[0][1].double()
        values.moved[name], values.seconds[name] = lp_norms(x_adv - x, norm)[~robust[0] & correct[0]].double(), seconds
        adversarial[name] = x_adv
    return values, adversarial


class _Extras:
    """AutoAttack, the corruptions and the certificate on this process's batches, when asked for."""

    def __init__(self, model: nn.Module, setup: ModelSetup, opts: EvalOptions, seed: int, share: Share):
        self.model, self.setup, self.opts, self.share, self.aa = model, setup, opts, share, None
        draws = torch.Generator().manual_seed((seed * 1_000_003 + EXTRAS_PHASE * 1_009 + 17) % 2**63)
        if opts.suite == "autoattack":
            drawn = draw_seed(draws)  # drawn either way: the later draws stay the same
            aa = dataclasses.replace(opts.autoattack, seed=drawn if opts.autoattack.seed is None else
                                     opts.autoattack.seed, autocast=opts.autocast, progress=opts.progress,
                                     channels_last=opts.channels_last, compile=opts.compile,
                                     batch_size=opts.batch_size)
            if share.shard:
                aa = dataclasses.replace(aa, shard=(share.rank, share.world), resume=opts.resume,
                                         state_path=f"{opts.state_path}{AUTOATTACK_SUFFIX}")
            threat = ThreatModel.build(opts.eps, opts.norm, opts.bounds, opts.normalization)
            self.aa = AutoAttackRun(setup.base, threat, aa, rank=0 if share.shard else share.rank,
                                    world=1 if share.shard else share.world)
            self.aa.use_layout(setup.levers.channels_last)  # measured once, by the set-up
        names = CORRUPTIONS if opts.corruptions == "all" else tuple(opts.corruptions)
        self.corruptions = CorruptionTally(names, seed=draw_seed(draws)) if names else None

    def add(self, values: BatchValues, x, y, index: int) -> None:
        opts, device = self.opts, self.setup.device
        if self.aa is not None:
            values.robust["autoattack"] = self.aa.add(x, y, index).view(1, -1)
        if self.corruptions is not None:
            with frozen_model(self.model, "eval"):
                self.corruptions.add(self.setup.forward, x.to(device), y.to(device))
        if opts.certify is not None:
            values.certified = certified_accuracy(self.model, (x, y), opts.eps, bounds=opts.bounds,
                                                  normalization=opts.normalization, method=opts.certify,
                                                  batch_size=min(opts.batch_size, 64)).certified

    def resume(self, x, y, index: int) -> None:
        """A batch whose values a resumed shard read back: AutoAttack reads its verdicts back too."""
        if self.aa is not None:
            self.aa.add(x, y, index)

    def autoattack_report(self, whole: DataDigest, first_x) -> dict | None:
        if self.aa is None:
            return None
        if self.share.shard:
            self.aa.prepare(first_x)
            self.aa.state.note(data=whole.summary(), complete=True)
        return self.aa.report().to_dict()

    def corruption_report(self) -> dict | None:
        return None if self.corruptions is None else self.corruptions.report().to_dict()
