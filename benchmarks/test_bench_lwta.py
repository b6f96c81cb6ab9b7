"""pytest-benchmark: LWTA forward+backward per backend, grouped with ReLU and the eager formulation.

    pytest benchmarks/test_bench_lwta.py --benchmark-group-by=group
"""

import pytest
import torch

import robustkernels
from robustkernels.bench.baselines import official_lwta as eager_lwta

IMPLS = ["relu", "eager"] + [b for b in ("reference", "cpp") if b in robustkernels.available_backends("cpu")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(32, 160, 16, 16)], ids=str)
def test_lwta_fwd_bwd(benchmark, impl, dtype, shape):
    benchmark.group = f"lwta-{shape}-{dtype}"
    h = torch.randn(shape).to(dtype).requires_grad_()
    g = torch.randn(shape).to(dtype)
    fn = {"relu": torch.relu, "eager": eager_lwta}.get(impl, lambda x: robustkernels.ops.lwta(x))

    def step():
        h.grad = None
        fn(h).backward(g)

    with robustkernels.use_backend(impl if impl not in ("relu", "eager") else "auto"):
        benchmark(step)
    assert h.grad is not None


@pytest.mark.parametrize("impl", ["bn+relu", "bn+eager", "bn+ours", "fused"])
@pytest.mark.parametrize("shape", [(32, 32, 16, 16)], ids=str)
def test_batch_norm_lwta_fwd_bwd(benchmark, impl, shape):
    """The pre-activation pair: BatchNorm then ReLU / eager LWTA / our LWTA, or fused BatchNormLWTA."""
    benchmark.group = f"bn-act-{shape}"
    torch.manual_seed(0)
    x = torch.randn(shape).requires_grad_()
    g = torch.randn(shape)
    bn = robustkernels.nn.BatchNormLWTA(shape[1]) if impl == "fused" else torch.nn.BatchNorm2d(shape[1])
    act = {"bn+relu": torch.relu, "bn+eager": eager_lwta, "bn+ours": lambda h: robustkernels.ops.lwta(h),
           "fused": lambda h: h}[impl]

    def step():
        x.grad = None
        act(bn(x)).backward(g)

    benchmark(step)
    assert x.grad is not None
