"""Where a figure comes from: the CPU model, the vector ISA that torch's ATen and our C++ kernels
use on it, and the thread count. Both ISAs can be capped to measure AVX2 on an AVX-512 machine:
``ATEN_CPU_CAPABILITY=avx2`` (torch) and ``ROBUSTKERNELS_CPU_ISA=avx2`` (ours). The host allocator
is named too: under glibc's default, eager code pays page faults for every large temporary."""

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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively, where bf16 autocast can pay: a CUDA GPU with
    bf16 support, or a CPU with AVX512-BF16 or AMX (elsewhere torch emulates bf16, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


ALLOCATOR_LIBS = ("jemalloc", "tcmalloc", "mimalloc")
KEEP_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def allocator() -> str:
    """The host allocator, which eager baselines feel most: a caching malloc preloaded, glibc
    with the env settings that keep freed memory, or glibc's default (large temporaries go back
    to the kernel when freed and come back as fresh zeroed pages on the next call); and whether
    torch asks for transparent huge pages for large blocks (``THP_MEM_ALLOC_ENABLE=1``)."""
    preload = os.environ.get("LD_PRELOAD", "")
    thp = "; torch THP_MEM_ALLOC_ENABLE=1" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else ""
    for lib in ALLOCATOR_LIBS:
        if lib in preload:
            return f"{lib} (LD_PRELOAD){thp}"
    kept = [f"{k}={os.environ[k]}" for k in KEEP_SETTINGS if k in os.environ]
    return (f"glibc malloc, {' '.join(kept)}" if kept else "glibc malloc (default)") + thp


def describe() -> str:
    """One line for benchmark headers and ``robustkernels info``."""
    aten = torch.backends.cpu.get_cpu_capability()
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; vector ISA: ATen {aten}, "
            f"robustkernels C++ {kernel_isa()}; allocator: {allocator()}")
