"""Noise injection (PNI) forward+backward: our kernels vs the eager reference, one process.

The baseline is the PNI authors' formulation: the std and the noise drawn under ``no_grad``, then
``w + alpha * noise`` (noise materialised and kept for the backward); a test checks that it gives
our op's values and gradients for the same noise. Prints medians, ratios and the bytes autograd
keeps for the backward.

    python benchmarks/bench_noise.py [--device cpu|cuda] [--repeat 11] [--skip-wrn]
"""

import argparse

import torch

import robustkernels
from robustkernels import ops
from robustkernels.bench.baselines import official_noisy_weight as eager_noisy_weight
from robustkernels.bench.timing import format_table, median_seconds
from robustkernels.models import wide_resnet


def ours(w, alpha):
    return ops.noisy_weight(w, alpha)


def saved_bytes(fn, weights, alphas):
    """Bytes of the tensors autograd saves for the backward, excluding the parameters themselves."""
    params = {t.data_ptr() for t in weights + alphas}
    sizes = []

    def pack(t):
        if t.data_ptr() not in params:
            sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = [fn(w, a) for w, a in zip(weights, alphas)]
    del outs
    return sum(sizes)


def step(fn, weights, alphas, grads):
    outs = [fn(w, a) for w, a in zip(weights, alphas)]
    torch.autograd.backward(outs, grads)


def case(name, shapes, granularity, device, dtype, repeat):
    torch.manual_seed(0)
    weights = [(torch.randn(s, device=device) * 0.05).to(dtype).requires_grad_() for s in shapes]
    alpha_shape = {"layer": lambda s: (1,), "channel": lambda s: (s[0],)}[granularity]
    alphas = [torch.full(alpha_shape(s), 0.25, device=device, requires_grad=True) for s in shapes]
    grads = [torch.randn_like(w) for w in weights]
    rows = []
    timings = {}
    for label, fn, backend in (("official PNI", eager_noisy_weight, None), ("ours", ours, "auto")):
        ctx = robustkernels.use_backend(backend) if backend else torch.autograd.set_grad_enabled(True)
        with ctx:
            timings[label] = median_seconds(lambda: step(fn, weights, alphas, grads), repeat=repeat, device=device)
            kept = saved_bytes(fn, weights, alphas)
        rows.append([name, granularity, str(dtype).replace("torch.", ""), label, f"{timings[label] * 1e3:.2f}",
                     f"{timings['official PNI'] / timings[label]:.2f}x", f"{kept / 2**20:.1f}"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--skip-wrn", action="store_true")
    args = parser.parse_args()
    backend = robustkernels.ops.noise.noise_add.backend_for(torch.device(args.device))
    rows = []
    for granularity in ("layer", "channel"):
        for dtype in (torch.float32, torch.bfloat16):
            rows += case("weight [640,640,3,3]", [(640, 640, 3, 3)], granularity, args.device, dtype, args.repeat)
    if not args.skip_wrn:
        shapes = [tuple(p.shape) for p in wide_resnet(34, 10).parameters() if p.dim() > 1]
        n = sum(torch.Size(s).numel() for s in shapes)
        rows += case(f"WRN-34-10 ({len(shapes)} weights, {n / 1e6:.1f}M)", shapes, "layer", args.device,
                     torch.float32, max(3, args.repeat // 2))
    print(f"device: {args.device}, backend: {backend}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"forward+backward, medians")
    print(format_table(["case", "alpha", "dtype", "impl", "ms", "speed-up", "MiB kept for backward"], rows))


if __name__ == "__main__":
    main()
