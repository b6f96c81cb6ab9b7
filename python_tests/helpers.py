"""Assertions and set-ups shared by the op and attack tests."""

import subprocess
import sys

import pytest
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


def assert_reaches_exact_linf(build) -> None:
    """Two classes, z = W x + b: the smallest Linf perturbation that flips a point is
    |margin| / ||w_1 - w_0||_1 (the box does not bind here). The attack ``build(model, eps)``
    returns, at eps the median distance, fools every point whose distance is below eps and, within
    the ball, none beyond it."""
    from torch import nn

    torch.manual_seed(0)
    lin = nn.Linear(20, 2)
    with torch.no_grad():
        lin.weight.normal_()
        lin.bias.copy_(torch.tensor([0.0, -0.5 * float((lin.weight[1] - lin.weight[0]).sum())]))
    x = torch.rand(64, 20) * 0.2 + 0.4
    y = lin(x).argmax(1)
    w, b = lin.weight[1] - lin.weight[0], lin.bias[1] - lin.bias[0]
    exact = ((x @ w + b).abs() / w.abs().sum()).detach()
    eps = float(exact.median())
    adv = build(lin, eps)(x, y)
    fooled = lin(adv).argmax(1) != y
    # fp32 rounds x + delta (x in [0, 1]) by at most 2^-24: the ball's edge, up to that rounding
    assert (adv - x).abs().amax(1).max() <= eps + 2**-24
    assert fooled[exact < eps * 0.999].all() and not fooled[exact > eps * 1.001].any()


def assert_resumes_exactly(make, fit, data, stop_at: int, path, **options) -> list[dict]:
    """``make()`` -> (fresh model, method), trained uninterrupted by ``fit(model, method, data,
    **options)``; then again, checkpointing every 5 steps and interrupted at step ``stop_at``, and
    resumed from ``path`` with a fresh ``make()``: the weights must be bit-identical and the
    losses equal (to 1e-6). Returns the uninterrupted run's history."""

    class Interrupt(Exception):
        pass

    def stop(info):
        if info["step"] == stop_at:
            raise Interrupt

    reference, method = make()
    expected = fit(reference, method, data, **options)
    model, method = make()
    with pytest.raises(Interrupt):
        fit(model, method, data, checkpoint_path=path, checkpoint_every=5, callback=stop, **options)
    model, method = make()
    history = fit(model, method, data, checkpoint_path=path, resume=True, **options)
    for a, b in zip(reference.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["loss"] for r in history] == pytest.approx([r["loss"] for r in expected], rel=1e-6)
    return expected


def capture_cuda_graph(fn):
    """(graph, fn's outputs) with ``fn`` captured in a CUDA graph after one warm-up call on a side
    stream (Triton compiles there, outside the capture); ``graph.replay()`` reruns it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn()
    return graph, outputs
