"""``autoattack(model, data, eps=...)``: the field's standard evaluation (Croce & Hein 2020).

The versions are the original's (standard, plus, rand, custom), each a row of the table in
:mod:`~robustkernels.eval.aa_versions` with its attacks and their settings.

``fast`` is ours, not the original's, and not AutoAttack: APGD-CE (50 iterations), then APGD-T
on 2 targets only (100 iterations on the first, 50 on the second; in L2 / L1 APGD-CE at 100 and 3
targets at 50: its row in ``aa_versions``) - the classes ranked highest at
the point APGD-CE left each sample (its highest-loss point), not at the clean input (MALT,
Melamed et al. 2024, ranks targets to run fewer APGD-T runs; A3, Liu et al. 2022, starts from
what earlier steps found) - then Square with 500 queries on the
tenth of each batch's survivors with the smallest margin (A3's budget on the points nearest to
breaking) as a cheap gradient-masking guard; then smoothed PGD on every survivor: 25 steps on
the margin whose gradient is averaged over 2 Gaussian draws around the iterate
(:class:`~robustkernels.attacks.SmoothedPGD`; Linf - in L2 / L1 APGD-DLR from uniform starts, only
on a batch where the guard fooled a point). On a masked MNIST CNN it breaks the points the
white-box attacks miss and that standard breaks only with 5000 Square queries.
Its gradient attacks run in bf16 where the device computes in bf16 natively and a timed pass is
faster (``autocast="auto"``; verdicts fp32). Its report and log say so; its gap to ``standard``, measured on
the benchmark models, is in ``docs/results/benchmarks.md``.

The cascade: each attack runs only on the points still robust after the attacks before it
(clean-misclassified points are never attacked); inside an attack, fooled points leave the batch
(the active set). A point is fooled only if an fp32 forward pass on the returned input
misclassifies it and the input lies in the threat model, whatever precision the attack ran in.
Data stream in batches; only per-sample verdicts are kept. Under ``torch.distributed`` every
process takes every ``world``-th batch and the verdicts are gathered: the report is the one a
single process would give, because every random draw is a function of (seed, batch, attack).
"""

from __future__ import annotations

import math
import os
import time
import warnings

import torch
from torch import nn

from ..attacks.base import finite_eps
from ..attacks.losses import objective
from ..common import (
    all_processes,
    frozen_model,
    grad_enabled,
    model_device,
    normal_tensor,
    positive_int,
    progress_bar,
    rank_and_world,
)
from ..data import batches, check_label_range
from ..machine import native_bf16
from ..ops import draw_seed
from ..threat import ThreatModel, normalize
from .aa_options import AutoAttackOptions
from .aa_report import AutoAttackReport
from .aa_state import (
    DataDigest,
    RunState,
    Verdict,
    batch_digest,
    model_digest,
    outputs_fingerprint,
    same_outputs,
    structure_digest,
)
from .aa_versions import VERSIONS, Version, stage_targets, version_for
from .probe import check_classes_for, checked_logits
from .setup import AUTO_EOT, eot_and_repeats, model_setup
from .suite import autoattack_attack
from .values import Stat

__all__ = ["VERSIONS", "AutoAttackOptions", "AutoAttackReport", "AutoAttackRun", "autoattack"]


class _Cascade:
    """Runs the stages of one version on batches (on ``attacked``: the model or its BPDA /
    levers' copy; verdicts on ``model``); keeps per-sample verdicts only. ``attack_options``:
    what every attack takes from the run (autocast, active_set, eot_batched, steps, n_queries,
    n_target_classes)."""

    def __init__(self, model, attacked, threat, version: str, row: Version, seed, eot_iter, attack_options,
                 individual=False):
        self.model, self.fast_model, self.threat, self.version, self.row = model, attacked, threat, version, row
        self.names = tuple(stage.name for stage in row.stages)
        self.seed, self.eot_iter, self.attack_options = seed, eot_iter, attack_options
        self.individual = individual  # every attack on every clean-correct point, not the cascade
        self.seconds = dict.fromkeys(self.names, 0.0)
        self.attacked = dict.fromkeys(self.names, 0)

    def logits(self, x) -> torch.Tensor:
        """fp32 logits of the model itself (what the verdicts use), eval mode."""
        with frozen_model(self.model, "eval"), torch.no_grad():
            return checked_logits(self.model(normalize(x, self.threat.normalization)), len(x)).float()

    def forward(self, x) -> torch.Tensor:
        """fp32 predictions (the verdicts)."""
        return self.logits(x).argmax(1)

    def closest(self, x, y, rows, share: float) -> torch.Tensor:
        """The ``share`` of ``rows`` (in order) whose inputs ``x`` have the smallest fp32 margin
        (true logit minus the largest other): the points an attack is likeliest to break."""
        nearest = objective("margin", self.logits(x), y).topk(math.ceil(share * len(rows))).indices
        return rows[nearest.sort().values]

    def reseed(self, index: int, step: int) -> torch.Generator:
        """Global RNG (the model's own noise) and the attack's generator for (batch, step)."""
        key = (self.seed * 1_000_003 + index * 1_009 + step) % (2**63)
        torch.manual_seed(key)
        return torch.Generator().manual_seed(key + 1)

    def _rows_for(self, stage, todo, x_adv, y, fooled_by):
        """The rows ``stage`` attacks among ``todo``: none where it waits for an attack that fooled
        nothing on this batch, the share nearest to falling where it has one."""
        if stage.after is not None and not bool(fooled_by[:, self.names.index(stage.after)].any()):
            return todo[:0]
        if stage.share is not None:  # e.g. fast's guard: the survivors nearest to falling
            return self.closest(x_adv[todo], y[todo], todo, stage.share)
        return todo

    def attack_batch(self, x, y, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fell_at [B]: 0 clean-misclassified, i first fooled by attack i, len+1 robust; x_adv;
        fooled_by [B, attacks]: which attacks fooled each point)."""
        self.reseed(index, 0)
        correct = self.forward(x) == y
        n = len(self.names)
        fell_at = torch.where(correct, n + 1, 0)
        fooled_by = torch.zeros(len(y), n, dtype=torch.bool, device=y.device)
        x_adv = x.clone()
        for i, stage in enumerate(self.row.stages, start=1):
            todo = (correct if self.individual else fell_at > n).nonzero().squeeze(1)
            if todo.numel() == 0:  # no model call on an empty batch: a user's .view(B, -1) fails on B = 0
                break
            todo = self._rows_for(stage, todo, x_adv, y, fooled_by)
            if todo.numel() == 0:
                continue
            attack = autoattack_attack(stage, self.fast_model, self.threat, generator=self.reseed(index, i),
                                       eot_iter=self.eot_iter, **self.attack_options)
            rank_at = x_adv[todo] if stage.rank_at_previous else None  # A3 / MALT's idea
            tic = time.perf_counter()
            adv = attack(x[todo], y[todo], rank_at=rank_at)
            self.reseed(index, 100 + i)
            fooled = (self.forward(adv) != y[todo]) & self.threat.within(adv, x[todo])
            self.seconds[stage.name] += time.perf_counter() - tic
            self.attacked[stage.name] += todo.numel()
            fooled_by[todo[fooled], i - 1] = True
            unbroken = fell_at[todo] > n  # not fooled by an earlier attack
            fell_at[todo[fooled & unbroken]] = i
            # a fooled point keeps the input of the first attack that fooled it, a survivor the latest
            x_adv[todo[unbroken]] = adv[unbroken]
        return fell_at, x_adv, fooled_by


def autoattack(model: nn.Module, data, *, eps: float, norm: str = "linf", version: str = "auto",
               batch_size: int = 250, bounds=(0.0, 1.0), normalization=None, seed: int | None = None,
               autocast: str | None = "auto", active_set: bool = True, eot_batched="auto", repeats="auto",
               steps: int = 100, n_queries: int = 5000, n_target_classes: int = 9,
               progress: bool = True, bpda="auto", attacks=None, individual: bool = False, state_path=None,
               resume: bool = False, channels_last="auto", compile=False, shard=None) -> AutoAttackReport:
    """AutoAttack's robust accuracy of ``model`` in the ``norm`` ball of radius ``eps``.

    Args:
        data: a pair of tensors (x [N, ...] in ``bounds``, y [N]), a map-style Dataset or a
            DataLoader of ``(x, y)`` batches (streamed; batches larger than ``batch_size`` split).
        version: ``"standard"``, ``"plus"``, ``"rand"``, ``"custom"`` (the ``attacks`` listed, in
            that order, at the standard version's settings; EOT-20 for a stochastic model), or
            ``"auto"``: rand for a stochastic model (forward passes on the same input differ),
            else standard.
        attacks: for ``version="custom"``: names among :data:`ALL_ATTACKS`.
        individual: run every attack on every clean-correct point (the original's
            ``run_standard_evaluation_individual``) instead of the cascade; the report's
            ``individual`` gives each attack's robust accuracy, and the final figure is still
            "robust to every attack".
        state_path, resume: a JSON state file of per-batch verdicts, written atomically after every
            batch (:mod:`robustkernels.eval.aa_state`); with ``resume=True`` a killed run
            continues where it stopped and gives the verdicts of an uninterrupted one. The file
            is tied to the model (its weights, modules and outputs on a fixed input), the data
            batch by batch, the version, attacks, norm, eps, seed, batch size and settings: a file
            of another run is refused, saying what differs and which setting to pass; a damaged
            one (records not one per sample of their batch, or edited) is refused naming the batch.
        autocast: ``"bf16"``/``"fp16"``: the gradient attacks (APGD, smoothed PGD) run the model in that
            precision (FAB and Square stay in fp32); a point counts as fooled, inside an attack
            and in the report, only if an fp32 pass agrees. ``"auto"`` (the default): bf16 for
            ``version="fast"`` where the device computes in bf16 natively and a timed pass on
            the first batch is at least 1.1x faster (:mod:`~robustkernels.levers`; under
            ``torch.distributed`` untimed, so that every process attacks alike), fp32 for the
            other versions: measured, bf16 changes which points the attacks break (the
            levers table of docs/results/benchmarks.md), so AutoAttack's figures stay fp32 unless asked.
        channels_last, compile: the attacks run a channels_last and / or ``torch.compile`` copy
            of the model (:mod:`~robustkernels.levers`; fp32, verdicts on ``model``);
            ``"auto"``: channels_last for a CNN on images, no compile (measured slower on CPU).
        active_set, eot_batched: the cost levers (see :class:`~robustkernels.attacks.Attack`;
            off only to measure them).
        repeats: evaluation passes for the final accuracy's spread; ``"auto"``: 5 for a
            stochastic model, else 1.
        steps, n_queries, n_target_classes: the original's 100, 5000 and 9 (change only to
            trade strength for time, knowingly).
        bpda: ``"auto"``: if the input gradient through the model is missing or zero, the attacks
            go through every non-differentiable :class:`~robustkernels.defences.Preprocessing`
            front-end with BPDA (identity backward; verdicts use the unchanged forward);
            ``True`` always, ``False`` never.
        shard: ``(K, N)``: attack only batches K, K + N, K + 2N, ... (batch indices of the whole
            data at ``batch_size``) and keep their verdicts in ``state_path`` (required; resumable
            as any state file); :func:`~robustkernels.eval.merge_shards` combines the N files into
            the report of the unsharded run. Every shard reads the same data, seed and settings;
            set ``autocast`` and ``channels_last`` explicitly for a merge equal to an unsharded
            run (``"auto"`` is resolved without timing in a shard, as under ``torch.distributed``).
            Returns this shard's own report.

    The model's modes and flags and the global RNG are restored.
    """
    options = AutoAttackOptions(
        version=version, attacks=attacks, individual=individual, seed=seed, autocast=autocast, active_set=active_set,
        eot_batched=eot_batched, repeats=repeats, steps=steps, n_queries=n_queries, n_target_classes=n_target_classes,
        bpda=bpda, channels_last=channels_last, compile=compile, progress=progress, state_path=state_path,
        resume=resume, batch_size=positive_int("batch_size", batch_size), shard=shard)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    threat = ThreatModel.build(eps, norm, bounds, normalization)
    finite_eps(eps, "autoattack", "its attacks' steps are derived from eps")
    rng = torch.get_rng_state()
    try:
        rank, world = rank_and_world()
        run = AutoAttackRun(model, threat, options, rank=rank, world=world)
        whole, first = DataDigest(), []

        def every(x, y, index):  # a shard reads all the data: its digest, and a batch to set up on
            whole.add(x, y, index)
            if not first and len(y):
                first.append(normal_tensor(x))

        stream = batches(data, batch_size, run.rank, run.world, every=every if options.shard else None)
        for x, y, index in progress_bar(stream, desc="autoattack", enabled=progress, leave=False):
            run.add(x, y, index)
        if options.shard is not None:
            if first:
                run.prepare(first[0])  # a shard that owns no batch still notes the model's facts
            run.state.note(data=whole.summary(), complete=True)
        return run.report()
    finally:
        torch.set_rng_state(rng)


class AutoAttackRun:
    """One AutoAttack evaluation fed batch by batch: :meth:`add` attacks a batch (or takes its
    verdicts from the state file) and returns the batch's robust verdicts [B]; :meth:`report`
    gathers every process's verdicts (``world`` > 1) into the report. ``autoattack`` streams its
    data through one; ``evaluate`` feeds it the batches of its own stream."""

    def __init__(self, model: nn.Module, threat: ThreatModel, options: AutoAttackOptions, rank: int = 0,
                 world: int = 1):
        """``options.seed`` left None is drawn from the global RNG; ``rank`` / ``world``: this
        process's share of a ``torch.distributed`` run."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(options, AutoAttackOptions):
            raise TypeError(f"options must be an AutoAttackOptions, got {type(options).__name__}")
        options.warn_for(threat.norm)
        if options.shard is not None:
            if world > 1:
                raise ValueError("shard= runs one share of the batches in one process: start the shards as separate "
                                 "processes, not under torch.distributed")
            rank, world = options.shard
        self.model, self.threat, self.options = model, threat, options
        self.seed = draw_seed() if options.seed is None else options.seed
        self.rank, self.world, self.device = rank, world, model_device(model)
        self.gathered = world > 1 and options.shard is None  # torch.distributed: every process's verdicts
        self.cascade, self.setup, self.records, self.reps, self.probabilities = None, None, [], 1, False
        self.autocast = options.autocast  # resolved on the first batch
        self.state = _state(model, threat, self.seed, options, rank, world)
        self.layout = options.channels_last

    def use_layout(self, channels_last: bool) -> None:
        """Run the attacks in the layout a caller already measured for ``channels_last="auto"``
        (``evaluate``'s), instead of timing the model again; a resumed run's recorded layout wins.
        The state's identity keeps the request ("auto"), so a resumed run matches whatever the
        timing chose."""
        self.layout = bool(channels_last)

    def _start(self, x) -> None:
        """The model's setup and the cascade, from the first batch with samples (the probes,
        the probabilities check and the levers' timing mean nothing on an empty one)."""
        recorded = self.state.channels_last is not None  # a resumed run keeps the levers chosen
        layout = self.state.channels_last if recorded else self.layout
        autocast = self.state.autocast if recorded else self._autocast()
        self.setup = model_setup(self.model, self.threat, x, self.options.bpda, layout, self.options.compile, autocast)
        self.state.channels_last, self.state.autocast = self.setup.levers.channels_last, self.setup.levers.autocast
        self.autocast = self.setup.levers.autocast
        self.probabilities = _outputs_probabilities(self.model, self.setup, x)
        if self.state.active:  # the model's function, beyond its weights and modules
            fingerprint = outputs_fingerprint(self.model, self.setup.forward, x, self.threat.bounds,
                                              self.setup.stochastic)
            self.state.confirm("model_outputs", fingerprint, same_outputs)
        self.cascade = self._cascade()
        if "square" in self.cascade.names and x.dim() != 4:  # before any attack runs, not at Square
            raise ValueError(f"data: version {self.cascade.version!r} runs Square, which needs images [B, C, H, W]; "
                             f"got inputs of shape {list(x.shape)} (version='custom' without 'square' runs the rest)")
        self.reps = eot_and_repeats(self.setup.stochastic, repeats=self.options.repeats)[1]
        self.state.check_counters(self.cascade.names)
        self.cascade.seconds.update(self.state.seconds)
        self.cascade.attacked.update(self.state.attacked)
        if self.options.shard is not None:  # what a merge reports besides the verdicts
            self.state.note(**self.facts())

    def facts(self) -> dict:
        """What the report says besides the verdicts, times and counts (JSON values): the same on
        every process and shard of one run."""
        cascade, setup, o = self.cascade, self.setup, self.options
        ran = cascade.row.described(o.steps, o.n_queries, o.n_target_classes)
        return dict(version=cascade.version, attacks=list(cascade.names), eot_iter=cascade.eot_iter,
                    stochastic=bool(setup.stochastic), repeats=self.reps, classes=setup.classes,
                    gradients=setup.gradients, probabilities=self.probabilities, levers=setup.levers.describe(),
                    not_autoattack=ran, measured=cascade.row.measured if ran == cascade.row.not_autoattack else (
                        f"{cascade.row.measured}, at the version's own lengths: this run's are shorter"))

    def _autocast(self):
        """The precision asked for: ``"auto"`` is timed where the version says so (fast), fp32
        otherwise. Under ``torch.distributed`` every process must attack in the same precision,
        and timings differ between processes: there "auto" is bf16 wherever the device has
        native bf16."""
        asked = self.options.autocast
        if asked != "auto":
            return asked
        if not self._version()[1].timed_bf16:
            return None
        return ("bf16" if native_bf16(self.device) else None) if self.world > 1 else "auto"

    def _version(self) -> tuple[str, Version]:
        """(name, row) of the version this model runs: ``"auto"`` is rand for a stochastic model
        (known after the first batch's probes), else standard."""
        name = self.options.version
        if name == "auto":
            name = "rand" if self.setup is not None and self.setup.stochastic else "standard"
        return name, version_for(name, self.threat.norm, self.options.attacks)

    def _cascade(self) -> _Cascade:
        """The version's stages for this model, after the original's checks."""
        name, row = self._version()
        check_classes_for(stage_targets(row.stages, self.options.n_target_classes), self.setup.classes)
        eot = AUTO_EOT if row.eot == "always" or (row.eot == "stochastic" and self.setup.stochastic) else 1
        o = self.options
        attack_options = dict(autocast=self.autocast, active_set=o.active_set, eot_batched=o.eot_batched,
                              steps=o.steps, n_queries=o.n_queries, n_target_classes=o.n_target_classes)
        return _Cascade(self.model, self.setup.attacked, self.threat, name, row, self.seed, eot, attack_options,
                        o.individual)

    def prepare(self, x) -> None:
        """Set up on inputs ``x`` (a batch of the data, not necessarily this process's) if no batch
        of its own did: a shard that holds no batch still notes the model's facts for the merge."""
        if self.cascade is None:
            with grad_enabled():
                self._start(normal_tensor(x.to(self.device)))

    def add(self, x, y, index: int) -> torch.Tensor:
        """Batch ``index`` (x [B, ...], y [B]): its verdicts recorded; robust [B] bool (CPU). An
        empty batch has nothing to attack or record."""
        if len(y) == 0:
            return torch.zeros(0, dtype=torch.bool)
        digest = batch_digest(x, y)
        with grad_enabled():  # inside the caller's torch.inference_mode() too
            x, y = normal_tensor(x.to(self.device)), normal_tensor(y.to(self.device))
            if self.cascade is None:
                self._start(x)
            check_label_range(y, self.setup.classes, f"data (batch {index})")
            batch = self.state.done(index, digest, len(y), len(self.cascade.names), self.reps)
            if batch is None:  # not in the state file: attack it
                batch = self._attack(x, y, index)
                self.state.add(index, digest, batch, self.cascade.seconds, self.cascade.attacked)
        self.records += batch
        return torch.tensor([v.fell_at > len(self.cascade.names) for v in batch], dtype=torch.bool)

    def _attack(self, x, y, index: int) -> list:
        cascade = self.cascade
        fell_at, x_adv, fooled_by = cascade.attack_batch(x, y, index)
        clean, passes, survived = [], [], (fell_at > len(cascade.names)).cpu()
        for r in range(self.reps):  # the spread: fresh noise per pass, clean and adversarial
            cascade.reseed(index, 1000 + r)
            correct = (cascade.forward(x) == y).cpu()
            clean.append(correct)
            # A point the cascade fooled stays fooled (as in the original, whose figure is the
            # cascade's); a pass can only take more away from the survivors.
            passes.append(correct & survived & (cascade.forward(x_adv) == y).cpu())
        if self.reps == 1:  # one pass of a deterministic model: the cascade's clean verdict
            clean = [(fell_at > 0).cpu()]
        return [Verdict(index, j, int(fell_at[j]), [bool(c[j]) for c in clean], [bool(p[j]) for p in passes],
                        fooled_by[j].tolist()) for j in range(len(y))]

    def report(self) -> AutoAttackReport:
        """The report over every process's verdicts (``torch.distributed``: a process that had
        no batch of its own takes the facts of one that had)."""
        mine = None if self.cascade is None else (self.facts(), self.cascade.seconds, self.cascade.attacked)
        parts = all_processes([(self.records, mine)], self.world if self.gathered else 1)
        runs = [p[1] for p in parts if p[1] is not None]
        if not runs:
            raise ValueError("autoattack: every batch was empty; there are no samples to evaluate")
        seconds = {a: sum(r[1][a] for r in runs) for a in runs[0][0]["attacks"]}
        attacked = {a: sum(r[2][a] for r in runs) for a in runs[0][0]["attacks"]}
        return report_from(runs[0][0], sorted(r for p in parts for r in p[0]), self.threat.norm, self.threat.eps,
                           self.options.individual, self.autocast, seconds, attacked)


def report_from(facts: dict, records: list, norm: str, eps: float, individual: bool, autocast, seconds: dict,
                attacked: dict) -> AutoAttackReport:
    """The report of a run from its :meth:`AutoAttackRun.facts`, its per-sample verdicts
    (sorted) and its time and point counts per attack (one process, all of them, or merged shards)."""
    report = AutoAttackReport(
        version=facts["version"], norm=norm, eps=eps, n_samples=len(records), attacks=list(facts["attacks"]),
        seconds=seconds, attacked=attacked, stochastic=facts["stochastic"], eot_iter=facts["eot_iter"],
        repeats=facts["repeats"], autocast=autocast, classes=facts["classes"],
        **figures(records, facts["attacks"], facts["stochastic"], individual))
    report.gradients, report.probabilities, report.levers = facts["gradients"], facts["probabilities"], facts["levers"]
    report.not_autoattack, report.measured = facts["not_autoattack"], facts["measured"]
    return report


def _state(model, threat, seed, options: AutoAttackOptions, rank, world) -> RunState:
    """The resumable run's state (a no-op without ``state_path``); one file per process."""
    path = options.state_path
    if path is None:  # no state file: nothing to hash (the weights' digest costs a pass over them)
        return RunState(None, {}, False)
    if world > 1 and options.shard is None:  # torch.distributed: one file per process
        path = f"{os.fspath(path)}.rank{rank}"
    schedule = None if options.version == "auto" else version_for(options.version, threat.norm,
                                                                   options.attacks).not_autoattack
    identity = {"model": model_digest(model), "model_structure": structure_digest(model),
                "norm": threat.norm, "eps": threat.eps, "bounds": repr(threat.bounds),
                "normalization": repr(threat.normalization), "world": world, **options.identity(), "seed": seed,
                # a version's schedule changes between releases: a state file of another one is refused
                "fast": schedule}
    return RunState(path, identity, options.resume, later=("model_outputs",))


def _outputs_probabilities(model, setup, x) -> bool:
    """The original's check: a model whose rows are non-negative and sum to 1 returns
    probabilities, not logits - the CE gradient through a softmax of them is masked."""
    if len(x) == 0:  # no rows: nothing to judge (all() of nothing is True)
        return False
    with frozen_model(model, "eval"), torch.no_grad():  # eval mode: BatchNorm statistics untouched
        out = setup.forward(x[:64]).float()
    if bool((out >= 0).all()) and bool(((out.sum(dim=1) - 1).abs() < 1e-4).all()):
        warnings.warn("autoattack: the model's outputs are non-negative and sum to 1 - probabilities, not logits; "
                      "the CE loss on them masks the gradient: pass the model without its final softmax",
                      stacklevel=3)
        return True
    return False


def figures(records: list, names, stochastic: bool, individual: bool) -> dict:
    """The report's accuracies from the per-sample verdicts (sorted by batch and row): clean,
    after each attack, final (the spread over passes for a stochastic model), per sample, and
    each attack alone in an ``individual`` run."""
    n, names = len(records), list(names)
    if n == 0:  # a shard past the last batch: no sample, no figure
        none = Stat(float("nan"), 0.0, 0)
        return dict(clean_accuracy=none, robust_after=[float("nan")] * len(names), robust_accuracy=none, robust=[],
                    individual={})
    fell_at = torch.tensor([v.fell_at for v in records])
    clean = torch.tensor([v.clean for v in records], dtype=torch.float).mean(0)  # per pass
    final = torch.tensor([v.passes for v in records], dtype=torch.float).mean(0)
    after = [float((fell_at > i).float().mean()) for i in range(1, len(names) + 1)]
    if not stochastic:  # one deterministic pass: the cascade's own verdicts
        final = torch.tensor([after[-1]]) if after else clean
    alone = {}
    if individual:
        fooled_by = torch.tensor([v.fooled_by for v in records], dtype=torch.bool).view(n, len(names))
        alone = {name: float(((fell_at > 0) & ~fooled_by[:, k]).float().mean()) for k, name in enumerate(names)}
    return dict(clean_accuracy=Stat.of(clean), robust_after=after, robust_accuracy=Stat.of(final),
                robust=(fell_at > len(names)).tolist(), individual=alone)
