"""The training cost levers, one process: a PGD-AT step (PGD-k attack + training forward and
backward + SGD step) on a WideResNet, each lever against the plain fp32 step. Prints a table of
ratios (median times; > 1 means faster than the baseline).

Levers: bf16 autocast, channels_last, torch.compile, and the attack never computing parameter
gradients (the baseline for that row is a torchattacks-style loop whose attack leaves
``requires_grad`` on, so every attack backward also fills the weights' gradients). The last row is
``auto_levers=True``: the levers :func:`robustkernels.train.auto_levers.device_levers` picks for the device.

    python benchmarks/bench_train_levers.py [--model wrn-16-2] [--batch 64] [--steps 5] [--repeat 5] [--compile]
                                            [--device cpu|cuda]
"""

import argparse
import contextlib

import torch
from torch.nn import functional as F

from robustkernels.bench.timing import format_table, median_seconds
from robustkernels.machine import describe
from robustkernels.models import build_model
from robustkernels.ops import pgd_step
from robustkernels.train.auto_levers import device_levers
from robustkernels.train.methods import StepContext, make_method


def make_step(args, *, autocast=None, channels_last=False, compile=False):
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.model, in_channels=3, image_size=32).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    method = make_method("pgd_at", eps=8 / 255, steps=args.steps)
    method.bind(net, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(autocast)
    ctx = StepContext(autocast=(lambda: torch.autocast(device.type, dtype=dtype)) if autocast
                      else contextlib.nullcontext,
                      scaler=torch.amp.GradScaler(device.type) if autocast == "fp16" else None)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=device)

    def step():
        model.train()
        method.train_step(net, opt, None, x, y, ctx)
    return step


def make_param_grad_step(args):
    """The same PGD-AT step, but the attack keeps requires_grad on the weights (eager loop)."""
    torch.manual_seed(0)
    model = build_model(args.model, in_channels=3, image_size=32).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    eps, alpha = 8 / 255, 2.5 * 8 / 255 / args.steps

    def step():
        model.eval()
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(args.steps):
            x_adv.requires_grad_(True)
            F.cross_entropy(model(x_adv), y).backward()  # also accumulates the weights' .grad
            x_adv = pgd_step(x_adv.detach(), x, x_adv.grad, step=alpha, eps=eps)
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y).backward()
        opt.step()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wrn-16-2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to warm up on CPU)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    timed = lambda fn: median_seconds(fn, warmup=2, repeat=args.repeat, device=args.device)  # noqa: E731
    base = timed(make_step(args))
    rows = [["fp32 PGD-AT step (ours)", f"{1000 * base:.0f}", "1.00x"]]
    naive = timed(make_param_grad_step(args))
    rows.append(
        [
            "attack also computing weight grads",
            f"{1000 * naive:.0f}",
            f"{base / naive:.2f}x  (ours {naive / base:.2f}x faster)",
        ]
    )
    for label, kwargs in [("bf16 autocast", dict(autocast="bf16")), ("channels_last", dict(channels_last=True)),
                          ("bf16 + channels_last", dict(autocast="bf16", channels_last=True))] + (
                             [("torch.compile", dict(compile=True))] if args.compile else []):
        t = timed(make_step(args, **kwargs))
        rows.append([label, f"{1000 * t:.0f}", f"{base / t:.2f}x"])
    levers = device_levers(torch.device(args.device))
    t = timed(make_step(args, **levers))
    chosen = ", ".join(f"{k}={v}" for k, v in levers.items())
    rows.append([f"auto_levers=True ({chosen})", f"{1000 * t:.0f}", f"{base / t:.2f}x"])
    print(f"{args.model}, batch {args.batch}, PGD-{args.steps}, median of {args.repeat}; {describe()}")
    print(format_table(["variant", "ms / step", "speed vs fp32 step"], rows))


if __name__ == "__main__":
    main()
