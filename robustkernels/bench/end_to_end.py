"""End-to-end cases, each variant measured in a fresh process (clean peak-memory readings).

``pgd10``: our PGD attack against the loop written with eager ops, on a plain WideResNet-16-4.
``pgd_at_lwta`` / ``pgd_at_pni``: one PGD-10 adversarial-training step of WRN-34-1; both variants
run the same step and attack, on our fused LWTA / PNI layers or on their eager formulations.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import torch
from torch.nn import functional as F

from ..attacks import PGD
from ..models import wide_resnet
from ..nn import convert_to_pni
from . import baselines
from .timing import median_seconds, peak_memory_kib

E2E_CASES = ("pgd10", "pgd_at_lwta", "pgd_at_pni")


def _model(case: str, quick: bool):
    torch.manual_seed(0)
    if case == "pgd10":
        return wide_resnet(10 if quick else 16, 4 if not quick else 2), "WRN-16-4" if not quick else "WRN-10-2"
    depth = 10 if quick else 34
    if case == "pgd_at_lwta":
        return wide_resnet(depth, 1, activation="lwta"), f"WRN-{depth}-1 LWTA"
    return convert_to_pni(wide_resnet(depth, 1)), f"WRN-{depth}-1 PNI"


def measure_variant(case: str, variant: str, device: str, quick: bool) -> dict:
    """Median seconds and peak extra memory (KiB) of one case on ``variant`` = ours | eager."""
    model, name = _model(case, quick)
    if variant == "eager":
        baselines.with_official_layers(model)
    model = model.to(device)
    batch = 8 if quick else 32
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if case == "pgd10":
        model.eval()
        attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
        step = (lambda: attack(x, y)) if variant == "ours" else (lambda: baselines.torchattacks_pgd(model, x, y))
    else:  # the same PGD-AT step; only the LWTA / PNI layers differ between the variants
        attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step():
            x_adv = attack(x, y)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_adv), y).backward()
            optimizer.step()

    step()  # warm-up: one-time imports and lazy initialisation are not the step's memory
    peak = peak_memory_kib(step, device)
    seconds = median_seconds(step, repeat=1 if quick else 3, warmup=0, device=device)
    return {"model": name, "seconds": seconds, "peak_kib": peak}


def spawn_variant(case: str, variant: str, device: str, quick: bool) -> dict:
    """One end-to-end case in a fresh process (``python -m robustkernels.bench CASE VARIANT ...``),
    so the two variants do not share caches or allocator state."""
    out = subprocess.run([sys.executable, "-m", "robustkernels.bench", case, variant, device, "1" if quick else "0"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{case} {variant} on {device} exited {out.returncode}: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_e2e(device: str, quick: bool, on_row: Callable[[dict], None] | None = None,
            on_error: Callable[[str, BaseException], None] | None = None) -> list[dict]:
    """Every end-to-end case, ours against eager; ``on_row(row)`` after each case. With
    ``on_error``, a case that fails is reported there (``on_error(case, error)``) and the others
    still run; without, it raises."""
    rows = []
    for case in E2E_CASES:
        try:
            ours, base = spawn_variant(case, "ours", device, quick), spawn_variant(case, "eager", device, quick)
        except (RuntimeError, ValueError) as error:
            if on_error is None:
                raise
            on_error(f"end to end {case}", error)
            continue
        row = {"case": case, "model": ours["model"], "eager_s": base["seconds"], "ours_s": ours["seconds"],
               "speedup": base["seconds"] / ours["seconds"], "peak_mib_eager": base["peak_kib"] / 1024,
               "peak_mib_ours": ours["peak_kib"] / 1024,
               "peak_ratio": ours["peak_kib"] / max(base["peak_kib"], 1)}
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows
