"""``robustkernels demo``: train a standard, a PGD-AT, an LWTA and a PNI model on the bundled
digits and print their robustness table - a few minutes on 2 CPU cores, no download."""

from __future__ import annotations

import os
import sys
import time

import torch

from ..data import load_digits
from ..eval import evaluate
from ..models import build_model
from ..train import fit, make_method

DATASETS = ("digits", "cifar10")  # digits: this demo; cifar10: the seed report (recipes.seed_report)
EPS = 0.1  # digits pixels are multiples of 1/16; 0.1 is about 1.6 grey levels
DEMO_MODELS = {  # label: (activation, pni, method)
    "standard": ("relu", False, "standard"),
    "PGD-AT": ("relu", False, "pgd_at"),
    "LWTA + PGD-AT": ("lwta", False, "pgd_at"),
    "PNI + PGD-AT (pni_at)": ("relu", True, "pni_at"),
}


def train_demo_model(label: str, x, y, *, epochs: int, seed: int, eps: float = EPS, progress: bool = True,
                     checkpoint_path: str | None = None):
    """The demo's ``label`` model trained on (x, y); with ``checkpoint_path``, saved there as
    ``robustkernels train`` saves (so ``robustkernels eval --checkpoint`` reads it)."""
    activation, pni, method = DEMO_MODELS[label]
    torch.manual_seed(seed)
    model = build_model("cnn", activation=activation, pni=pni, in_channels=1, image_size=8)
    meta = dict(model="cnn", activation=activation, pni=pni, in_channels=1, image_size=8, num_classes=10,
                dataset="digits", eps=eps, norm="linf", method=method, normalization=None)
    fit(model, make_method(method, eps=eps, steps=10), (x, y), epochs=epochs, batch_size=64, lr=3e-3,
        optimizer="adam", schedule="cosine", weight_decay=0.0, seed=seed, progress=progress,
        checkpoint_path=checkpoint_path, meta=meta)
    return model.eval()


def _say(text: str) -> None:
    """One line per stage on stderr, so a piped or logged demo is not silent for minutes."""
    print(f"demo: {text}", file=sys.stderr, flush=True)


def _checks(report) -> str:
    """``"5 pass"``, or the count and the names of the checks that did not pass."""
    status = [c.status for c in report.checks]
    parts = [f"{status.count('pass')} pass"] if "pass" in status else []
    warned = [c.name for c in report.checks if c.status == "warn"]
    if warned:
        parts.append(f"{len(warned)} warn ({'; '.join(warned)})")
    return ", ".join(parts) or "-"


LEGEND = """Columns: clean, FGSM, PGD (PGD-20), CW (CW-inf: PGD-30 on the CW margin loss) are test accuracies;
an attacked sample counts only if it is classified correctly both clean and after the attack. Worst
case: correct after every attack. EOT: the k passes averaged per gradient for a stochastic model
(EOT-20), - for a deterministic one. ±: standard deviation over 5 evaluation passes with fresh noise
(stochastic models). Masking checks: the gradient-masking checks that passed (clean accuracy above
chance; iterative >= single-step; accuracy falls as eps grows; unbounded eps -> ~0%; Square not
stronger; EOT on vs off where stochastic), and the names of any that warned."""


def table(rows: list[tuple[str, object, float]]) -> str:
    """Markdown table: one row per (label, report, training seconds)."""
    attacks = list(rows[0][1].attacks)
    head = ["model", "clean"] + [a.upper() if a in ("fgsm", "pgd", "cw") else a for a in attacks] + [
        "worst case", "EOT", "masking checks", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, r, seconds in rows:
        cells = [label, str(r.clean_accuracy)] + [str(r.attacks[a].robust_accuracy) for a in attacks] + [
            str(r.worst_case), f"{r.eot_iter}" if r.stochastic else "-", _checks(r), f"{seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(
    *,
    epochs: int = 15,
    seed: int = 0,
    check_samples: int = 100,
    samples: int | None = None,
    out: str | None = None,
    progress: bool = True,
    models: tuple[str, ...] = tuple(DEMO_MODELS),
) -> str:
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits(seed=seed)
    x_test, y_test = x_test[:samples], y_test[:samples]
    rows = []
    for i, label in enumerate(models):
        folder = None if out is None else os.path.join(out, label.split()[0].lower().replace("-", "_"))
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
        _say(f"training {label} ({i + 1}/{len(models)}, {epochs} epochs)")
        tic = time.perf_counter()
        model = train_demo_model(label, x_train, y_train, epochs=epochs, seed=seed, progress=progress,
                                 checkpoint_path=None if folder is None else os.path.join(folder, "checkpoint.pt"))
        trained = time.perf_counter() - tic
        _say(f"evaluating {label} (trained in {trained:.0f} s)")
        report = evaluate(model, (x_test, y_test), eps=EPS, attacks=("fgsm", "pgd", "cw"), progress=progress,
                          check_samples=check_samples, generator=torch.Generator().manual_seed(seed), title=label)
        rows.append((label, report, trained))
        if folder is not None:
            report.to_json(os.path.join(folder, "report.json"))
            with open(os.path.join(folder, "report.md"), "w") as f:
                f.write(report.to_markdown() + "\n")
            report.plot(folder)
            _say(f"wrote {folder}: checkpoint.pt (robustkernels eval --checkpoint), report.md, report.json, plots")
    text = (
        f"Digits (sklearn, {len(y_train)} train / {len(y_test)} test), small CNN, Linf eps = {EPS}; "
        f"FGSM, PGD-20, CW-inf (PGD-30 on the CW margin loss); stochastic models evaluated with EOT.\n\n"
        + table(rows)
        + "\n\n"
        + LEGEND
        + f"\n\nTotal time: {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} threads."
    )
    return text
