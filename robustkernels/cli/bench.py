"""``robustkernels bench``: its options and the run (the cases live in robustkernels.bench)."""

from __future__ import annotations

import argparse

from .args import command


def add_bench(commands) -> None:
    summary = "our kernels vs the formulations users run: ratios, bandwidth, memory; AutoAttack vs torchattacks"
    bench = command(commands, "bench", summary, run_bench)
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the kernels run")
    bench.add_argument("--ops", default="pgd,lwta,noise",
                       help="comma-separated: pgd,lwta,noise,autoattack (AutoAttack vs torchattacks, and fast vs "
                            "standard: minutes), autoattack-fast (only fast vs standard)")
    bench.add_argument("--data-dir", default="../shared/data",
                       help="folder holding mnist/ and cifar-10-batches-py/ (for --ops autoattack)")
    bench.add_argument("--quick", action="store_true", help="small sizes; under a minute on 2 CPU cores")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--no-e2e", action="store_true", help="skip the end-to-end cases")


def run_bench(args: argparse.Namespace) -> int:
    from ..bench import BENCHES, main_bench

    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = sorted(set(ops) - set(BENCHES))
    if unknown:
        raise ValueError(f"--ops must be among {','.join(BENCHES)}; got {','.join(unknown)}")
    if args.device == "cuda" and not __import__("torch").cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available on this machine")
    main_bench(args.device, ops, args.quick, args.json, e2e=not args.no_e2e, data_dir=args.data_dir)
    return 0
