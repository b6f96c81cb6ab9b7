"""AutoAttack's four attacks one by one, ours against the original (fra31/auto-attack), on models
of shapes the bench does not use: a LeNet-like MNIST CNN (5x5 convolutions with 32 and 64
channels, max pooling, fc 128) and a CIFAR-10 CNN with BatchNorm, ELU, reflect padding and average
pooling, both trained here with PGD-AT (eps ramped over the first epoch) on the real files. Each
attack runs, for both, on the same points: those the original's cascade still has (standard
version, Linf, seed 0, 100 iterations, 9 targets, 5000 queries), four times in the order ours,
original, original, ours (whoever runs first pays the cold caches: a new batch shape's convolution
primitives); the seconds are each side's mean of its two runs. One process, wall-clock seconds;
the ratio is the original's seconds over ours.

    PYTHONPATH=/path/to/auto-attack python benchmarks/aa_per_attack.py --samples 200 --json out.json
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from robustkernels import machine
from robustkernels.bench.aa_models import EPS, train_pgd_at
from robustkernels.bench.autoattack import FOLDERS, save_rows, script_parser
from robustkernels.data import load_dataset
from robustkernels.eval.aa_versions import version_for
from robustkernels.eval.suite import autoattack_attack
from robustkernels.threat import ThreatModel


def lenet_like(channels: int, side: int) -> nn.Module:
    out = ((side - 4) // 2 - 4) // 2  # two 5x5 convolutions, each followed by 2x2 pooling
    return nn.Sequential(nn.Conv2d(channels, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * out * out, 128), nn.ReLU(), nn.Linear(128, 10))


def bn_elu_cnn(channels: int, side: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(32), nn.ELU(),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ELU(), nn.AvgPool2d(2),
                         nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ELU(), nn.Flatten(),
                         nn.Linear(64 * (side // 4) ** 2, 128), nn.ELU(), nn.Linear(128, 10))


MODELS = {"mnist": ("LeNet-like CNN", lenet_like), "cifar10": ("BatchNorm/ELU CNN", bn_elu_cnn)}


def ours(name: str, model, eps: float):
    """Our attack as our AutoAttack standard runs it."""
    stage = next(s for s in version_for("standard", "linf").stages if s.name == name)
    return autoattack_attack(stage, model, ThreatModel.build(eps, "linf"), generator=torch.Generator().manual_seed(0))


def original(name: str, model, eps: float):
    from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from autoattack.fab_pt import FABAttack_PT
    from autoattack.square import SquareAttack

    common = dict(eps=eps, norm="Linf", seed=0, verbose=False, device="cpu")
    if name == "apgd-ce":
        return APGDAttack(model, n_restarts=1, n_iter=100, eot_iter=1, rho=0.75, loss="ce", **common).perturb
    if name == "apgd-t":
        return APGDAttack_targeted(model, n_restarts=1, n_iter=100, n_target_classes=9, **common).perturb
    if name == "fab-t":
        fab = FABAttack_PT(model, n_restarts=1, n_iter=100, n_target_classes=9, **common)
        fab.targeted = True
        return fab.perturb
    return SquareAttack(model, p_init=0.8, n_queries=5000, n_restarts=1, resc_schedule=False, **common).perturb


def _robust(model, adv, y) -> torch.Tensor:
    with torch.no_grad():
        return model(adv).argmax(1) == y


def compare(data_root: str, dataset: str, samples: int) -> list[dict]:
    label, factory = MODELS[dataset]
    folder = os.path.join(data_root, FOLDERS[dataset])
    model = train_pgd_at(dataset, folder, factory=factory, samples=6000, epochs=3)
    _, (x, y) = load_dataset(dataset, folder)
    x, y, eps = x[:samples], y[:samples], EPS[dataset]
    todo = _robust(model, x, y)
    rows = []
    for name in ("apgd-ce", "apgd-t", "fab-t", "square"):
        xs, ys = x[todo], y[todo]
        seconds = {"ours": 0.0, "original": 0.0}
        for who, build in (("ours", ours), ("original", original), ("original", original), ("ours", ours)):
            attack = build(name, model, eps)  # ABBA: each side once first (cold caches), once warm
            tic = time.perf_counter()
            adv = torch.cat([attack(a, b) for a, b in zip(xs.split(250), ys.split(250))])
            seconds[who] += (time.perf_counter() - tic) / 2
            robust = _robust(model, adv, ys)
            seconds[f"{who}_robust"] = int(robust.sum())
            if who == "original":  # the next attack runs on the original's survivors
                nxt = todo.clone()
                nxt[todo.nonzero().squeeze(1)] = robust
        rows.append({"model": f"{dataset} {label}", "attack": name, "points": int(todo.sum()), **seconds,
                     "ratio": seconds["original"] / seconds["ours"]})
        print(format_rows(rows[-1:], header=False), flush=True)
        todo = nxt
    return rows


def format_rows(rows: list[dict], header: bool = True) -> str:
    lines = ["| model | attack | points | ours s | original s | original / ours | left robust (ours / original) |",
             "| --- " * 7 + "|"] if header else []
    lines += [f"| {r['model']} | {r['attack']} | {r['points']} | {r['ours']:.1f} | {r['original']:.1f} | "
              f"{r['ratio']:.2f}x | {r['ours_robust']} / {r['original_robust']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = script_parser(__doc__, samples=200)
    parser.add_argument("--datasets", default="mnist,cifar10")
    args = parser.parse_args()
    print(machine.describe())
    rows = [r for d in args.datasets.split(",") for r in compare(args.data_dir, d, args.samples)]
    print(format_rows(rows))
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
