"""``robustkernels bench``: our kernels against the eager formulations, in one process.

For each op: the median time of the eager formulation and of each of our backends on the same
inputs, the ratio, the effective bandwidth (bytes the op must move / time), its share of the
measured copy bandwidth (the memory-bound limit), and the peak extra memory. Then end to end:
PGD-10 on WideResNet-16-4, and one PGD-AT training step of WRN-34-1 with LWTA and with PNI on our
kernels against the same model on the eager formulations. ``--json PATH`` saves the figures;
``python benchmarks/targets.py PATH`` marks the project's targets met or not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import torch

from .. import _backend, machine
from .cases import OPS, op_cases
from .end_to_end import run_e2e, spawn_variant  # noqa: F401 (spawn_variant: re-exported)
from .timing import (
    copy_bandwidth,
    format_table,
    interleaved_medians,
    kept_for_backward_bytes,
    peak_memory_kib,
)

BENCHES = (*OPS, "autoattack", "autoattack-fast")  # minutes, asked for by name

__all__ = ["BENCHES", "OPS", "Results", "main_bench", "main_e2e"]


def _backends(device: str) -> list[str]:
    names = [b for b in _backend.available_backends(device) if b != "reference"]
    if torch.device(device).type == "cpu":
        names = [b for b in names if b != "triton"]  # interpreted: measures Python, not the kernel
    return names


def _under_backend(backend: str, fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with _backend.use_backend(backend):
            return fn()

    run.leaves = getattr(fn, "leaves", ())
    return run


class Results:
    """The figures of one run, written to ``json_path`` (if given) after every case, so a case
    that fails or a run that is cut short loses nothing measured before it. ``complete`` is
    False until the run ends; ``errors`` names the cases that raised."""

    def __init__(self, json_path: str | None, **header):
        self.json_path = json_path
        self.data = {**header, "complete": False, "ops": [], "end_to_end": [], "autoattack": [], "errors": []}
        self.save()

    def add(self, section: str, rows: Sequence[dict]) -> None:
        self.data[section].extend(rows)
        self.save()

    def failed(self, what: str, error: BaseException) -> None:
        print(f"{what}: FAILED: {type(error).__name__}: {error}")
        self.add("errors", [{"case": what, "error": f"{type(error).__name__}: {error}"}])

    def finish(self) -> dict:
        self.data["complete"] = True
        self.save()
        return self.data

    def save(self) -> None:
        """Write the file whole or not at all (a run killed mid-write keeps the previous one)."""
        if self.json_path:
            partial = f"{self.json_path}.partial"
            with open(partial, "w") as f:
                json.dump(self.data, f, indent=2)
            os.replace(partial, self.json_path)


def _measure_case(case, device: str, repeat: int) -> list[dict]:
    """One op case: eager, its extras and every backend of ours, one row per backend."""
    rows = []
    copy = copy_bandwidth(case.numel, device, repeat)
    eager_fn = case.make(device, None)
    ours = {}
    for backend in _backends(device):
        with _backend.use_backend(backend):
            ours[backend] = _under_backend(backend, case.make(device, backend))
    extra = case.extra(device)
    # eager, ReLU-like extras and every backend timed round-robin (drift hits all alike), each
    # sample at least 5 ms of back-to-back calls (a small op otherwise runs on what the
    # previous function left in the caches and the allocator)
    times = interleaved_medians({"eager": eager_fn, **extra, **ours}, repeat=repeat, device=device,
                                min_block_s=5e-3)
    kept_eager = kept_for_backward_bytes(eager_fn, getattr(eager_fn, "leaves", ()))
    peak_eager = peak_memory_kib(eager_fn, device)
    for backend, fn in ours.items():
        t, t_eager = times[backend], times["eager"]
        rows.append({
            "op": case.op, "case": case.label, "dtype": case.dtype, "backend": backend,
            "eager_ms": t_eager * 1e3, "ours_ms": t * 1e3, "speedup": t_eager / t,
            "gb_per_s": case.bytes_moved / t / 1e9, "copy_gb_per_s": copy / 1e9,
            "share_of_copy": case.bytes_moved / t / copy,
            "kept_mib_eager": kept_eager / 2**20, "kept_mib_ours": kept_for_backward_bytes(fn, fn.leaves) / 2**20,
            "peak_mib_eager": peak_eager / 1024, "peak_mib_ours": peak_memory_kib(fn, device) / 1024,
            **{f"{name}_ms": times[name] * 1e3 for name in extra},
        })
    return rows


def run_ops(device: str, ops: Sequence[str], quick: bool, repeat: int, results: Results | None = None) -> list[dict]:
    """Every op case of ``ops``; each case's rows go to ``results`` as soon as it is measured, and
    a case that raises is recorded there and skipped (without ``results``, it raises)."""
    rows = []
    for case in op_cases(ops, quick):
        try:
            case_rows = _measure_case(case, device, repeat)
        except Exception as error:  # noqa: BLE001 (recorded, the other cases still run)
            if results is None:
                raise
            results.failed(f"{case.op} {case.label}", error)
            continue
        rows += case_rows
        if results is not None:
            results.add("ops", case_rows)
    return rows


def _print_ops(rows: list[dict]) -> None:
    print(format_table(
        ["op", "case", "dtype", "backend", "eager ms", "ours ms", "speed-up", "GB/s", "of copy",
         "peak extra MiB eager/ours", "kept for bwd eager/ours"],
        [[r["op"], r["case"], r["dtype"], r["backend"], f"{r['eager_ms']:.2f}", f"{r['ours_ms']:.2f}",
          f"{r['speedup']:.1f}x", f"{r['gb_per_s']:.1f}", f"{r['share_of_copy']:.0%}",
          f"{r['peak_mib_eager']:.1f} / {r['peak_mib_ours']:.1f}",
          f"{r['kept_mib_eager']:.1f} / {r['kept_mib_ours']:.1f}"] for r in rows]))


QUICK_E2E_NOTE = ("quick sizes: each side is one short run in a process of its own, on models this small the "
                  "kernels are a sliver of the step and process start-up and scheduling dominate, so these ratios "
                  "swing either way (0.7-1.3x and beyond on a busy machine) - `robustkernels bench` (full sizes) "
                  "measures the end-to-end gain")


def _print_e2e(rows: list[dict], quick: bool = False) -> None:
    print(format_table(["end to end", "model", "eager s", "ours s", "speed-up", "peak MiB eager/ours"],
                       [[r["case"], r["model"], f"{r['eager_s']:.2f}", f"{r['ours_s']:.2f}", f"{r['speedup']:.2f}x",
                         f"{r['peak_mib_eager']:.0f} / {r['peak_mib_ours']:.0f}"] for r in rows]))
    if quick and rows:
        print(QUICK_E2E_NOTE)


def _header(device: str) -> str:
    return (f"{machine.describe()}, torch {torch.__version__}"
            + (f", {torch.cuda.get_device_name(0)}" if torch.device(device).type == "cuda" else ""))


def _finish(results: Results) -> dict:
    """Mark the run complete; a RuntimeError naming the cases that failed (after writing them)."""
    data = results.finish()
    if results.json_path:
        print(f"\nwrote {results.json_path}; `python benchmarks/targets.py {results.json_path}` marks the project's "
              "targets")
    if data["errors"]:
        raise RuntimeError(f"{len(data['errors'])} bench case(s) failed: "
                           + "; ".join(e["case"] for e in data["errors"]))
    return data


def main_bench(device: str = "cpu", ops: Sequence[str] = OPS, quick: bool = False, json_path: str | None = None,
               e2e: bool = True, data_dir: str = "../shared/data") -> dict:
    """Run the benchmarks of ``ops``, print the tables, write ``json_path`` after every case.
    Returns the figures; raises RuntimeError at the end if a case failed (the others are kept)."""
    repeat = 5 if quick else 11
    header = _header(device)
    print(f"robustkernels bench on {device} ({header}); medians of {repeat}{', quick sizes' if quick else ''}")
    if not _backends(device):
        print(f"no compiled backend can run on {device} (available: {', '.join(_backend.available_backends(device))});"
              " build the extension with `pip install --no-build-isolation -e .` to benchmark the kernels")
    results = Results(json_path, device=device, machine=header, quick=quick)
    _print_ops(run_ops(device, [o for o in ops if o in OPS], quick, repeat, results))
    if e2e and any(o in OPS for o in ops):
        print()
        _print_e2e(run_e2e(device, quick, on_row=lambda row: results.add("end_to_end", [row]),
                           on_error=results.failed), quick)
    if "autoattack" in ops or "autoattack-fast" in ops:
        from .autoattack import run_autoattack

        print()
        results.add("autoattack", run_autoattack(data_dir, quick, fast_only="autoattack" not in ops))
    return _finish(results)


def main_e2e(device: str = "cpu", quick: bool = False, json_path: str | None = None) -> dict:
    """Only the end-to-end cases of :func:`main_bench` (what ``.ci/gpu`` runs as a stage of its
    own), written to ``json_path`` after every case."""
    header = _header(device)
    print(f"robustkernels bench end to end on {device} ({header}){', quick sizes' if quick else ''}")
    results = Results(json_path, device=device, machine=header, quick=quick)
    _print_e2e(run_e2e(device, quick, on_row=lambda row: results.add("end_to_end", [row]), on_error=results.failed),
               quick)
    return _finish(results)


def child_main(argv: Sequence[str]) -> None:
    """Entry for one end-to-end variant in a fresh process (``python -m robustkernels.bench ...``)."""
    from .end_to_end import measure_variant

    case, variant, device, quick = argv
    print(json.dumps(measure_variant(case, variant, device, quick == "1")))
