"""Where a figure comes from: the CPU model, the vector ISA that torch's ATen and our C++ kernels
use on it, and the thread count. Both ISAs can be capped to measure AVX2 on an AVX-512 machine:
``ATEN_CPU_CAPABILITY=avx2`` (torch) and ``ROBUSTKERNELS_CPU_ISA=avx2`` (ours)."""

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


def kernel_isa() -> str:
    """The ISA variant our C++ CPU kernels run: the CPU's best (AVX-512 = x86-64-v4, AVX2 =
    x86-64-v3), capped by ``ROBUSTKERNELS_CPU_ISA=avx2|baseline``; "not built" without the extension."""
    from . import _extension

    if not _extension.LOADED:
        return "not built"
    return ("baseline", "AVX2", "AVX-512")[int(torch.ops.robustkernels_C.cpu_isa())]


def describe() -> str:
    """One line for benchmark headers and ``robustkernels info``."""
    aten = torch.backends.cpu.get_cpu_capability()
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; vector ISA: ATen {aten}, "
            f"robustkernels C++ {kernel_isa()}")
