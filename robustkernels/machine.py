"""Where a figure comes from: the CPU model, the vector ISA that torch's ATen and our C++ kernels
use on it, and the thread count."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def kernel_isa() -> str:
    """The clone our C++ CPU kernels run (GCC target_clones: x86-64-v4 needs AVX-512 F/BW/DQ/VL,
    x86-64-v3 AVX2 + FMA)."""
    flags = cpu_flags()
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "AVX-512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    return "baseline" if flags else "unknown"


def describe() -> str:
    """One line for benchmark headers and ``robustkernels info``."""
    aten = torch.backends.cpu.get_cpu_capability()
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; vector ISA: ATen {aten}, "
            f"robustkernels C++ {kernel_isa()}")
