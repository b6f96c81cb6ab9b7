"""pytest-benchmark: noisy weight forward+backward, our kernels grouped with the eager reference.

    pytest benchmarks/test_bench_noise.py --benchmark-group-by=group
"""

import pytest
import torch
from bench_noise import eager_noisy_weight, ours, step

import robustkernels

IMPLS = {"eager": (eager_noisy_weight, None), "reference": (ours, "reference"), "cpp": (ours, "cpp")}


@pytest.mark.parametrize("impl", [i for i in IMPLS if IMPLS[i][1] in (None, *robustkernels.available_backends("cpu"))])
@pytest.mark.parametrize("shape", [(64, 64, 3, 3), (640, 640, 3, 3)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_noisy_weight_fwd_bwd(benchmark, impl, shape, dtype):
    fn, backend = IMPLS[impl]
    benchmark.group = f"noisy_weight-{shape}-{dtype}"
    w = torch.randn(shape).to(dtype).requires_grad_()
    alpha = torch.tensor([0.25], requires_grad=True)
    g = torch.randn_like(w)
    with robustkernels.use_backend(backend or "auto"):
        benchmark(step, fn, [w], [alpha], [g])
    assert w.grad is not None and alpha.grad is not None
