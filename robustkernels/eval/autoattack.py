"""``autoattack(model, data, eps=...)``: the field's standard evaluation (Croce & Hein 2020).

The versions are the original's: ``standard`` = APGD-CE, APGD-T (9 targets), FAB-T (9 targets),
Square (5000 queries), each with 100 iterations and one restart; ``plus`` = APGD-CE and APGD-DLR
with 5 restarts, FAB with 5 restarts, Square, APGD-T, FAB-T; ``rand`` (for stochastic models) =
APGD-CE and APGD-DLR with EOT over 20 passes.

``fast`` is ours, not the original's, and not AutoAttack: APGD-CE (50 iterations), then APGD-T
on 2 targets only (100 iterations on the first, 50 on the second; in L2 / L1 APGD-CE at 100 and 3
targets at 50: ``suite.FAST_APGD``) - the classes ranked highest at
the point APGD-CE left each sample (its highest-loss point), not at the clean input (MALT,
Melamed et al. 2024, ranks targets to run fewer APGD-T runs; A3, Liu et al. 2022, starts from
what earlier steps found) - then Square with 500 queries on the
tenth of each batch's survivors with the smallest margin (A3's budget on the points nearest to
breaking) as a cheap gradient-masking guard; then smoothed PGD on every survivor: 25 steps on
the margin whose gradient is averaged over 2 Gaussian draws around the iterate
(:class:`~robustkernels.attacks.SmoothedPGD`; Linf - in L2 / L1 APGD-DLR from uniform starts, only
on a batch where the guard fooled a point). On a masked MNIST CNN it breaks the points the
white-box attacks miss and that standard breaks only with 5000 Square queries (``suite.FAST_*``).
Its gradient attacks run in bf16 where the device computes in bf16 natively and a timed pass is
faster (``autocast="auto"``; verdicts fp32). Its report and log say so and give the gap measured
against ``standard``.

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

from ..attacks.losses import objective
from ..common import frozen_model, grad_enabled, model_device, normal_tensor, positive_int, progress_bar, rank_and_world
from ..data import batches, check_label_range
from ..machine import native_bf16
from ..ops import draw_seed
from ..threat import ThreatModel, normalize
from .aa_report import AutoAttackReport
from .aa_state import RunState, batch_digest, model_digest, outputs_fingerprint, same_outputs, structure_digest
from .levers import check_autocast, check_lever
from .probe import check_classes_for, checked_logits
from .setup import AUTO_EOT, eot_and_repeats, model_setup
from .suite import FAST_DESCRIPTION, FAST_IF_FOOLED, FAST_SHARES, autoattack_attack
from .values import Stat

VERSIONS = ("standard", "plus", "rand", "custom", "fast")
ALL_ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")  # what version="custom" may list
ATTACKS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
    "fast": ("apgd-ce", "apgd-t", "square", "smoothed-pgd"),  # in L2 / L1 the last stage is APGD-DLR (suite.FAST_*)
}


class _Cascade:
    """Runs the attacks of one version on batches (on ``attacked``: the model or its BPDA /
    levers' copy; verdicts on ``model``); keeps per-sample verdicts only."""

    def __init__(self, model, attacked, threat, names, version, seed, eot_iter, options, progress, individual=False):
        self.model, self.fast_model, self.threat, self.names, self.version = model, attacked, threat, names, version
        self.seed, self.eot_iter, self.options, self.progress = seed, eot_iter, options, progress
        self.individual = individual  # every attack on every clean-correct point, not the cascade
        self.seconds = dict.fromkeys(names, 0.0)
        self.attacked = dict.fromkeys(names, 0)

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

    def _due(self, name: str, fooled_by: torch.Tensor) -> bool:
        """Whether fast runs ``name`` on this batch: always, or (FAST_IF_FOOLED) only where the
        attack it waits for fooled a point - the masking sign that pays for it."""
        after = FAST_IF_FOOLED.get(name)
        return after is None or bool(fooled_by[:, self.names.index(after)].any())

    def reseed(self, index: int, step: int) -> torch.Generator:
        """Global RNG (the model's own noise) and the attack's generator for (batch, step)."""
        key = (self.seed * 1_000_003 + index * 1_009 + step) % (2**63)
        torch.manual_seed(key)
        return torch.Generator().manual_seed(key + 1)

    def attack_batch(self, x, y, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fell_at [B]: 0 clean-misclassified, i first fooled by attack i, len+1 robust; x_adv;
        fooled_by [B, attacks]: which attacks fooled each point)."""
        self.reseed(index, 0)
        correct = self.forward(x) == y
        fell_at = torch.where(correct, len(self.names) + 1, 0)
        fooled_by = torch.zeros(len(y), len(self.names), dtype=torch.bool, device=y.device)
        x_adv = x.clone()
        for i, name in enumerate(self.names, start=1):
            todo = (correct if self.individual else fell_at > len(self.names)).nonzero().squeeze(1)
            if todo.numel() == 0:  # no model call on an empty batch: a user's .view(B, -1) fails on B = 0
                break
            if self.version == "fast" and not self._due(name, fooled_by):
                continue
            if self.version == "fast" and name in FAST_SHARES:  # e.g. the guard: the survivors nearest to falling
                todo = self.closest(x_adv[todo], y[todo], todo, FAST_SHARES[name])
            attack = autoattack_attack(name, self.fast_model, self.threat, self.version,
                                       generator=self.reseed(index, i), eot_iter=self.eot_iter, **self.options)
            if self.version == "fast":  # targets ranked where APGD-CE left each point (A3 / MALT's idea)
                attack.rank_targets_at(x_adv[todo])
            tic = time.perf_counter()
            adv = attack(x[todo], y[todo])
            self.reseed(index, 100 + i)
            fooled = (self.forward(adv) != y[todo]) & self.threat.within(adv, x[todo])
            self.seconds[name] += time.perf_counter() - tic
            self.attacked[name] += todo.numel()
            fooled_by[todo[fooled], i - 1] = True
            unbroken = fell_at[todo] > len(self.names)  # not fooled by an earlier attack
            fell_at[todo[fooled & unbroken]] = i
            # a fooled point keeps the input of the first attack that fooled it, a survivor the latest
            update = unbroken
            x_adv[todo[update]] = adv[update]
        return fell_at, x_adv, fooled_by


def _all_processes(records: list, world: int) -> list:
    """All ``world`` processes' records, on every process (one process: unchanged)."""
    if world == 1:
        return records
    every = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(every, records)
    return [r for part in every for r in part]


def autoattack(model: nn.Module, data, *, eps: float, norm: str = "linf", version: str = "auto",
               batch_size: int = 250, bounds=(0.0, 1.0), normalization=None, seed: int | None = None,
               autocast: str | None = "auto", active_set: bool = True, eot_batched="auto", repeats="auto",
               steps: int = 100, n_queries: int = 5000, n_target_classes: int = 9,
               progress: bool = True, bpda="auto", attacks=None, individual: bool = False, state_path=None,
               resume: bool = False, channels_last="auto", compile=False) -> AutoAttackReport:
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
            the first batch is at least 1.1x faster (:mod:`~robustkernels.eval.levers`; under
            ``torch.distributed`` untimed, so that every process attacks alike), fp32 for the
            other versions: measured, bf16 changes which points the attacks break (the
            benchmarks guide's levers table), so AutoAttack's figures stay fp32 unless asked.
        channels_last, compile: the attacks run a channels_last and / or ``torch.compile`` copy
            of the model (:mod:`~robustkernels.eval.levers`; fp32, verdicts on ``model``);
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

    The model's modes and flags and the global RNG are restored.
    """
    batch_size = positive_int("batch_size", batch_size)
    rng = torch.get_rng_state()
    try:
        rank, world = rank_and_world()
        run = autoattack_run(model, eps=eps, norm=norm, version=version, bounds=bounds, normalization=normalization,
                             seed=seed, autocast=autocast, active_set=active_set, eot_batched=eot_batched,
                             repeats=repeats, steps=steps, n_queries=n_queries, n_target_classes=n_target_classes,
                             progress=progress, bpda=bpda, attacks=attacks, individual=individual,
                             state_path=state_path, resume=resume, channels_last=channels_last, compile=compile,
                             rank=rank, world=world, batch_size=batch_size)
        for x, y, index in progress_bar(batches(data, batch_size, rank, world), desc="autoattack", enabled=progress,
                                        leave=False):
            run.add(x, y, index)
        return run.report()
    finally:
        torch.set_rng_state(rng)


def autoattack_run(model: nn.Module, *, eps: float, norm: str = "linf", version: str = "auto", bounds=(0.0, 1.0),
                   normalization=None, seed: int | None = None, autocast: str | None = "auto", active_set: bool = True,
                   eot_batched="auto", repeats="auto", steps: int = 100, n_queries: int = 5000,
                   n_target_classes: int = 9, progress: bool = True, bpda="auto", attacks=None,
                   individual: bool = False, state_path=None, resume: bool = False, channels_last="auto",
                   compile=False, rank: int = 0, world: int = 1, batch_size: int | None = None) -> AutoAttackRun:
    """An :class:`AutoAttackRun` with :func:`autoattack`'s settings checked, to feed batches to
    (``rank`` / ``world``: this process's share of a ``torch.distributed`` run; ``batch_size``:
    the batches' size where the caller fixes it, kept in the state file). A seed left None is
    drawn from the global RNG."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    threat = ThreatModel.build(eps, norm, bounds, normalization)
    if version not in VERSIONS + ("auto",):
        raise ValueError(f"version must be one of {VERSIONS + ('auto',)}, got {version!r}")
    attacks = _custom_attacks(version, attacks)
    if not isinstance(individual, bool):
        raise TypeError(f"individual must be a bool, got {type(individual).__name__}")
    if repeats != "auto":
        positive_int("repeats", repeats)
    if threat.norm == "l1" and version == "plus":
        warnings.warn("autoattack: the original defines version='plus' for Linf and L2 only; in L1 it runs its "
                      "attacks at the plus settings without the L1 schedule - check the figures", stacklevel=3)
    seed = draw_seed() if seed is None else positive_int("seed", seed + 1) - 1
    check_lever("channels_last", channels_last)
    check_lever("compile", compile)
    check_autocast(autocast)
    if resume and state_path is None:
        raise ValueError("resume=True continues the run recorded in state_path: pass state_path= too")
    plan = dict(version=version, attacks=attacks, individual=individual, repeats=repeats, bpda=bpda,
                progress=progress, autocast=autocast, state_path=state_path, resume=resume,
                channels_last=channels_last, compile=compile, batch_size=batch_size)
    options = dict(autocast=autocast, active_set=active_set, eot_batched=eot_batched,
                   steps=positive_int("steps", steps), n_queries=positive_int("n_queries", n_queries),
                   n_target_classes=positive_int("n_target_classes", n_target_classes))
    return AutoAttackRun(model, threat, seed, plan, options, rank, world)


def _custom_attacks(version: str, attacks) -> tuple[str, ...] | None:
    """The checked ``attacks`` of ``version="custom"`` (None for the other versions)."""
    if version != "custom":
        if attacks is not None:
            raise ValueError(f"attacks= lists the attacks of version='custom'; version={version!r} has its own")
        return None
    attacks = (attacks,) if isinstance(attacks, str) else tuple(attacks or ())
    unknown = [a for a in attacks if a not in ALL_ATTACKS]
    if not attacks or unknown or len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks must list distinct names among {ALL_ATTACKS} for version='custom', "
                         f"got {list(attacks)}")
    return attacks


def _cascade_for(model, setup, threat, seed, plan, options) -> _Cascade:
    """The version's attacks for this model, after the original's checks."""
    chosen = ("rand" if setup.stochastic else "standard") if plan["version"] == "auto" else plan["version"]
    listed = plan["attacks"] if chosen == "custom" else ATTACKS[chosen]
    names = tuple("apgd-dlr" if n == "smoothed-pgd" and threat.norm != "linf" else n for n in listed)
    check_classes_for(names, setup.classes, options["n_target_classes"])
    eot = AUTO_EOT if chosen == "rand" or (chosen in ("custom", "fast") and setup.stochastic) else 1
    return _Cascade(model, setup.attacked, threat, names, chosen, seed, eot, options, plan["progress"],
                    plan["individual"])


class AutoAttackRun:
    """One AutoAttack evaluation fed batch by batch: :meth:`add` attacks a batch (or takes its
    verdicts from the state file) and returns the batch's robust verdicts [B]; :meth:`report`
    gathers every process's verdicts (``world`` > 1) into the report. ``autoattack`` streams its
    data through one; ``evaluate`` feeds it the batches of its own stream."""

    def __init__(self, model, threat, seed, plan, options, rank: int = 0, world: int = 1):
        self.model, self.threat, self.seed, self.plan, self.options = model, threat, seed, plan, options
        self.world, self.device = world, model_device(model)
        self.cascade, self.setup, self.records, self.reps, self.probabilities = None, None, [], 1, False
        self.state = _state(model, threat, seed, plan, options, rank, world)
        self.layout = plan["channels_last"]

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
        self.setup = model_setup(self.model, self.threat, x, self.plan["bpda"], layout, self.plan["compile"], autocast)
        self.state.channels_last, self.state.autocast = self.setup.levers.channels_last, self.setup.levers.autocast
        self.options["autocast"] = self.setup.levers.autocast
        self.probabilities = _outputs_probabilities(self.model, self.setup, x)
        if self.state.active:  # the model's function, beyond its weights and modules
            fingerprint = outputs_fingerprint(self.model, self.setup.forward, x, self.threat.bounds,
                                              self.setup.stochastic)
            self.state.confirm("model_outputs", fingerprint, same_outputs)
        self.cascade = _cascade_for(self.model, self.setup, self.threat, self.seed, self.plan, self.options)
        self.reps = eot_and_repeats(self.setup.stochastic, repeats=self.plan["repeats"])[1]
        self.state.check_counters(self.cascade.names)
        self.cascade.seconds.update(self.state.seconds)
        self.cascade.attacked.update(self.state.attacked)

    def _autocast(self):
        """The precision asked for: ``"auto"`` is timed for the fast version only (fp32 otherwise).
        Under ``torch.distributed`` every process must attack in the same precision, and timings
        differ between processes: there "auto" is bf16 wherever the device has native bf16."""
        asked = self.plan["autocast"]
        if asked != "auto":
            return asked
        if self.plan["version"] != "fast":
            return None
        return ("bf16" if native_bf16(self.device) else None) if self.world > 1 else "auto"

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
        return torch.tensor([r[2] > len(self.cascade.names) for r in batch], dtype=torch.bool)

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
        return [(index, j, int(fell_at[j]), [bool(c[j]) for c in clean], [bool(p[j]) for p in passes],
                 fooled_by[j].tolist()) for j in range(len(y))]

    def report(self) -> AutoAttackReport:
        if self.cascade is None:
            raise ValueError("autoattack: every batch was empty; there are no samples to evaluate")
        records = sorted(_all_processes(self.records, self.world))
        setup = self.setup
        report = _report(self.cascade, self.threat, setup.stochastic, self.reps, self.options["autocast"], records,
                         setup.classes, self.world)
        report.gradients, report.probabilities = setup.gradients, self.probabilities
        report.levers = setup.levers.describe()
        return report


def _state(model, threat, seed, plan, options, rank, world) -> RunState:
    """The resumable run's state (a no-op without ``state_path``); one file per process."""
    path = plan["state_path"]
    if path is None:  # no state file: nothing to hash (the weights' digest costs a pass over them)
        return RunState(None, {}, False)
    if world > 1:
        path = f"{os.fspath(path)}.rank{rank}"
    identity = {"model": model_digest(model), "model_structure": structure_digest(model),
                "norm": threat.norm, "eps": threat.eps, "seed": seed,
                "bounds": repr(threat.bounds), "normalization": repr(threat.normalization),
                "version": plan["version"], "attacks": list(plan["attacks"] or []), "individual": plan["individual"],
                "repeats": plan["repeats"], "world": world, "autocast": plan["autocast"],
                "channels_last": plan["channels_last"], "compile": plan["compile"], "batch_size": plan["batch_size"],
                "bpda": plan["bpda"], "active_set": options["active_set"], "eot_batched": options["eot_batched"],
                # fast's schedule changes between releases: a state file of another one is refused
                "fast": FAST_DESCRIPTION[threat.norm] if plan["version"] == "fast" else None,
                **{k: options[k] for k in ("steps", "n_queries", "n_target_classes")}}
    return RunState(path, identity, plan["resume"], later=("model_outputs",))


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


def _report(cascade, threat, stochastic, reps, autocast, records, classes, world) -> AutoAttackReport:
    n = len(records)
    fell_at = torch.tensor([r[2] for r in records])
    clean = torch.tensor([r[3] for r in records], dtype=torch.float).mean(0)  # per pass
    final = torch.tensor([r[4] for r in records], dtype=torch.float).mean(0)
    names = list(cascade.names)
    after = [float((fell_at > i).float().mean()) for i in range(1, len(names) + 1)]
    if not stochastic:  # one deterministic pass: the cascade's own verdicts
        final = torch.tensor([after[-1]]) if after else clean
    skipped = []
    individual = {}
    if cascade.individual:
        fooled_by = torch.tensor([r[5] for r in records], dtype=torch.bool).view(n, len(names))
        individual = {name: float(((fell_at > 0) & ~fooled_by[:, k]).float().mean()) for k, name in enumerate(names)}
    seconds, attacked = _sum_over_processes(cascade.seconds, world), _sum_over_processes(cascade.attacked, world)
    return AutoAttackReport(
        version=cascade.version, norm=threat.norm, eps=threat.eps, n_samples=n, attacks=names,
        clean_accuracy=Stat.of(clean), robust_after=after, robust_accuracy=Stat.of(final), seconds=seconds,
        attacked=attacked, stochastic=bool(stochastic), eot_iter=cascade.eot_iter, repeats=reps, autocast=autocast,
        skipped=skipped, robust=(fell_at > len(names)).tolist(), classes=classes, individual=individual)


def _sum_over_processes(values: dict, world: int) -> dict:
    parts = _all_processes([values], world)
    return {k: sum(p[k] for p in parts) for k in values}
