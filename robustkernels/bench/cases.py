"""The op micro-benchmarks: each case builds its inputs once and returns a closure per backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import ops as rk_ops
from . import baselines

OPS = ("pgd", "lwta", "noise")


@dataclass
class Case:
    op: str
    label: str
    dtype: str
    numel: int
    bytes_moved: int  # what the fused op must read and write, the memory-bound minimum
    # (device, backend or None = eager) -> fn; fn.leaves lists its inputs and parameters
    make: Callable[[str, str | None], Callable[[], object]]
    extra: Callable[[str], dict[str, Callable[[], object]]] = field(default=lambda device: {})


def _pgd_case(shape, norm, label):
    numel = torch.Size(shape).numel()
    eps = 8 / 255 if norm == "linf" else 0.5

    def make(device, backend):
        torch.manual_seed(0)
        x_nat = torch.rand(shape, device=device)
        x_adv, grad = (x_nat + 0.01).clamp(0, 1), torch.randn(shape, device=device)
        if backend is None:
            return lambda: baselines.torchattacks_step(x_adv, x_nat, grad, 2 / 255, eps, norm)
        out = torch.empty_like(x_adv)
        return lambda: rk_ops.pgd_step(x_adv, x_nat, grad, step=2 / 255, eps=eps, norm=norm, out=out)

    moved = (4 if norm == "linf" else 7) * numel * 4  # L2 reads the three inputs twice
    return Case("pgd_step", f"{label} {list(shape)} {norm}", "fp32", numel, moved, make)


def _fwd_bwd(fn, x, g):
    def run():
        x.grad = None
        fn(x).backward(g)

    run.leaves = [x]
    return run


def _lwta_case(shape, label):
    numel = torch.Size(shape).numel()

    def make(device, backend):
        torch.manual_seed(0)
        h = torch.randn(shape, device=device, requires_grad=True)
        g = torch.randn(shape, device=device)
        fn = baselines.official_lwta if backend is None else (lambda x: rk_ops.lwta(x))
        return _fwd_bwd(fn, h, g)

    def extra(device):
        h = torch.randn(shape, device=device, requires_grad=True)
        return {"relu": _fwd_bwd(torch.relu, h, torch.randn(shape, device=device))}

    # forward reads h and writes y; backward reads g and h and writes the gradient
    return Case("lwta", f"{label} {list(shape)} fwd+bwd", "fp32", numel, 5 * numel * 4, make, extra)


def _noise_case(shape, dtype, label):
    numel = torch.Size(shape).numel()
    size = torch.finfo(dtype).bits // 8

    def make(device, backend):
        torch.manual_seed(0)
        w = (torch.randn(shape, device=device) * 0.05).to(dtype).requires_grad_()
        alpha = torch.full((1,), 0.25, device=device, requires_grad=True)
        g = torch.randn(shape, device=device).to(dtype)
        fn = baselines.official_noisy_weight if backend is None else rk_ops.noisy_weight

        def run():
            w.grad = alpha.grad = None
            fn(w, alpha).backward(g)

        run.leaves = [w, alpha]
        return run

    # std (read w), fused forward (read w, write y), alpha gradient (read g)
    short = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return Case("noisy_weight", f"{label} {list(shape)} fwd+bwd", short, numel, 4 * numel * size, make)


def op_cases(ops, quick: bool) -> list[Case]:
    unknown = set(ops) - set(OPS)
    if unknown:
        raise ValueError(f"ops must be among {OPS}, got {sorted(unknown)}")
    cases = []
    if "pgd" in ops:
        for norm in ("linf", "l2"):
            cases.append(_pgd_case((256, 3, 32, 32), norm, "small"))
            if not quick:
                cases.append(_pgd_case((128, 3, 208, 208), norm, "large"))  # 63 MiB per tensor
                # Degenerate layouts, 64 MiB each: scalar step/eps must not cost per-sample work.
                cases.append(_pgd_case((4_194_304, 4), norm, "B in millions"))
                cases.append(_pgd_case((1, 16_777_216), norm, "B = 1"))
        if not quick:
            cases.append(_pgd_case((16_777_216,), "linf", "1-D"))  # L2 of 1-D: each element a sample
    if "lwta" in ops:
        cases.append(_lwta_case((32, 160, 16, 16) if quick else (128, 160, 32, 32), "conv"))
        cases.append(_lwta_case((256, 512) if quick else (4096, 2048), "features"))  # [B, F]: one position a block
    if "noise" in ops:
        cases.append(_noise_case((640, 640, 3, 3), torch.float32, "weight"))
        if not quick:
            cases.append(_noise_case((640, 640, 3, 3), torch.bfloat16, "weight"))
    return cases
