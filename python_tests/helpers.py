"""Assertions shared by the op tests."""

import subprocess
import sys

import torch


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in units of the float32 spacing at |b| (elementwise)."""
    a, b = a.float(), b.float()
    spacing = torch.nextafter(b.abs(), torch.tensor(float("inf"))) - b.abs()
    return (a - b).abs() / spacing


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (for import-time behaviour) and return the result."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)
