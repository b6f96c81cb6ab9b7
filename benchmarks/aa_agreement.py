"""Our AutoAttack (standard) against the original (fra31/auto-attack), sample by sample, in Linf,
L2 and L1, on the PGD-AT CNNs of ``robustkernels bench --ops autoattack`` (MNIST eps 0.3 and
CIFAR-10 eps 8/255, trained on the real files in ../shared/data), one process, the same images.

The original is test-only and never vendored: put a checkout of fra31/auto-attack on PYTHONPATH.

    PYTHONPATH=/path/to/auto-attack python benchmarks/aa_agreement.py --samples 100 --json out.json

``--seeds 0,1,2,3,4,5`` runs both at each seed (one case, e.g. ``--cases mnist:l1``) and sets the
per-seed differences beside the original's own: its verdicts at two seeds, for every pair of seeds.
"""

from __future__ import annotations

import itertools
import time

import torch

from robustkernels import machine
from robustkernels.bench.autoattack import pgd_at_case, save_rows, script_parser
from robustkernels.eval import autoattack

# (dataset, norm, eps): the trained threat model, and L2 / L1 radii where the models are neither
# all robust nor all broken (MNIST L1 10 as in the L1 literature's MNIST setting; CIFAR-10 L1 12,
# "Mind the box"'s)
CASES = [("mnist", "linf", 0.3), ("mnist", "l2", 2.0), ("mnist", "l1", 10.0),
         ("cifar10", "linf", 8 / 255), ("cifar10", "l2", 0.5), ("cifar10", "l1", 12.0)]
ORIGINAL_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def original_robust(model, x, y, norm: str, eps: float, seed: int = 0) -> torch.Tensor:
    """[N] the original's per-sample verdicts (standard version)."""
    from autoattack import AutoAttack

    attack = AutoAttack(model, norm=ORIGINAL_NORMS[norm], eps=eps, version="standard", device="cpu", seed=seed,
                        verbose=False)
    adv = attack.run_standard_evaluation(x, y, bs=250)
    with torch.no_grad():
        return model(adv).argmax(1) == y


def compare(data_root: str, samples: int, only: str | None = None, seeds: tuple[int, ...] = (0,)) -> list[dict]:
    """One row per case and seed: both robust accuracies, the per-sample agreement, both timings."""
    rows, cases = [], {}
    for dataset, norm, eps in CASES:
        if only and f"{dataset}:{norm}" not in only.split(","):
            continue
        if dataset not in cases:
            cases[dataset] = pgd_at_case(data_root, dataset, samples)
        model, x, y, _ = cases[dataset]
        for seed in seeds:
            tic = time.perf_counter()
            ours = autoattack(model, (x, y), eps=eps, norm=norm, seed=seed, progress=False)
            ours_s = time.perf_counter() - tic
            tic = time.perf_counter()
            theirs = original_robust(model, x, y, norm, eps, seed)
            theirs_s = time.perf_counter() - tic
            mine = torch.tensor(ours.robust)
            rows.append({"dataset": dataset, "norm": norm, "eps": eps, "samples": samples, "seed": seed,
                         "ours_acc": ours.robust_accuracy.mean, "original_acc": float(theirs.float().mean()),
                         "agreement": float((mine == theirs).float().mean()), "ours_s": ours_s,
                         "original_s": theirs_s, "log": ours.log(), "ours_robust": ours.robust,
                         "original_robust": theirs.tolist()})
            print(format_rows(rows[-1:]), flush=True)
    return rows


def seed_spread(rows: list[dict], side: str) -> dict:
    """Over every pair of seeds of one case: ``side``'s ("ours" / "original") verdicts at one seed
    against its own at the other - the agreement and accuracy gap a run has with itself."""
    pairs = list(itertools.combinations(rows, 2))
    if not pairs:
        return {}
    agree = [float((torch.tensor(a[f"{side}_robust"]) == torch.tensor(b[f"{side}_robust"])).float().mean())
             for a, b in pairs]
    gaps = [abs(a[f"{side}_acc"] - b[f"{side}_acc"]) for a, b in pairs]
    return {"pairs": len(pairs), "agreement_min": min(agree), "agreement_mean": sum(agree) / len(agree),
            "gap_max": max(gaps), "gap_mean": sum(gaps) / len(gaps)}


def format_spread(name: str, spread: dict) -> str:
    """One line: ``name``'s agreement with itself and its accuracy gap, as :func:`seed_spread` gives them."""
    return (f"{name} against itself over {spread['pairs']} pairs of seeds: agreement "
            f"{100 * spread['agreement_min']:.1f}% (min) / {100 * spread['agreement_mean']:.1f}% (mean), "
            f"accuracy gap {100 * spread['gap_max']:.1f} (max) / {100 * spread['gap_mean']:.2f} (mean) points")


def format_rows(rows: list[dict]) -> str:
    return "\n".join(f"| {r['dataset']} | {r['norm']} | {r['eps']:.4g} | {r['samples']} | {r['seed']} | "
                     f"{100 * r['ours_acc']:.1f}% | "
                     f"{100 * r['original_acc']:.1f}% | {100 * r['agreement']:.1f}% | {r['ours_s']:.0f} | "
                     f"{r['original_s']:.0f} |" for r in rows)


def main() -> None:
    parser = script_parser(__doc__, samples=100)
    parser.add_argument("--cases", default=None, help="comma-separated DATASET:NORM, e.g. mnist:linf (default: all)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2,3,4,5 (default: 0)")
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    print(machine.describe())
    print("| data | norm | eps | images | seed | ours | original | per-sample agreement | ours s | original s |")
    print("| --- " * 10 + "|")
    rows = compare(args.data_dir, args.samples, args.cases, seeds)
    cases = {(r["dataset"], r["norm"]) for r in rows}
    for case in sorted(cases):
        same = [r for r in rows if (r["dataset"], r["norm"]) == case]
        if len(same) > 1:  # a spread needs two seeds
            for side in ("ours", "original"):
                print(f"{case[0]} {case[1]}: " + format_spread(side, seed_spread(same, side)))
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
