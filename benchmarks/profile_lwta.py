"""Where LWTA's forward+backward time goes against ReLU's, on this CPU and ISA (the profile
behind the "LWTA fwd+bwd <= 1.5x ReLU" target).

    python benchmarks/profile_lwta.py [--repeat 11]
    ATEN_CPU_CAPABILITY=avx2 ROBUSTKERNELS_CPU_ISA=avx2 python benchmarks/profile_lwta.py
    MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000 python benchmarks/profile_lwta.py

Three parts: (1) the bench shape [128, 160, 32, 32] fp32, each pass alone, LWTA (soft sampling,
T = 0.67, pairs) against ReLU; (2) what a fresh 80 MiB output costs before anything is computed
(under glibc's default malloc it comes back from the kernel as zeroed pages on every call; with
the settings above it is reused); (3) the kernel's arithmetic per pair of competitors, on a shape
that stays in cache, one thread: the Philox draw alone, then the whole forward and backward
(draw, logistic noise, exp, two divisions). The backward recomputes the draw and the weights
(nothing is kept between the passes), so the arithmetic is paid twice.
"""

from __future__ import annotations

import argparse

import torch

from robustkernels import machine, ops
from robustkernels.bench.timing import format_table, median_seconds
from robustkernels.ops import seed_tensor
from robustkernels.ops.philox import philox_uniform

SHAPE = (128, 160, 32, 32)
TEMPERATURE = 0.67


def _lwta_backward(g, h, seed=1234):
    """The backward kernel alone (soft sampling, 2 competitors along dim 1, NCHW)."""
    inner = h[0, 0].numel()
    return torch.ops.robustkernels_C.lwta_backward(g, h, 2, h.shape[1], inner, 0, TEMPERATURE, 0, seed_tensor(seed), 0)


def passes(repeat: int) -> list[list[str]]:
    torch.manual_seed(0)
    h, g = torch.randn(SHAPE), torch.randn(SHAPE)
    relu_out = torch.relu(h)
    timed = {
        "ReLU forward": lambda: torch.relu(h),
        "ReLU backward": lambda: torch.ops.aten.threshold_backward(g, relu_out, 0),
        "LWTA forward": lambda: ops.lwta(h, temperature=TEMPERATURE),
        "LWTA backward": lambda: _lwta_backward(g, h),
        "fresh output: empty + fill": lambda: torch.empty(SHAPE).fill_(1.0),
    }
    kept = torch.empty(SHAPE)
    timed["reused output: fill"] = lambda: kept.fill_(1.0)
    return [[name, f"{median_seconds(fn, repeat=repeat) * 1e3:.1f}"] for name, fn in timed.items()]


def per_pair(repeat: int) -> list[list[str]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        h = torch.randn(8, 160, 16, 16)  # 1.25 MiB: stays in cache
        g = torch.randn_like(h)
        pairs = h.numel() // 2
        timed = {
            "Philox draw (one per pair)": lambda: philox_uniform(pairs, 1234, 0, per_block=4),
            "LWTA forward": lambda: ops.lwta(h, temperature=TEMPERATURE),
            "LWTA backward": lambda: _lwta_backward(g, h),
            "ReLU forward (per 2 elements)": lambda: torch.relu(h),
        }
        return [[name, f"{median_seconds(fn, repeat=repeat * 3) * 1e9 / pairs:.2f}"] for name, fn in timed.items()]
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    print(f"{machine.describe()}, torch {torch.__version__}; medians of {args.repeat}\n")
    print(f"[{', '.join(map(str, SHAPE))}] fp32, {torch.get_num_threads()} threads, one pass each:")
    print(format_table(["pass", "ms"], passes(args.repeat)))
    print("\nArithmetic per pair of competitors, in cache, 1 thread:")
    print(format_table(["work", "ns / pair"], per_pair(args.repeat)))


if __name__ == "__main__":
    main()
