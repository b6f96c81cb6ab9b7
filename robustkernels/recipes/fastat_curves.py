"""The FastAT protocol's validation curves: one small panel per method, its validation PGD-10 and
clean accuracy per epoch for every seed - where a method learns, plateaus or collapses, which the
table's single kept epoch does not show."""

from __future__ import annotations

import math
from collections.abc import Sequence


def plot_curves(results: Sequence, path: str, title: str, eps_warmup_epochs: float = 0) -> str | None:
    """Write the panels of ``results`` (RunResult, each with its ``curve``) to ``path``; None (and
    nothing written) when no run kept a curve (runs written before curves were kept)."""
    labels = list(dict.fromkeys(r.label for r in results if r.curve))
    if not labels:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = min(5, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, label in zip(axes.flat, labels):
        for k, run in enumerate(r for r in results if r.label == label and r.curve):
            epochs = [p["epoch"] for p in run.curve]
            ax.plot(epochs, [100 * p.get("val_pgd_acc", math.nan) for p in run.curve], color=f"C{k}", lw=1.2)
            ax.plot(epochs, [100 * p.get("val_clean_acc", math.nan) for p in run.curve], color=f"C{k}", lw=0.8,
                    ls="--")
            kept = next((p for p in run.curve if p["epoch"] == run.kept_epoch), None)
            if kept is not None:
                ax.plot(kept["epoch"], 100 * kept.get("val_pgd_acc", math.nan), "o", color=f"C{k}", ms=3)
        if eps_warmup_epochs:
            ax.axvspan(0, eps_warmup_epochs, color="0.92", zorder=0)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    fig.supxlabel("epoch" + (" (grey: eps ramping up)" if eps_warmup_epochs else ""), fontsize=8)
    fig.supylabel("validation accuracy (%): PGD-10 solid, clean dashed; dot: kept epoch", fontsize=8)
    fig.suptitle(title + " - one colour per seed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
