"""Robustness against cost: train several methods on the same model, data, epochs and schedule,
evaluate each the same way (AutoAttack), and tabulate clean / robust accuracy against training
time, with the Pareto front (no other run is both cheaper and more robust)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..train.methods import Method
from ..train.trainer import fit


@dataclass
class CompareRow:
    """One trained method: its settings, accuracies (fractions) and seconds."""

    name: str
    epochs: int
    auto_levers: bool
    train_seconds: float  # the training steps' time (fit's per-epoch train_seconds summed)
    clean_accuracy: float
    robust_accuracy: float
    eval_seconds: float
    fit_seconds: float = 0.0  # fit's wall clock, with per-epoch validation and checkpoints
    overfit: bool = False
    pareto: bool = False
    at_chance: bool = False  # clean accuracy not clearly above 1/K: never on the Pareto front
    kept_epoch: int = 0  # the epoch whose weights were scored (fit's keep="best-robust"; else the last)


@dataclass
class Contender:
    """What to train: a label, a fresh method, the epochs and whether ``auto_levers=True``."""

    label: str
    method: Method
    epochs: int
    auto_levers: bool = False


def pareto_front(rows: Sequence[CompareRow]) -> None:
    """Mark each row that no other row beats on both robust accuracy and training time; a row at
    chance is never on the front (its robust accuracy means nothing) and beats no other."""
    ranked = [r for r in rows if not r.at_chance]
    for row in rows:
        row.pareto = not row.at_chance and not any(
            o is not row and o.robust_accuracy >= row.robust_accuracy and o.train_seconds <= row.train_seconds
            and (o.robust_accuracy > row.robust_accuracy or o.train_seconds < row.train_seconds) for o in ranked)


def compare(make_model: Callable[[], nn.Module], contenders: Sequence[Contender], train_data, test_data, *,
            evaluate: Callable[[nn.Module, object], tuple[float, float, int]], progress: bool = True,
            on_row: Callable[[CompareRow], None] | None = None, **fit_options) -> list[CompareRow]:
    """Train a fresh ``make_model()`` (same seed) with each contender, time it, and score it with
    ``evaluate(model, test_data) -> (clean, robust, samples scored)``; ``on_row`` sees each row
    as it is done. A row whose clean accuracy is not clearly above chance (the evaluation's
    check: 3 standard errors and 5 points over 1/K) is marked ``at_chance``.
    ``fit_options`` go to every :func:`~robustkernels.train.fit` (same batch, lr, schedule,
    augmentation, seed)."""
    rows = []
    for c in contenders:
        model = make_model()
        tic = time.perf_counter()
        history = fit(model, c.method, train_data, epochs=c.epochs, auto_levers=c.auto_levers, progress=progress,
                      **fit_options)
        wall = time.perf_counter() - tic
        model.eval()
        tic = time.perf_counter()
        clean, robust, scored = evaluate(model, test_data)
        seconds = sum(r["train_seconds"] for r in history)
        rows.append(CompareRow(c.label, c.epochs, c.auto_levers, seconds, clean, robust,
                               time.perf_counter() - tic, fit_seconds=wall,
                               overfit=any(r.get("overfit") for r in history),
                               kept_epoch=next((r["epoch"] for r in history if r.get("kept")), len(history)),
                               at_chance=_at_chance(model, test_data, clean, scored)))
        if on_row is not None:
            on_row(rows[-1])
    pareto_front(rows)
    return rows


def _at_chance(model: nn.Module, test_data, clean: float, scored: int) -> bool:
    from ..common import frozen_model
    from ..data import batches
    from ..eval.checks import above_chance

    x = next(batches(test_data, 1))[0]
    with frozen_model(model, "eval"), torch.no_grad():
        classes = int(model(x.to(next(model.parameters()).device)).shape[1])
    return above_chance(clean, classes, scored).status != "pass"


def to_markdown(rows: Sequence[CompareRow], reference: str | None = None) -> str:
    """The table; ``reference`` (a row's name) adds each row's training-time ratio to it."""
    ref = next((r for r in rows if r.name == reference), None)
    lines = ["| method | epochs | kept epoch | clean | robust (AA) | train time | vs " + (reference or "-")
             + " | Pareto |",
             "|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        ratio = "-" if ref is None else f"{ref.train_seconds / r.train_seconds:.2f}x cheaper"
        ratio = "reference" if r is ref else ratio
        flag = "yes" if r.pareto else ""
        notes = (" (catastrophic overfitting)" if r.overfit else "") + (" (at chance)" if r.at_chance else "")
        lines.append(f"| {r.name}{notes} | {r.epochs} | {r.kept_epoch or r.epochs} | "
                     f"{100 * r.clean_accuracy:.1f}% | {100 * r.robust_accuracy:.1f}% | {r.train_seconds:.0f} s | "
                     f"{ratio} | {flag} |")
    return "\n".join(lines)


def plot(rows: Sequence[CompareRow], path: str | os.PathLike, title: str) -> str:
    """Robust accuracy against training time (log scale), one point per method, the Pareto front joined."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r.train_seconds, 100 * r.robust_accuracy, s=40, color="C3" if r.pareto else "C0", zorder=3)
        ax.annotate(r.name, (r.train_seconds, 100 * r.robust_accuracy), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.train_seconds)
    ax.plot([r.train_seconds for r in front], [100 * r.robust_accuracy for r in front], color="C3",
            linestyle="--", label="Pareto front")
    ax.set_xscale("log")
    # labels at 1, 2 and 5 per decade only: labelling every minor tick ran them together ("80 90100")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    top = max([100 * r.robust_accuracy for r in rows] + [1])
    ax.set(xlabel="training time (s, log scale)", ylabel="AutoAttack accuracy (%)", title=title,
           ylim=(0, math.ceil(top * 1.25)))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.fspath(path)


def rows_as_dicts(rows: Sequence[CompareRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def autoattack_scorer(eps: float, *, samples: int | None, batch_size: int = 250, seed: int = 0,
                      progress: bool = False, normalization=None, version: str = "auto") -> Callable[
                          [nn.Module, object], tuple[float, float, int]]:
    """``(model, data) -> (clean, AA robust accuracy, samples)`` on the first ``samples`` test points
    of ``data`` (tensors or a Dataset, streamed; AutoAttack's ``version``, by default chosen
    automatically: rand for a stochastic model; ``normalization`` as for the attacks)."""
    from ..data import take
    from ..eval import autoattack

    def score(model: nn.Module, data) -> tuple[float, float, int]:
        report = autoattack(model, take(data, 0, samples), eps=eps, batch_size=batch_size, seed=seed,
                            progress=progress, normalization=normalization, version=version)
        return report.clean_accuracy.mean, report.robust_accuracy.mean, report.n_samples

    return score
