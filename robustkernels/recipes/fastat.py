"""The FastAT Benchmark's controlled protocol at this machine's scale (``compare --protocol fastat``).

The benchmark (Pan & Yao 2026, github.com/fzjcdt/FastAT_Benchmark; ResNet-18 on CIFAR-10, 100
epochs) trains every method with one recipe: SGD (lr 0.1, momentum 0.9, weight decay 5e-4),
batch 128, OneCycle, random crop and flip, label smoothing 0.4, weight averaging (tau 0.9995),
the best epoch by validation PGD-10 on held-out training images, three seeds, AutoAttack. Here:
the same recipe on a smaller model and fewer epochs, every method with weight averaging (as the
benchmark's configs set it) and PGD-10 AT with and without it; Free-AT gets half the epochs with
4 replays (the benchmark's 200 epochs / m = 4 minibatch passes, twice the others'). Each run is
written as it ends (``runs/LABEL-seedK.json``), so a killed protocol resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..common import progress_bar, rank_and_world
from ..train import fit, make_method

PROTOCOLS = ("fastat",)  # compare --protocol
AA_VERSIONS = ("auto", "standard", "fast")  # what scores the compared models
REFERENCE = "pgd-at+wa"  # the time ratios' denominator, as in the benchmark
# label -> (AutoAttack %, training time / PGD-10 AT + WA's, clean %): CIFAR-10, ResNet-18, mean of
# three seeds, from the benchmark's benchmark_data.json (commit b99c0de)
PUBLISHED = {
    "pgd-at+wa": (50.49, 1.00, 82.36), "nuat+wa": (50.10, 0.42, 80.98), "liet+wa": (49.99, 0.37, 80.68),
    "fgsm-pgi+wa": (49.89, 0.38, 79.72), "gat+wa": (49.15, 0.41, 85.10), "fgsm-rs-cs+wa": (48.64, 0.26, 80.54),
    "grad-align+wa": (47.99, 0.80, 79.39), "n-fgsm+wa": (47.77, 0.28, 78.59), "aaer+wa": (47.38, 0.27, 77.67),
    "fgsm-mep-cs+wa": (45.35, 0.30, 83.55), "free-at+wa": (44.34, 0.28, 75.20), "pgd-at": (44.33, 0.99, 85.35),
    "fgsm-rs+wa": (43.09, 0.27, 77.66), "elle+wa": (32.46, 0.42, 77.78),
}
METHODS = tuple(PUBLISHED)


@dataclass
class Recipe:
    """The benchmark's training recipe; ``epochs`` and the sizes are this machine's."""

    epochs: int
    eps: float
    augment: bool  # crop and flip (images where a flip keeps the class)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.4
    tau: float = 0.9995
    auto_levers: bool = False  # the library's speed levers (fit(auto_levers=True)) on top
    seeds: tuple = (0, 1, 2)
    eps_warmup_epochs: float = 0.0  # eps (and the step) ramped from 0 over these first epochs, every method alike


@dataclass
class RunResult:
    """One method trained with one seed and scored on the test images."""

    label: str
    seed: int
    clean: float
    robust: float
    train_seconds: float
    epochs: int
    kept_epoch: int
    overfit: bool = False
    machine: str = ""  # where it trained (machine.describe()); "" in runs written before it was kept
    curve: list = field(default_factory=list)  # per epoch: the validation accuracies ([] in older runs)


@dataclass
class Summary:
    """A method over its seeds: means and spreads (fractions), time ratio to the reference."""

    label: str
    clean: float
    clean_std: float
    robust: float
    robust_std: float
    train_seconds: float
    ratio: float = math.nan
    at_chance: bool = False
    pareto: bool = False
    runs: list = field(default_factory=list)


def method_for(label: str, recipe: Recipe):
    """(method, epochs, whether it averages its weights) for a protocol label ``NAME[+wa]``."""
    name, _, suffix = label.partition("+")
    if suffix not in ("", "wa"):
        raise ValueError(f"--methods: {label!r}: the protocol's only suffix is +wa")
    method = make_method(name, eps=recipe.eps, eps_warmup_epochs=recipe.eps_warmup_epochs)
    epochs = recipe.epochs
    if hasattr(method, "replays"):  # Free-AT: twice the minibatch passes of the others, in m replays
        epochs = max(1, 2 * epochs // method.replays)
    return method, epochs, suffix == "wa"


def _recipe_options(recipe: Recipe, averaged: bool) -> dict:
    """fit's options of the benchmark's recipe (besides epochs, data, seed and what to keep)."""
    return dict(batch_size=recipe.batch_size, lr=recipe.lr, optimizer="sgd", momentum=recipe.momentum,
                weight_decay=recipe.weight_decay, schedule=recipe.schedule, augment=recipe.augment,
                augmentations=[f"label_smoothing:{recipe.label_smoothing}"],
                weight_average=recipe.tau if averaged else None, auto_levers=recipe.auto_levers)


TIMING_EPOCHS = 3  # the timing pass: a warm-up epoch, then the median of the others
TIMING_ROUNDS = 2  # over the methods, in alternating order (a slow spell of the machine hits both ends)


def epoch_seconds(make_model, label: str, recipe: Recipe, train, epochs: int = TIMING_EPOCHS) -> list[float]:
    """Seconds of each training epoch of ``label`` under the recipe but the first (a warm-up):
    ``epochs`` epochs, no validation. The protocol's time of a method is their median (over
    rounds, :data:`TIMING_ROUNDS`) times its epochs: the accuracies do not depend on what else the
    machine runs, the times do, so they come from a short pass on a quiet machine
    (``compare --protocol fastat --timing``)."""
    method, _, averaged = method_for(label, recipe)
    history = fit(make_model(0), method, train, epochs=epochs, seed=0, progress=False,
                  **_recipe_options(recipe, averaged))
    return [float(r["train_seconds"]) for r in history[1:]]


def train_one(make_model: Callable[[int], nn.Module], label: str, seed: int, recipe: Recipe, train, val,
              score: Callable[[nn.Module], tuple[float, float]], progress: bool) -> RunResult:
    """Train ``make_model(seed)`` with the method of ``label`` under the recipe and score it."""
    method, epochs, averaged = method_for(label, recipe)
    model = make_model(seed)
    history = fit(model, method, train, val_data=val, epochs=epochs, keep="best-robust", seed=seed, progress=progress,
                  **_recipe_options(recipe, averaged))
    clean, robust = score(model.eval())
    kept = next((r["epoch"] for r in history if r.get("kept")), len(history))
    return RunResult(label, seed, clean, robust, sum(r["train_seconds"] for r in history), epochs, kept,
                     any(r.get("overfit") for r in history), curve=[_curve_point(r) for r in history])


CURVE_KEYS = ("epoch", "eps", "train_acc", "val_clean_acc", "val_fgsm_acc", "val_pgd_acc", "overfit")


def _curve_point(record: dict) -> dict:
    """What a run keeps of an epoch's record: enough to plot and read its validation curve."""
    return {k: record[k] for k in CURVE_KEYS if k in record}


def run_protocol(make_model, labels: Sequence[str], recipe: Recipe, train, val, score, out: str, *,
                 progress: bool = True, on_run: Callable[[RunResult], None] | None = None,
                 machine: str = "") -> list[RunResult]:
    """Every label with every seed (seeds outermost, so a partial run has whole seeds); a run
    already written in ``out/runs`` is read back instead of trained again. ``machine`` is noted
    in each run trained: a table whose times come from several machines says so."""
    for label in labels:
        method_for(label, recipe)  # refuse a bad label before any training
    folder = os.path.join(out, "runs")
    os.makedirs(folder, exist_ok=True)
    _same_recipe(folder, recipe)
    results = []
    jobs = [(seed, label) for seed in recipe.seeds for label in labels]
    first = rank_and_world()[0] == 0
    for seed, label in progress_bar(jobs, desc="fastat protocol", enabled=progress and first):
        path = os.path.join(folder, f"{label}-seed{seed}.json")
        result = _stored(path)
        if result is None:
            result = train_one(make_model, label, seed, recipe, train, val, score, progress=False)
            result.machine = machine
            if first:  # under torchrun every process trained the same model; the first writes it
                with open(path + ".tmp", "w") as f:
                    json.dump(asdict(result), f)
                os.replace(path + ".tmp", path)
        results.append(result)
        if on_run is not None:
            on_run(result)
    return results


def _same_recipe(folder: str, recipe: Recipe) -> None:
    """The runs in ``folder`` are of ``recipe`` (its seeds aside): noted at the first start,
    refused naming what differs at a later one."""
    path, mine = os.path.join(folder, "recipe.json"), {k: v for k, v in asdict(recipe).items() if k != "seeds"}
    if rank_and_world()[0] != 0:
        return
    if os.path.isfile(path):
        with open(path) as f:
            written = json.load(f)
        differ = sorted(k for k in set(mine) | set(written) if mine.get(k) != written.get(k))
        if differ:
            there = ", ".join(f"{k} {written.get(k)!r}" for k in differ)
            raise ValueError(f"{folder} holds runs of another recipe: {there} there; choose another --out")
        return
    with open(path, "w") as f:
        json.dump(mine, f, indent=1)


def _stored(path: str) -> RunResult | None:
    """The run written at ``path``, or None; under ``torch.distributed`` the first process's
    answer for every process (the others may not see its files)."""
    stored = None
    if rank_and_world()[0] == 0 and os.path.isfile(path):
        with open(path) as f:
            stored = json.load(f)
    if rank_and_world()[1] > 1:
        box = [stored]
        torch.distributed.broadcast_object_list(box, src=0)
        stored = box[0]
    return None if stored is None else RunResult(**stored)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def summarize(results: Sequence[RunResult], classes: int, per_epoch: dict | None = None) -> list[Summary]:
    """One :class:`Summary` per label in first-seen order; a method under twice chance clean
    accuracy (2 / ``classes``) is marked and kept off the Pareto front. ``per_epoch`` (label ->
    seconds per epoch, from :func:`epoch_seconds`) gives the training times in place of the runs'
    own clocks."""
    labels = list(dict.fromkeys(r.label for r in results))
    rows = []
    for label in labels:
        runs = [r for r in results if r.label == label]
        clean, robust = _mean_std([r.clean for r in runs]), _mean_std([r.robust for r in runs])
        seconds = _mean_std([r.train_seconds for r in runs])[0]
        if per_epoch is not None:
            if label not in per_epoch:
                raise ValueError(f"the timing pass has no {label!r}: run compare --protocol fastat --timing with it")
            seconds = per_epoch[label] * runs[0].epochs
        rows.append(Summary(label, *clean, *robust, seconds, at_chance=clean[0] < 2.0 / classes, runs=runs))
    ref = next((r for r in rows if r.label == REFERENCE), None)
    for row in rows:
        row.ratio = row.train_seconds / ref.train_seconds if ref is not None else math.nan
    for row in rows:
        row.pareto = not row.at_chance and not any(
            o is not row and not o.at_chance and o.robust >= row.robust and o.train_seconds <= row.train_seconds
            and (o.robust > row.robust or o.train_seconds < row.train_seconds) for o in rows)
    return rows


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 pairs."""
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} and {len(b)} values")
    if len(a) < 3:
        return math.nan

    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2.0 + 1.0
            i = j + 1
        return torch.tensor(out, dtype=torch.float64)

    ra, rb = ranks(list(a)), ranks(list(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float((ra.square().sum() * rb.square().sum()).sqrt())
    return float((ra * rb).sum()) / denominator if denominator > 0 else math.nan


def rank_agreement(rows: Sequence[Summary]) -> tuple[float, int]:
    """(Spearman of our AutoAttack means against the benchmark's, methods in both) over the
    methods that learned."""
    both = [r for r in rows if r.label in PUBLISHED and not r.at_chance]
    return spearman([r.robust for r in both], [PUBLISHED[r.label][0] for r in both]), len(both)


def _spread(mean: float, std: float, row: Summary) -> str:
    """``mean ± std`` in percent; the mean alone for one seed, which has no spread to show."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}%" if len(row.runs) > 1 else f"{100 * mean:.1f}% (1 seed)"


def to_markdown(rows: Sequence[Summary], timing: str | None = None) -> str:
    """The protocol's table: ours (mean ± std over seeds) beside the benchmark's published figures;
    ``timing``: where the times come from, when not the runs' own clocks."""
    lines = ["| method | clean | AutoAttack | train s | time vs " + REFERENCE + " | Pareto | "
             "benchmark AA (ResNet-18) | benchmark time ratio |",
             "|---|---:|---:|---:|---:|:---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r.robust):
        published = PUBLISHED.get(r.label)
        theirs = f"{published[0]:.2f}% | {published[1]:.2f}x" if published else "- | -"
        flags = (" (at chance)" if r.at_chance else "") + (
            " (catastrophic overfitting in a seed)" if any(x.overfit for x in r.runs) else "")
        accuracies = f"{_spread(r.clean, r.clean_std, r)} | {_spread(r.robust, r.robust_std, r)}"
        lines.append(f"| {r.label}{flags} | {accuracies} | {r.train_seconds:.0f} | {r.ratio:.2f}x | "
                     f"{'yes' if r.pareto else ''} | {theirs} |")
    rho, n = rank_agreement(rows)
    agreement = f"{rho:.2f} over {n} methods" if n >= 3 else f"n/a ({n} of the benchmark's methods learned here)"
    lines.append(f"\nSpearman rank correlation of the AutoAttack accuracies with the benchmark's: {agreement}.")
    machines = sorted({x.machine or "not recorded" for r in rows for x in r.runs})
    if timing is not None:
        lines.append(f"\nTraining times: {timing}.")
    elif len(machines) > 1:
        lines.append(f"\nThe training times come from {len(machines)} machines ({'; '.join(machines)}): the time "
                     "ratios mix them; train every run on one machine to compare times.")
    return "\n".join(lines)


def plot(rows: Sequence[Summary], path: str, title: str) -> str:
    """AutoAttack accuracy (mean ± std over seeds) against the training-time ratio, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    chance = [r for r in rows if r.at_chance]  # drawn, not labelled: their accuracy ranks nothing
    if chance:
        ax.scatter([r.ratio for r in chance], [100 * r.robust for r in chance], marker="x", color="0.6",
                   label=f"under 2x chance clean ({len(chance)})", zorder=2)
    for r in rows:
        if r.at_chance:
            continue
        ax.errorbar(r.ratio, 100 * r.robust, yerr=100 * r.robust_std, fmt="o", color="C3" if r.pareto else "C0",
                    markersize=5, capsize=2, zorder=3)
        ax.annotate(r.label, (r.ratio, 100 * r.robust), textcoords="offset points", xytext=(4, 3), fontsize=7)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.ratio)
    ax.plot([r.ratio for r in front], [100 * r.robust for r in front], "--", color="C3", label="Pareto front")
    ax.set(xlabel=f"training time / {REFERENCE}'s", ylabel="AutoAttack accuracy (%)", title=title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ramp(recipe: Recipe) -> str:
    return f" (ramped from 0 over the first {recipe.eps_warmup_epochs:g} epochs)" if recipe.eps_warmup_epochs else ""


def header(recipe: Recipe, *, model: str, data: str, train_size: int, val_size: int, test_size: int,
           aa: str, machine: str) -> str:
    """What the table was measured on, stated at its top."""
    return (f"FastAT protocol at this machine's scale: {model} on {data} ({train_size} training images, "
            f"{val_size} held out for validation), {recipe.epochs} epochs, seeds {list(recipe.seeds)}; "
            f"SGD lr {recipe.lr} momentum {recipe.momentum} weight decay {recipe.weight_decay}, batch "
            f"{recipe.batch_size}, onecycle, {'crop and flip, ' if recipe.augment else ''}label smoothing "
            f"{recipe.label_smoothing}, weight averaging tau {recipe.tau} (+wa), best epoch by validation PGD-10; "
            f"eps {recipe.eps:.4g}{_ramp(recipe)}; {aa} on {test_size} test images; "
            f"{'auto levers on; ' if recipe.auto_levers else ''}"
            f"machine: {machine}. Benchmark columns: ResNet-18, CIFAR-10, 100 epochs (Pan & Yao 2026).")
