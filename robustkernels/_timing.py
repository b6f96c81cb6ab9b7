"""Timing helpers shared by the benchmark scripts: warm-up, repetitions, medians, ratio tables."""

from __future__ import annotations

import os
import statistics
import threading
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


def resident_kib() -> int:
    """Resident set size of this process in KiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0


def peak_memory_kib(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak extra memory while ``fn()`` runs, in KiB: CUDA allocator peak above the start on a
    GPU; on the CPU the resident size sampled every millisecond, above the size just before."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) // 1024
    before, peak, done = resident_kib(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_kib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak[0], resident_kib()) - before)


def kept_for_backward_bytes(fn: Callable[[], object], leaves: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves for the backward while ``fn()`` runs,
    leaving out ``leaves`` (inputs and parameters, which exist anyway)."""
    skip = {t.untyped_storage().data_ptr() for t in leaves}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())
