"""Timing helpers shared by the benchmark scripts: warm-up, repetitions, medians, ratio tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def median_seconds(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 21, device: str = "cpu") -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs.

    On CUDA devices uses CUDA events (and synchronises); elsewhere ``time.perf_counter``.
    """
    if warmup < 0 or repeat < 1:
        raise ValueError(f"need warmup >= 0 and repeat >= 1, got {warmup}, {repeat}")
    for _ in range(warmup):
        fn()
    times = []
    if torch.device(device).type == "cuda":
        for _ in range(repeat):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (readable in a terminal too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])
