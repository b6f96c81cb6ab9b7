"""Our AutoAttack (standard) against the original (fra31/auto-attack), sample by sample, in Linf,
L2 and L1, on the PGD-AT CNNs of ``robustkernels bench --ops autoattack`` (MNIST eps 0.3 and
CIFAR-10 eps 8/255, trained on the real files in ../shared/data), one process, the same images.

The original is test-only and never vendored: put a checkout of fra31/auto-attack on PYTHONPATH.

    PYTHONPATH=/path/to/auto-attack python benchmarks/aa_agreement.py --samples 100 --json out.json
"""

from __future__ import annotations

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


def original_robust(model, x, y, norm: str, eps: float) -> torch.Tensor:
    """[N] the original's per-sample verdicts (standard version, seed 0)."""
    from autoattack import AutoAttack

    attack = AutoAttack(model, norm=ORIGINAL_NORMS[norm], eps=eps, version="standard", device="cpu", seed=0,
                        verbose=False)
    adv = attack.run_standard_evaluation(x, y, bs=250)
    with torch.no_grad():
        return model(adv).argmax(1) == y


def compare(data_root: str, samples: int, only: str | None = None) -> list[dict]:
    rows, cases = [], {}
    for dataset, norm, eps in CASES:
        if only and f"{dataset}:{norm}" not in only.split(","):
            continue
        if dataset not in cases:
            cases[dataset] = pgd_at_case(data_root, dataset, samples)
        model, x, y, _ = cases[dataset]
        tic = time.perf_counter()
        ours = autoattack(model, (x, y), eps=eps, norm=norm, seed=0, progress=False)
        ours_s = time.perf_counter() - tic
        tic = time.perf_counter()
        theirs = original_robust(model, x, y, norm, eps)
        theirs_s = time.perf_counter() - tic
        mine = torch.tensor(ours.robust)
        rows.append({"dataset": dataset, "norm": norm, "eps": eps, "samples": samples,
                     "ours_acc": ours.robust_accuracy.mean, "original_acc": float(theirs.float().mean()),
                     "agreement": float((mine == theirs).float().mean()), "ours_s": ours_s, "original_s": theirs_s,
                     "log": ours.log()})
        print(format_rows(rows[-1:]), flush=True)
    return rows


def format_rows(rows: list[dict]) -> str:
    return "\n".join(f"| {r['dataset']} | {r['norm']} | {r['eps']:.4g} | {r['samples']} | {100 * r['ours_acc']:.1f}% | "
                     f"{100 * r['original_acc']:.1f}% | {100 * r['agreement']:.1f}% | {r['ours_s']:.0f} | "
                     f"{r['original_s']:.0f} |" for r in rows)


def main() -> None:
    parser = script_parser(__doc__, samples=100)
    parser.add_argument("--cases", default=None, help="comma-separated DATASET:NORM, e.g. mnist:linf (default: all)")
    args = parser.parse_args()
    print(machine.describe())
    print("| data | norm | eps | images | ours | original | per-sample agreement | ours s | original s |")
    print("| --- " * 9 + "|")
    rows = compare(args.data_dir, args.samples, args.cases)
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
