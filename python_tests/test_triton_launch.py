"""Triton launches as CUDA would see them, without a GPU: every launcher's grid for huge shapes
within CUDA's limits (recorded, not run), every launch guarded by its tensors' device, and no
kernel launched around the one launch helper."""

import ast
import pathlib

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")

from robustkernels.kernels.triton import launch as L  # noqa: E402
from robustkernels.kernels.triton import philox  # noqa: E402
from robustkernels.ops.lwta import KernelLayout  # noqa: E402
from robustkernels.ops.lwta import triton as lwta  # noqa: E402
from robustkernels.ops.noise import triton as noise  # noqa: E402
from robustkernels.ops.pgd import triton as pgd  # noqa: E402

META = torch.device("meta")


def _meta(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device=META)


def _lwta_calls(shape, dim, channels_last=False):
    h = _meta(*shape)
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    layout = KernelLayout(h, dim)
    physical = layout.physical(h)
    for mode in (0, 1, 2):
        yield lambda: lwta.lwta_forward(physical, 2, *layout.args, 0.67, mode, _meta(dtype=torch.int64), 0)
        yield lambda: lwta.lwta_backward(torch.empty_like(physical), physical, 2, *layout.args, 0.67, mode,
                                           _meta(dtype=torch.int64), 0)


def _noise_calls(shape):
    x = _meta(*shape)
    n, channels = x.numel(), shape[1]
    std = _meta(dtype=torch.float32)
    for alpha, channels_, inner, elementwise in ((_meta(1), 1, n, False),
                                                 (_meta(channels), channels, n // (shape[0] * channels), False),
                                                 (_meta(n), 1, 1, True)):
        yield lambda: noise.noise_add(x, alpha, std, channels_, inner, elementwise, _meta(dtype=torch.int64), 0)
        yield lambda: noise.noise_alpha_grad(x, alpha, std, channels_, inner, elementwise, _meta(dtype=torch.int64), 0)


def _pgd_calls(shape):
    x = _meta(*shape)
    batch = shape[0]
    for flat, lo in ((True, _meta(1)), (False, _meta(1)), (False, _meta(shape[1]))):
        xs = x.reshape(1, -1) if flat else x
        b = 1 if flat else batch
        for l2 in ((False,) if flat else (False, True)):
            yield lambda: pgd.pgd_step(torch.empty_like(xs), xs, xs, xs, _meta(b), _meta(b), lo, lo, l2)


CASES = {
    "inject_noise [256, 64, 64, 64]": lambda: _noise_calls((256, 64, 64, 64)),
    "pgd_step [512, 3, 224, 224]": lambda: _pgd_calls((512, 3, 224, 224)),
    "pgd_step 1-D, B = 3e6": lambda: _pgd_calls((3_000_000, 1)),
    "lwta inner 2**25": lambda: _lwta_calls((2, 4, 2**25), 1),
    "lwta channels_last [64, 64, 2048, 2048]": lambda: _lwta_calls((64, 64, 2048, 2048), 1, channels_last=True),
    "lwta [B, F] = [2**20, 256]": lambda: _lwta_calls((2**20, 256), 1),
    "philox 2**34 draws": lambda: [lambda: philox.philox_draw(2**34, 1, 0, True, 4, META)],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_launch_grids_of_huge_shapes_fit_cudas_limits(case):
    with L.recording() as launches:
        for call in CASES[case]():
            call()
    assert launches, "nothing was launched"
    for launch in launches:
        assert len(launch.grid) == 1 and 1 <= launch.grid[0] <= L.MAX_GRID[0], (launch.kernel, launch.grid)


def test_a_grid_beyond_the_limits_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"axis 1 is 70000, CUDA allows 1..65535"):
        L.check_grid((4, 70000))
    with pytest.raises(ValueError, match="axis 0"):
        L.programs(2**20, 2**12)


def test_every_launch_is_made_on_its_tensors_device(monkeypatch):
    """A launch with tensors on cuda:1 runs inside ``torch.cuda.device(cuda:1)`` (Triton launches
    on the current device); CPU tensors (the interpreter) need no guard."""
    seen, current = [], [None]

    class Guard:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            current[0] = self.device

        def __exit__(self, *exc):
            current[0] = None

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: seen.append((grid, current[0], kwargs["enable_fp_fusion"]))

    monkeypatch.setattr(torch.cuda, "device", Guard)
    monkeypatch.setattr(L, "_device", lambda args: torch.device("cuda", 1))
    L.launch(Kernel(), (3,), torch.empty(1), BLOCK=4)
    monkeypatch.setattr(L, "_device", lambda args: torch.device("cpu"))
    L.launch(Kernel(), (3,), torch.empty(1), BLOCK=4)
    assert seen == [((3,), torch.device("cuda", 1), False), ((3,), None, False)]


def test_no_kernel_is_launched_around_the_launch_helper():
    """``kernel[grid](...)`` appears nowhere in the Triton modules (kernels/triton/ and each op's
    triton.py) but launch.py."""
    package = pathlib.Path(L.__file__).parents[2]
    paths = sorted(package.glob("kernels/triton/*.py")) + sorted(package.glob("ops/*/triton.py"))
    assert len(paths) >= 6 and {p.parent.name for p in paths} >= {"pgd", "lwta", "noise"}, paths
    for path in paths:
        if path.name == "launch.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript):
                pytest.fail(f"{path.relative_to(package)}:{node.lineno} launches a kernel directly; use launch.launch")


SPECIALISATION_SCRIPT = r"""
from robustkernels.kernels.triton import launch, philox
from robustkernels.ops import aot
from robustkernels.ops.lwta import triton as lwta
from robustkernels.ops.noise import triton as noise
kernels = [k for m in (lwta, noise, philox) for name, k in vars(m).items() if name.endswith("_kernel")
           and any(p.name in ("seed", "seed_ptr") for p in k.params)]  # the launched kernels, not their helpers
assert len(kernels) == 5, [k.__name__ for k in kernels]
for k in kernels:
    fixed = {p.name for p in k.params if p.do_not_specialize}
    key = "seed" if k.__name__ == "_philox_fill_kernel" else "seed_ptr"  # the stochastic ops read a tensor
    assert fixed == {key, "offset"}, (k.__name__, fixed)
# a seed or offset equal to 1 stays a runtime argument in the ahead-of-time signature too
import torch
x = torch.empty(8, device="meta")
with launch.recording() as launches:
    philox.philox_draw(8, 1, 1, True, 4, torch.device("meta"))
    lwta.lwta_forward(torch.empty(2, 4, 8, device="meta"), 2, 4, 8, 0, 0.67, 0,
                      torch.empty((), dtype=torch.int64, device="meta"), 1)
name, signature, constexprs = aot.specialisation(launches[0])
assert signature["seed"] == "i32" and signature["offset"] == "i32" and "seed" not in constexprs, signature
name, signature, constexprs = aot.specialisation(launches[1])
assert signature["seed_ptr"] == "*i64" and signature["offset"] == "i32", signature
print("ok")
"""


def test_random_state_is_not_specialised():
    """A fresh seed per call must not mean a fresh compile: every kernel that takes (seed,
    offset) marks them do_not_specialize (compiled mode, where the JIT specialises)."""
    from .helpers import run_python

    result = run_python(SPECIALISATION_SCRIPT, env={"TRITON_INTERPRET": "0"})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
