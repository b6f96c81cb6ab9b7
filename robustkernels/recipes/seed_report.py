"""The seed report's table on real data: ``robustkernels demo --dataset cifar10 --data-dir DIR``
trains, on the CIFAR-10 files, the rows our users know from the student report that started the
project - regular training, Gaussian-noise augmentation, label smoothing, smoothing + PGD,
smoothing + PGD + FGSM, smoothing + PGD + FGSM + CW (the mixed method), the same with PNI, and
Stochastic LWTA - plus an IBP-trained row for the certified column, and evaluates each the same
way on the same test images: clean, FGSM, PGD-20 and CW-inf accuracy, the honest AutoAttack
(rand, with EOT, for the stochastic rows) and IBP-certified accuracy (deterministic rows)."""

from __future__ import annotations

import time

import torch

from ..data import load_cifar10
from ..eval import autoattack, certified_accuracy, evaluate
from ..models import build_model
from ..train import fit, make_method

EPS = 8 / 255
SMOOTH = "label_smoothing:0.1"
# label: (activation, pni, method, method options, augmentations)
ROWS = {
    "regular training": ("relu", False, "standard", {}, ()),
    "Gaussian-noise augmentation": ("relu", False, "standard", {}, ("gaussian_noise:0.1",)),
    "label smoothing": ("relu", False, "standard", {}, (SMOOTH,)),
    "smoothing + PGD": ("relu", False, "pgd_at", {}, (SMOOTH,)),
    "smoothing + PGD + FGSM": ("relu", False, "mixed", {"kinds": ("pgd", "fgsm")}, (SMOOTH,)),
    "smoothing + PGD + FGSM + CW (mixed)": ("relu", False, "mixed", {"kinds": ("pgd", "fgsm", "cw")}, (SMOOTH,)),
    "the same + PNI": ("relu", True, "mixed", {"kinds": ("pgd", "fgsm", "cw")}, (SMOOTH,)),
    "Stochastic LWTA (smoothing + PGD)": ("lwta", False, "pgd_at", {}, (SMOOTH,)),
    "IBP (certified training; not in the seed report)": ("relu", False, "ibp", {}, ()),
}


def train_row(label: str, x, y, *, epochs: int, seed: int, progress: bool):
    activation, pni, method, options, augmentations = ROWS[label]
    torch.manual_seed(seed)
    model = build_model("cnn", activation=activation, pni=pni, in_channels=3, image_size=32)
    fit(model, make_method(method, eps=EPS, steps=7, **options), (x, y), epochs=epochs, batch_size=128, lr=3e-3,
        optimizer="adam", schedule="cosine", weight_decay=0.0, augment=True, augmentations=augmentations, seed=seed,
        progress=progress)
    return model.eval()


def seed_report(data_dir: str, *, epochs: int = 6, samples: int = 400, seed: int = 0, progress: bool = True,
        rows=tuple(ROWS)) -> str:
    """Train every row, evaluate each on the first ``samples`` test images (every column on the
    same images), and return the Markdown table with its legend."""
    start = time.perf_counter()
    (x, y), (x_test, y_test) = load_cifar10(data_dir, train=True), load_cifar10(data_dir, train=False)
    x_test, y_test = x_test[:samples], y_test[:samples]
    lines = ["| model | clean | FGSM | PGD | CW | AutoAttack | certified | train s |", "|---" * 8 + "|"]
    for label in rows:
        tic = time.perf_counter()
        model = train_row(label, x, y, epochs=epochs, seed=seed, progress=progress)
        trained = time.perf_counter() - tic
        report = evaluate(model, (x_test, y_test), eps=EPS, attacks=("fgsm", "pgd", "cw"), checks=False,
                          progress=progress, generator=torch.Generator().manual_seed(seed))
        aa = autoattack(model, (x_test, y_test), eps=EPS, seed=seed, progress=progress)
        stochastic = ROWS[label][0] == "lwta" or ROWS[label][1]
        certified = "n/a (stochastic)" if stochastic else \
            f"{100 * certified_accuracy(model, (x_test, y_test), EPS).certified_accuracy:.1f}%"
        cells = [label, str(report.clean_accuracy)] + [str(report.attacks[a].robust_accuracy) for a in
                                                        ("fgsm", "pgd", "cw")]
        cells += [f"{aa.robust_accuracy} ({aa.version})", certified, f"{trained:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    header = (f"CIFAR-10 files ({len(y)} training images; every column on the first {len(y_test)} test images), "
              f"small CNN, {epochs} epochs each (Adam 3e-3, cosine, crop+flip), Linf eps = 8/255, attacks in "
              "training with 7 steps")
    legend = ("FGSM, PGD-20 and CW-inf (PGD-30 on the CW margin), with EOT-20 for the stochastic rows (± over 5 "
              "passes); AutoAttack standard, or rand (APGD-CE + APGD-DLR with EOT-20) for the stochastic rows; "
              "certified: CROWN-IBP bounds (the larger of CROWN-IBP and IBP with the last layer folded into the "
              "margins). "
              f"Total {time.perf_counter() - start:.0f} s on {torch.get_num_threads()} threads.")
    return header + "\n\n" + "\n".join(lines) + "\n\n" + legend
