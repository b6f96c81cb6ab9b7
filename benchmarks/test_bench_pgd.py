"""pytest-benchmark: the PGD step per backend, grouped with the eager update.

    pytest benchmarks/test_bench_pgd.py --benchmark-group-by=group
"""

import pytest
import torch

import robustkernels
from robustkernels import ops
from robustkernels.bench.baselines import torchattacks_step as eager_step

IMPLS = ["eager"] + [b for b in ("reference", "cpp") if b in robustkernels.available_backends("cpu")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_pgd_step(benchmark, impl, norm, dtype):
    benchmark.group = f"pgd_step-{norm}-{dtype}-[256,3,32,32]"
    x_nat = torch.rand(256, 3, 32, 32).to(dtype)
    x_adv, grad = (x_nat.float() + 0.01).clamp(0, 1).to(dtype), torch.randn(256, 3, 32, 32).to(dtype)
    eps = 8 / 255 if norm == "linf" else 0.5
    if impl == "eager":
        out = benchmark(eager_step, x_adv, x_nat, grad, 2 / 255, eps, norm)
    else:
        with robustkernels.use_backend(impl):
            out = benchmark(ops.pgd_step, x_adv, x_nat, grad, step=2 / 255, eps=eps, norm=norm)
    assert out.shape == x_adv.shape
