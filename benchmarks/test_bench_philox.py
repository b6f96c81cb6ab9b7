"""pytest-benchmark: the Philox stream per backend, grouped with the reference.

    pytest benchmarks/test_bench_philox.py --benchmark-group-by=group
"""

import pytest

import robustkernels
from robustkernels import ops

SIZES = [1 << 16, 1 << 20]
BACKENDS = [b for b in ("reference", "cpp") if b in robustkernels.available_backends("cpu")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("draw", [ops.philox_uniform, ops.philox_normal], ids=["uniform", "normal"])
def test_philox(benchmark, backend, n, draw):
    benchmark.group = f"philox-{draw.__name__}-{n}"
    with robustkernels.use_backend(backend):
        out = benchmark(draw, n, 1234, 0)
    assert out.shape == (n,)
