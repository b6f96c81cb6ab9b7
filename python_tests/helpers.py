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


def assert_lowp_close(got: torch.Tensor, ref_lowp: torch.Tensor, ref_fp32: torch.Tensor, factor: float = 2.0) -> None:
    """A bf16/fp16 result is as good as the reference in that dtype: its max error against the
    fp32 reference is at most ``factor`` times the low-precision reference's own (plus one ulp
    of the dtype at the data's scale, for the case the reference happens to be exact)."""
    ulp = torch.finfo(got.dtype).eps * ref_fp32.abs().max().item()
    own_error = (ref_lowp.float() - ref_fp32.float()).abs().max().item()
    error = (got.float() - ref_fp32.float()).abs().max().item()
    assert error <= factor * own_error + ulp, f"error {error:.3g} vs reference's own {own_error:.3g} (+ulp {ulp:.3g})"


class DictDataset(torch.utils.data.Dataset):
    """``(x, y)`` served as dict samples ``{keys[0]: x[i], keys[1]: y[i]}``, as many dataset
    libraries do."""

    def __init__(self, x, y, keys=("image", "label")):
        self.x, self.y, self.keys = x, y, keys

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {self.keys[0]: self.x[i], self.keys[1]: self.y[i]}
