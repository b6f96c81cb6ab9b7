"""Timing helpers shared by the benchmark scripts: warm-up, repetitions, medians, ratio tables."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch


def _seconds(fn: Callable[[], object], device: str) -> float:
    """Wall time of one ``fn()``: CUDA events (synchronised) on CUDA devices, else perf_counter."""
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 21, device: str = "cpu") -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    return interleaved_medians({"fn": fn}, warmup=warmup, repeat=repeat, device=device)["fn"]


def interleaved_medians(fns: dict[str, Callable[[], object]], *, warmup: int = 3, repeat: int = 21,
                        device: str = "cpu", min_block_s: float = 0.0) -> dict[str, float]:
    """Median seconds of each function, timed round-robin (one sample of each per round), so that a
    machine that slows down or speeds up during the measurement shifts every function alike and
    the ratios between them hold. With ``min_block_s`` a sample is the mean of back-to-back calls
    lasting at least that long (the warm state a loop sees, as torch.utils.benchmark measures it);
    without it, one call (then a fast op sees the caches and allocator the previous one left)."""
    if warmup < 0 or repeat < 1:
        raise ValueError(f"need warmup >= 0 and repeat >= 1, got {warmup}, {repeat}")
    blocks = dict.fromkeys(fns, 1)
    for _ in range(warmup):
        for name, fn in fns.items():
            seconds = _seconds(fn, device)
            if min_block_s > 0:
                blocks[name] = max(1, min(50, math.ceil(min_block_s / max(seconds, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if blocks[name] > 1:
                fn()  # the block starts from this function's own state
            times[name].append(_seconds(lambda: [fn() for _ in range(blocks[name])], device) / blocks[name])
    return {name: statistics.median(values) for name, values in times.items()}


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (readable in a terminal too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join(
        [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]]
    )


@contextlib.contextmanager
def _stderr_to_devnull():
    """File descriptor 2 to /dev/null: the profiler's C++ side prints ``USDT ... profiler_start`` /
    ``profiler_stop`` lines there, which ran into the bench tables. Python exceptions still raise."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_kib(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak extra memory while ``fn()`` runs, in KiB. CUDA: the allocator's peak above the start.
    CPU: from the profiler's allocation and free records, the running sum's maximum (ordered by
    time; an op's own transient peak counts at its net size)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) // 1024
    from torch.profiler import ProfilerActivity, profile

    with _stderr_to_devnull(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    running = peak = 0
    for event in events:
        running += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak // 1024


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


def copy_bandwidth(numel: int, device: str, repeat: int) -> float:
    """Bytes per second of ``out.copy_(x)`` for ``numel`` fp32 elements (read + write): the
    memory-bound limit the kernels' effective bandwidth is compared with."""
    x = torch.rand(numel, device=device)
    out = torch.empty_like(x)
    return 2 * x.numel() * 4 / median_seconds(lambda: out.copy_(x), repeat=repeat, device=device)
