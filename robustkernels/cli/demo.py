"""``robustkernels demo``: its options and the run (the experiment is robustkernels.recipes.demo)."""

from __future__ import annotations

from .args import command, integer


def add_demo(commands) -> None:
    p = command(commands, "demo", "train standard / PGD-AT / LWTA / PNI models on digits; robustness table",
                 run_demo)
    from ..recipes.demo import DATASETS

    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="cifar10: the seed report's eight rows on the CIFAR-10 files of --data-dir (about 30 min)")
    p.add_argument("--data-dir", default="../shared/data/cifar-10-batches-py", help="for --dataset cifar10")
    p.add_argument("--epochs", type=integer(), default=None, help="training epochs per model (15 digits, 6 cifar10)")
    p.add_argument("--seed", type=integer(minimum=0), default=0, help="seed of every random choice")
    p.add_argument("--check-samples", type=integer(), default=100,
                   help="samples for the gradient-masking checks")
    p.add_argument("--out", default=None, help="also write each model's report (md, json, plots) here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they are off when piped anyway)")


def run_demo(args) -> int:
    from ..recipes.demo import run_demo

    if args.dataset == "cifar10":
        from ..recipes.seed_report import seed_report

        print(seed_report(args.data_dir, epochs=args.epochs or 6, seed=args.seed, progress=not args.no_progress))
        return 0
    args.epochs = args.epochs or 15
    print(run_demo(epochs=args.epochs, seed=args.seed, check_samples=args.check_samples, out=args.out,
              progress=not args.no_progress))
    return 0
