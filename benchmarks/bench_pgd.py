"""The fused PGD step and PGD-10 end to end vs eager PyTorch, one process. Prints ratio tables.

Step: our kernels vs the eager reference (ops/pgd/reference.py, what attack code does today), with
effective bandwidth (bytes read + written / time) next to the measured copy bandwidth. End to
end: PGD-10 on a small CNN and on WideResNet-16-4 with our attack vs the same loop written
with eager ops (torchattacks-style).

    python benchmarks/bench_pgd.py [--device cpu|cuda] [--repeat 11] [--quick]
"""

import argparse

import torch
from torch import nn

import robustkernels
from robustkernels import ops
from robustkernels.attacks import PGD
from robustkernels.bench.baselines import torchattacks_pgd as eager_pgd
from robustkernels.bench.baselines import torchattacks_step as eager_step
from robustkernels.bench.timing import copy_bandwidth, format_table, median_seconds
from robustkernels.models import wide_resnet


def step_rows(shape, device, repeat):
    rows = []
    x_nat = torch.rand(shape, device=device)
    x_adv = (x_nat + 0.01 * torch.randn_like(x_nat)).clamp(0, 1)
    grad = torch.randn_like(x_nat)
    size = x_nat.numel() * x_nat.element_size()
    copy = copy_bandwidth(x_nat.numel(), device, repeat)
    backends = [b for b in robustkernels.available_backends(device) if b != "reference"]
    if torch.device(device).type == "cpu":
        backends = [b for b in backends if b != "triton"]  # the interpreter measures Python
    for norm, eps in (("linf", 8 / 255), ("l2", 0.5)):
        t_eager = median_seconds(lambda: eager_step(x_adv, x_nat, grad, 2 / 255, eps, norm), repeat=repeat,
                                 device=device)
        out = torch.empty_like(x_adv)
        for backend in backends:
            with robustkernels.use_backend(backend):
                t = median_seconds(lambda: ops.pgd_step(x_adv, x_nat, grad, step=2 / 255, eps=eps, norm=norm, out=out),
                                   repeat=repeat, device=device)
            moved = (4 if norm == "linf" else 7) * size  # L2 reads the inputs twice
            rows.append([f"{list(shape)} ({size / 2**20:.0f} MiB)", norm, backend, f"{t_eager * 1e3:.3f}",
                         f"{t * 1e3:.3f}", f"{t_eager / t:.1f}x", f"{moved / t / 1e9:.1f}", f"{copy / 1e9:.1f}",
                         f"{moved / t / copy:.0%}"])
    return rows


def attack_rows(device, repeat, quick):
    torch.manual_seed(0)
    small = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(64 * 16 * 16, 10))
    cases = [("small CNN", small, 128)]
    if not quick:
        cases.append(("WideResNet-16-4", wide_resnet(16, 4), 32))
    rows = []
    for name, model, batch in cases:
        model = model.to(device).eval()
        x, y = torch.rand(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device)
        attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
        reps = max(3, repeat // 3)
        t_eager = median_seconds(lambda: eager_pgd(model, x, y, 8 / 255, 2 / 255, 10), repeat=reps, warmup=1,
                                 device=device)
        t_ours = median_seconds(lambda: attack(x, y), repeat=reps, warmup=1, device=device)
        rows.append([name, batch, f"{t_eager * 1e3:.1f}", f"{t_ours * 1e3:.1f}", f"{t_eager / t_ours:.2f}x"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    shapes = [(256, 3, 32, 32)] + ([] if args.quick else [(128, 3, 208, 208)])  # 3 MiB and 66 MiB per tensor
    rows = [r for shape in shapes for r in step_rows(shape, args.device, args.repeat)]
    print(f"device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; medians")
    print(format_table(["tensor", "norm", "backend", "eager ms", "ours ms", "speed-up", "GB/s", "copy GB/s",
                        "of copy"], rows))
    print()
    print(format_table(["PGD-10 (Linf, eval mode)", "batch", "eager loop ms", "ours ms", "speed-up"],
                       attack_rows(args.device, args.repeat, args.quick)))


if __name__ == "__main__":
    main()
