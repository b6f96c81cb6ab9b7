"""Stochastic LWTA: our fused op vs ReLU and vs the eager formulation of the paper's code, then one
PGD-10 adversarial-training step of a WRN-34-1 LWTA on our op vs on the eager formulation.

    python benchmarks/bench_lwta.py [--shape 128,160,32,32] [--batch 32] [--repeat 7] [--quick]

Peak memory of a training step: in a fresh process per variant, after one warm-up step, the
peak extra memory of a step (robustkernels._timing.peak_memory_kib: the profiler's allocation
records on the CPU, the allocator's peak on a GPU).
"""

import argparse
import json
import subprocess
import sys

import torch
from torch.nn import functional as F

import robustkernels
from robustkernels._timing import format_table, median_seconds, peak_memory_kib
from robustkernels.attacks import PGD
from robustkernels.models import wide_resnet
from robustkernels.bench.eager import lwta as eager_lwta
from robustkernels.bench.eager import to_eager
from robustkernels.ops.lwta import lwta_forward


def fwd_bwd(fn, h, g):
    h.grad = None
    fn(h).backward(g)


def op_rows(shape, repeat):
    torch.manual_seed(0)
    h = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    impls = [("ReLU", torch.relu), ("eager LWTA (paper code)", eager_lwta),
             ("ours (fused LWTA)", lambda x: robustkernels.ops.lwta(x))]
    times = {name: median_seconds(lambda: fwd_bwd(fn, h, g), repeat=repeat) for name, fn in impls}
    relu = times["ReLU"]
    return [[name, f"{t * 1e3:.1f}", f"{t / relu:.2f}x", f"{times['eager LWTA (paper code)'] / t:.2f}x"]
            for name, t in times.items()]


def build(variant, depth):
    torch.manual_seed(0)
    model = wide_resnet(depth, 1, num_classes=10, activation="lwta")
    return to_eager(model) if variant == "eager" else model


def training_step(model, attack, optimizer, x, y):
    x_adv = attack(x, y)  # PGD-10 in eval mode
    model.train()
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x_adv), y).backward()
    optimizer.step()


def measure_step(variant, depth, batch, repeat):
    """In this process: median step time and the peak memory growth of a step (KiB)."""
    model = build(variant, depth)
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    training_step(model, attack, optimizer, x, y)  # warm-up: lazy imports are not the step's memory
    peak = peak_memory_kib(lambda: training_step(model, attack, optimizer, x, y))
    seconds = median_seconds(lambda: training_step(model, attack, optimizer, x, y), repeat=repeat, warmup=0)
    return {"seconds": seconds, "peak_kib": peak}


def step_rows(depth, batch, repeat):
    results = {}
    for variant in ("eager", "ours"):
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--depth", str(depth), "--batch",
                              str(batch), "--repeat", str(repeat)], capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    eager = results["eager"]
    return [[f"WRN-{depth}-1 LWTA, {name}", batch, f"{r['seconds']:.2f}", f"{eager['seconds'] / r['seconds']:.2f}x",
             f"{r['peak_kib'] / 1024:.0f}", f"{r['peak_kib'] / eager['peak_kib']:.2f}x"]
            for name, r in (("eager LWTA", eager), ("ours", results["ours"]))]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="128,160,32,32")
    parser.add_argument("--depth", type=int, default=34)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("eager", "ours"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_step(args.child, args.depth, args.batch, args.repeat)))
        return
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.quick:
        shape, args.depth, args.batch, args.repeat = (32, 32, 16, 16), 10, 8, 3
    backend = lwta_forward.backend_for(torch.device("cpu"))
    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, backend {backend}; medians")
    print(format_table([f"forward+backward {list(shape)} fp32", "ms", "vs ReLU", "speed-up vs eager"],
                       op_rows(shape, args.repeat)))
    print()
    print(format_table(["PGD-10 AT step", "batch", "s", "speed-up", "peak MiB", "peak vs eager"],
                       step_rows(args.depth, args.batch, max(1, args.repeat // 2))))


if __name__ == "__main__":
    main()
