"""``robustkernels info``: versions, CPU and vector ISA, threads, extension and backends."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys

from .args import command


def add_info(commands) -> None:
    command(commands, "info", "versions, CPU and vector ISA, threads, extension and available backends", run_info)


def _triton_version() -> str:
    try:
        import triton
    except Exception as exc:  # not installed, or broken install
        return f"not available ({type(exc).__name__})"
    mode = "interpreter (TRITON_INTERPRET=1)" if os.environ.get("TRITON_INTERPRET") == "1" else "compiled"
    return f"{triton.__version__}, {mode}"


def _nvcc_version() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "not found"
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{nvcc} (cannot run: {exc})"
    release = [line for line in out.splitlines() if "release" in line]
    return f"{release[-1].strip() if release else 'unknown version'} ({nvcc})"


def info_lines() -> list[str]:
    """What ``robustkernels info`` prints: versions, threads, extension and backends per device."""
    import torch

    import robustkernels
    from robustkernels import _backend, _extension, machine
    from robustkernels.kernels.cuda_arch import built_cuda_arch_list

    cuda = torch.version.cuda or "none (CPU build of torch)"
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        cuda += f", {torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
    else:
        cuda += ", no CUDA device"
    extension = "built and loaded" if _extension.LOADED else f"NOT loaded ({_extension.REASON})"
    if _extension.LOADED:
        extension += ", with CUDA kernels" if _extension.CUDA_BUILT else ", CPU kernels only"
    lines = [
        f"robustkernels {robustkernels.__version__}",
        f"python        {platform.python_version()} ({sys.executable})",
        f"torch         {torch.__version__}",
        f"triton        {_triton_version()}",
        f"CUDA          {cuda}",
        f"nvcc          {_nvcc_version()}",
        f"machine       {machine.describe()}",
        f"extension     {extension}",
        f"CUDA archs    {built_cuda_arch_list()}",
        f"backend       {_backend.requested_backend()} (set with {_backend.ENV_VAR} or use_backend())",
    ]
    for device in devices:
        names = _backend.available_backends(device)
        chosen = _backend.resolve(device) if _backend.requested_backend() in names + ["auto"] else "unavailable"
        lines.append(f"  {device:<11} available: {', '.join(names)}; ops run on: {chosen}")
    return lines


def run_info(_: argparse.Namespace) -> int:
    print("\n".join(info_lines()))
    return 0
