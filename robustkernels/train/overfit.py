"""Catastrophic overfitting (Wong et al. 2020): within an epoch or two a single-step method's
robustness to PGD collapses while its accuracy against FGSM - the attack it trains on - rises.
:func:`overfit_message` reads that off the validation history."""

from __future__ import annotations

MIN_DROP = 0.10  # absolute fall of PGD accuracy from its best epoch (10 points: far above the noise
REL_DROP = 0.30  # of 1,000 validation samples) and at least this share of the best
GAP = 0.30  # FGSM accuracy this far above PGD accuracy: robustness only the training attack sees


def overfit_message(history: list[dict], warmup_epochs: float = 0) -> str | None:
    """A description of the collapse if the last epoch of ``history`` shows one, else ``None``.

    A collapse: FGSM accuracy rising while PGD accuracy either falls at least 10 points and 30%
    below its best earlier epoch, or stays 30 points or more below FGSM accuracy (a collapse in
    the first epochs leaves no good epoch to fall from). Both are far outside what a genuinely
    robust model shows: PGD-AT's FGSM and PGD accuracies stay within a few points.

    An epoch that trained while eps was still ramping up (its 1-based number ``k`` with
    ``k - 1 < warmup_epochs``) is not judged: validation attacks at the full eps, which the model
    has not trained against yet, so a PGD accuracy far below FGSM's is expected there."""
    if history and history[-1].get("epoch", 0) - 1 < warmup_epochs:
        return None
    scored = [r for r in history if r.get("val_pgd_acc") is not None and r.get("val_fgsm_acc") is not None]
    if len(scored) < 2 or scored[-1] is not history[-1]:
        return None
    last, previous = scored[-1], scored[-2]
    best = max(scored[:-1], key=lambda r: r["val_pgd_acc"])
    drop = best["val_pgd_acc"] - last["val_pgd_acc"]
    if drop >= max(MIN_DROP, REL_DROP * best["val_pgd_acc"]) and last["val_fgsm_acc"] > best["val_fgsm_acc"]:
        return (f"catastrophic overfitting at epoch {last['epoch']}: validation PGD accuracy fell from "
                f"{best['val_pgd_acc']:.1%} (epoch {best['epoch']}) to {last['val_pgd_acc']:.1%} while FGSM "
                f"accuracy rose from {best['val_fgsm_acc']:.1%} to {last['val_fgsm_acc']:.1%}")
    if last["val_fgsm_acc"] - last["val_pgd_acc"] >= GAP and last["val_fgsm_acc"] > previous["val_fgsm_acc"]:
        return (f"catastrophic overfitting at epoch {last['epoch']}: validation FGSM accuracy rose to "
                f"{last['val_fgsm_acc']:.1%} while PGD accuracy is {last['val_pgd_acc']:.1%}")
    return None
