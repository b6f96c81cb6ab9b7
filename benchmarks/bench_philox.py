"""Philox stream: our kernels vs the eager reference (same draws) and vs torch.rand / torch.randn
(the eager generators, different draws), in one process. Prints a ratio table.

    python benchmarks/bench_philox.py [--device cpu|cuda] [--sizes 65536,1048576]
"""

import argparse

import torch

import robustkernels
from robustkernels import ops
from robustkernels.bench.timing import format_table, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="65536,1048576,4194304")
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    backends = [b for b in robustkernels.available_backends(args.device) if b != "reference"]
    if args.device == "cpu":  # the interpreter measures Python, not the kernel
        backends = [b for b in backends if b != "triton"]
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        for name, draw, eager in (
            ("uniform", ops.philox_uniform, torch.rand),
            ("normal", ops.philox_normal, torch.randn),
        ):
            t_eager = median_seconds(lambda: eager(n, device=args.device), repeat=args.repeat, device=args.device)
            for per_block in (1, 4):
                def run(backend):
                    with robustkernels.use_backend(backend):
                        return median_seconds(lambda: draw(n, 1234, 0, device=args.device, per_block=per_block),
                                              repeat=args.repeat, device=args.device)

                ref = run("reference")
                for backend in backends:
                    t = run(backend)
                    rows.append([name, n, per_block, backend, f"{ref * 1e3:.3f}", f"{t * 1e3:.3f}", f"{ref / t:.1f}x",
                                 f"{t_eager / t:.2f}x", f"{n * 4 / t / 1e9:.2f}"])
    print(
        f"device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeat}"
    )
    print(format_table(["draw", "n", "per block", "backend", "reference ms", "backend ms", "vs reference",
                        "vs torch.rand/randn", "GB/s written"], rows))


if __name__ == "__main__":
    main()
