"""``robustkernels bench --ops autoattack``: AutoAttack (standard) on PGD-AT CNNs trained on the
MNIST (eps 0.3) and CIFAR-10 (eps 8/255) files, ours against torchattacks' AutoAttack set to the
original's 100 iterations and Square schedule (the formulation users run), both robust accuracies
side by side; each lever switched off in turn, and the bf16 autocast option; AA-rand on an LWTA
CNN, our batched EOT and active set against the original's sequential loop; and ``version="fast"``
against ``standard`` on 500 test images of each PGD-AT CNN, three seeds: the time ratio, the
accuracy gap and the points fast leaves robust that standard breaks, at fast's default precision
(bf16 where timed faster) and in fp32. One process, the same inputs, wall-clock seconds."""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from .. import machine
from ..data import load_dataset
from ..eval import autoattack
from .aa_models import EPS, train_pgd_at

FOLDERS = {"mnist": "mnist", "cifar10": "cifar-10-batches-py"}


def peer_autoattack(model, eps: float, norm: str = "Linf", seed: int = 0):
    """torchattacks 3.5.1's AutoAttack (standard) at the original's settings: 100 iterations for
    APGD, APGD-T and FAB-T (torchattacks defaults to 10) and Square's schedule not rescaled."""
    import torchattacks

    attack = torchattacks.AutoAttack(model, norm=norm, eps=eps, version="standard", n_classes=10, seed=seed)
    for part in attack._autoattack.attacks:
        if hasattr(part, "steps"):
            part.steps = 100
        if hasattr(part, "rescale_schedule"):
            part.rescale_schedule = False
    return attack


def _timed(fn):
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def _ours(model, x, y, eps, seed: int = 0, **levers):
    report, seconds = _timed(lambda: autoattack(model, (x, y), eps=eps, seed=seed, progress=False, **levers))
    return report.robust_accuracy.mean, seconds, report


def pgd_at_case(data_root: str, dataset: str, samples: int):
    """(model, x, y, eps): the PGD-AT CNN of ``dataset`` and its first ``samples`` test images."""
    folder = os.path.join(data_root, FOLDERS[dataset])
    model = train_pgd_at(dataset, folder)
    _, (x, y) = load_dataset(dataset, folder)
    return model, x[:samples], y[:samples], EPS[dataset]


def standard_rows(data_root: str, samples: int) -> list[dict]:
    rows = []
    for dataset in ("mnist", "cifar10"):
        model, x, y, eps = pgd_at_case(data_root, dataset, samples)
        acc, seconds, report = _ours(model, x, y, eps)
        row = {"case": f"AA standard, {dataset} PGD-AT CNN, {samples} images", "ours_s": seconds, "ours_acc": acc,
               "log": report.log()}
        acc_off, seconds_off, _ = _ours(model, x, y, eps, active_set=False)
        row.update(no_active_set_s=seconds_off, no_active_set_acc=acc_off)
        acc_bf16, seconds_bf16, _ = _ours(model, x, y, eps, autocast="bf16")
        row.update(bf16_s=seconds_bf16, bf16_acc=acc_bf16)
        try:
            peer = peer_autoattack(model, eps)
        except ImportError:
            row.update(peer_s=None, peer_acc=None)
        else:
            adv, peer_s = _timed(lambda: peer(x, y))
            with torch.no_grad():
                row.update(peer_s=peer_s, peer_acc=float((model(adv).argmax(1) == y).float().mean()))
        rows.append(row)
    return rows


def rand_row(data_root: str, samples: int) -> dict:
    folder = os.path.join(data_root, FOLDERS["mnist"])
    model = train_pgd_at("mnist", folder, lwta=True, samples=3000, epochs=2)
    _, (x, y) = load_dataset("mnist", folder)
    x, y = x[:samples], y[:samples]
    acc, seconds, report = _ours(model, x, y, EPS["mnist"], version="rand")
    acc_seq, seconds_seq, _ = _ours(model, x, y, EPS["mnist"], version="rand", eot_batched=False, active_set=False)
    acc_nb, seconds_nb, _ = _ours(model, x, y, EPS["mnist"], version="rand", eot_batched=False)
    return {"case": f"AA rand, mnist LWTA CNN, {samples} images", "ours_s": seconds, "ours_acc": acc,
            "sequential_s": seconds_seq, "sequential_acc": acc_seq, "no_batched_eot_s": seconds_nb,
            "no_batched_eot_acc": acc_nb, "log": report.log()}


def fast_rows(data_root: str, samples: int, seeds=(0,)) -> list[dict]:
    """``version="fast"`` against ``standard`` on the first ``samples`` test images of each PGD-AT
    CNN, for each seed (both versions draw from it: the gap is a seed's own), in one process; fast
    at its default ``autocast="auto"`` and in fp32 (``autocast=None``, standard's precision)."""
    rows = []
    for dataset in ("mnist", "cifar10"):
        model, x, y, eps = pgd_at_case(data_root, dataset, samples)
        rows += fast_case_rows(f"{dataset} PGD-AT CNN, {samples} images", model, x, y, eps, seeds)
    return rows


def fast_case_rows(case: str, model, x, y, eps: float, seeds) -> list[dict]:
    """The rows of :func:`fast_rows` for one model and its test images x [N, C, H, W], y [N]:
    standard, then fast, then fast in fp32, per seed."""
    rows = []
    for seed in seeds:
        standard_acc, standard_s, standard = _ours(model, x, y, eps, version="standard", seed=seed)
        fast_acc, fast_s, fast = _ours(model, x, y, eps, version="fast", seed=seed)
        fp32_acc, fp32_s, fp32 = _ours(model, x, y, eps, version="fast", seed=seed, autocast=None)
        missed = [int((torch.tensor(r.robust) & ~torch.tensor(standard.robust)).sum()) for r in (fast, fp32)]
        rows.append({"case": case, "seed": seed, "standard_s": standard_s,
                     "standard_acc": standard_acc, "fast_s": fast_s, "fast_acc": fast_acc,
                     "fast_precision": fast.autocast or "fp32", "ratio": standard_s / fast_s,
                     "gap_points": 100 * (fast_acc - standard_acc), "fast_robust_standard_broke": missed[0],
                     "fp32_s": fp32_s, "fp32_ratio": standard_s / fp32_s,
                     "fp32_gap_points": 100 * (fp32_acc - standard_acc), "fp32_robust_standard_broke": missed[1],
                     "fast_levers": fast.levers, "standard_log": standard.log(), "fast_log": fast.log()})
    return rows


def format_fast_rows(rows: list[dict]) -> str:
    lines = ["| model | seed | standard s | standard acc | fast s (precision) | fast acc | time ratio | gap (points) "
             "| robust to fast, broken by standard | fast in fp32: ratio, gap, robust to it and broken |",
             "| --- " * 10 + "|"]
    lines += [f"| {r['case']} | {r['seed']} | {r['standard_s']:.1f} | {_pct(r['standard_acc'])} | {r['fast_s']:.1f} "
              f"({r['fast_precision']}) | {_pct(r['fast_acc'])} | {r['ratio']:.1f}x | {r['gap_points']:+.1f} | "
              f"{r['fast_robust_standard_broke']} | {r['fp32_ratio']:.1f}x, {r['fp32_gap_points']:+.1f}, "
              f"{r['fp32_robust_standard_broke']} |" for r in rows]
    return "\n".join(lines)


def _have_data(data_root: str) -> bool:
    if all(os.path.isdir(os.path.join(data_root, f)) for f in FOLDERS.values()):
        return True
    print(f"autoattack: skipped, the MNIST / CIFAR-10 files are not under {data_root} (--data-dir)")
    return False


def run_autoattack(data_root: str, quick: bool, fast_only: bool = False) -> list[dict]:
    """The rows of the AutoAttack benchmark (none, with a note, if the data files are missing);
    ``fast_only``: only the fast-versus-standard rows."""
    if not _have_data(data_root):
        return []
    rows = []
    if not fast_only:
        samples = 40 if quick else 200
        rows = standard_rows(data_root, samples) + [rand_row(data_root, 20 if quick else 100)]
        print(format_rows(rows))
    fast = fast_rows(data_root, 40 if quick else 500, seeds=(0,) if quick else (0, 1, 2))
    print(format_fast_rows(fast))
    return rows + fast


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_rows(rows: list[dict]) -> str:
    lines = ["| case | ours s | ours acc | baseline | baseline s | baseline acc | speed-up |", "| --- " * 7 + "|"]
    for r in rows:
        baselines = [("torchattacks AA (100 it.)", "peer"), ("ours, active set off", "no_active_set"),
                     ("sequential EOT loop, no active set", "sequential"), ("ours, sequential EOT", "no_batched_eot")]
        variants = [("", "ours")] + ([(", bf16 autocast", "bf16")] if "bf16_s" in r else [])
        for suffix, mine in variants:
            for label, key in baselines[:1] if mine == "bf16" else baselines:
                if f"{key}_s" not in r:
                    continue
                base, ours = r[f"{key}_s"], r[f"{mine}_s"]
                ratio = "-" if base is None else f"{base / ours:.2f}x"
                lines.append(f"| {r['case']}{suffix} | {ours:.1f} | {_pct(r[f'{mine}_acc'])} | {label} | "
                             f"{'-' if base is None else f'{base:.1f}'} | {_pct(r[f'{key}_acc'])} | {ratio} |")
    return "\n".join(lines)


def script_parser(description: str, samples: int) -> argparse.ArgumentParser:
    """The options the AutoAttack scripts of ``benchmarks/`` share: ``--data-dir``, ``--samples``,
    ``--json``; each adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--json", default=None)
    return parser


def save_rows(path: str | None, rows: list[dict]) -> None:
    """``rows`` and this machine as JSON at ``path`` (None: nothing)."""
    if path:
        with open(path, "w") as f:
            json.dump({"machine": machine.describe(), "rows": rows}, f, indent=1)
