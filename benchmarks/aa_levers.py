"""The model-side levers of a whole AutoAttack (standard) run: ours in fp32 eager, with
channels_last, with torch.compile (compile time included), with bf16 autocast (fp32 verdicts) and
bf16 + channels_last; torchattacks' AutoAttack at the original's 100 iterations; and the original
(fra31/auto-attack, when on PYTHONPATH). The PGD-AT CNNs of ``robustkernels bench --ops
autoattack`` on the real MNIST / CIFAR-10 test images, one process, wall-clock seconds. Each row
gives its robust accuracy and its per-sample agreement with ours in fp32 eager.

    PYTHONPATH=/path/to/auto-attack python benchmarks/aa_levers.py --samples 500 --json levers.json
"""

from __future__ import annotations

import time

import torch

from robustkernels import machine
from robustkernels.bench.autoattack import peer_autoattack, pgd_at_case, save_rows, script_parser
from robustkernels.eval import autoattack

OURS = {"fp32 eager": {"channels_last": False},
        "channels_last": {"channels_last": True},
        "torch.compile": {"channels_last": False, "compile": True},
        "bf16 autocast": {"channels_last": False, "autocast": "bf16"},
        "bf16 + channels_last": {"channels_last": True, "autocast": "bf16"}}


def _robust_of(model, adv, y) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(a).argmax(1) == b for a, b in zip(adv.split(250), y.split(250))])


def peers(model, x, y, eps: float) -> dict:
    """{name: (robust [N], seconds)} for torchattacks (100 iterations) and the original."""
    out = {}
    tic = time.perf_counter()
    adv = peer_autoattack(model, eps)(x, y)
    out["torchattacks AA (100 it.)"] = (_robust_of(model, adv, y), time.perf_counter() - tic)
    try:
        from autoattack import AutoAttack
    except ImportError:
        return out
    tic = time.perf_counter()
    adv = AutoAttack(model, norm="Linf", eps=eps, version="standard", device=x.device.type, seed=0,
                     verbose=False).run_standard_evaluation(x, y, bs=250)
    out["original (fra31/auto-attack)"] = (_robust_of(model, adv, y), time.perf_counter() - tic)
    return out


def levers_rows(data_root: str, samples: int, datasets, rows_wanted=None) -> list[dict]:
    rows = []
    for dataset in datasets:
        model, x, y, eps = pgd_at_case(data_root, dataset, samples)
        results = {}
        for name, levers in OURS.items():
            if rows_wanted and name not in rows_wanted:
                continue
            tic = time.perf_counter()
            report = autoattack(model, (x, y), eps=eps, seed=0, progress=False, **levers)
            results[name] = (torch.tensor(report.robust), time.perf_counter() - tic)
        if not rows_wanted or "peers" in rows_wanted:
            results.update(peers(model, x, y, eps))
        base = results.get("fp32 eager")
        for name, (robust, seconds) in results.items():
            rows.append({"dataset": dataset, "samples": samples, "row": name, "seconds": seconds,
                         "robust_acc": float(robust.float().mean()),
                         "agreement": None if base is None else float((robust == base[0]).float().mean()),
                         "speedup": None if base is None else base[1] / seconds})
            print(format_rows(rows[-1:], header=len(rows) == 1), flush=True)
    return rows


def format_rows(rows: list[dict], header: bool = True) -> str:
    lines = ["| data | images | run | seconds | robust acc | agreement with fp32 eager | speed-up |",
             "| --- " * 7 + "|"] if header else []
    for r in rows:
        agree = "-" if r["agreement"] is None else f"{100 * r['agreement']:.1f}%"
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['dataset']} | {r['samples']} | {r['row']} | {r['seconds']:.1f} | "
                     f"{100 * r['robust_acc']:.1f}% | {agree} | {speed} |")
    return "\n".join(lines)


def main() -> None:
    parser = script_parser(__doc__, samples=500)
    parser.add_argument("--datasets", default="mnist,cifar10")
    parser.add_argument("--rows", default=None, help="comma-separated row names (and 'peers'); default all")
    args = parser.parse_args()
    print(machine.describe())
    rows = levers_rows(args.data_dir, args.samples, args.datasets.split(","),
                       args.rows.split(",") if args.rows else None)
    print(format_rows(rows))
    save_rows(args.json, rows)


if __name__ == "__main__":
    main()
