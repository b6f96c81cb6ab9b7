"""``autoattack(version="fast")`` against ``standard`` on the CNNs the bench never trains: the
LeNet-like MNIST CNN and the BatchNorm/ELU/reflect-padding CIFAR-10 CNN of
``benchmarks/aa_per_attack.py``, trained here with PGD-AT on the real files. Per seed, in one
process: standard, then fast at its default ``autocast="auto"``, then fast in fp32 - the rows and
table of ``robustkernels bench --ops autoattack-fast``.

    python benchmarks/aa_fast_heldout.py --samples 500 --seeds 0 --json heldout.json
"""

from __future__ import annotations

import os

from aa_per_attack import MODELS

from robustkernels import machine
from robustkernels.bench.aa_models import EPS, train_pgd_at
from robustkernels.bench.autoattack import FOLDERS, fast_case_rows, format_fast_rows, save_rows, script_parser
from robustkernels.data import load_dataset


def main() -> None:
    parser = script_parser(__doc__, samples=500)
    parser.add_argument("--datasets", default="mnist,cifar10")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (both versions draw from each)")
    args = parser.parse_args()
    print(machine.describe())
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for dataset in args.datasets.split(","):
        label, factory = MODELS[dataset]
        folder = os.path.join(args.data_dir, FOLDERS[dataset])
        model = train_pgd_at(dataset, folder, factory=factory, samples=6000, epochs=3)
        _, (x, y) = load_dataset(dataset, folder)
        case = f"{dataset} {label} (held out), {args.samples} images"
        rows += fast_case_rows(case, model, x[:args.samples], y[:args.samples], EPS[dataset], seeds)
        print(format_fast_rows(rows[-len(seeds):]), flush=True)
    print(format_fast_rows(rows))
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
