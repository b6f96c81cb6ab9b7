"""The CUDA LWTA kernel's per-block math (csrc/common/lwta_math.h, templated on the op-math type)
compiled for the host and run on the CPU: float64 blocks compute in double, and both float32 and
float64 agree bit for bit with the CPU kernel (and float32 with the reference), so a GPU run of
the same header cannot fall back to float32 arithmetic unnoticed."""

import pathlib

import pytest
import torch

import robustkernels
from robustkernels import reference
from robustkernels.ops.lwta import KernelLayout, lwta_backward, lwta_forward

from .conftest import backend_params

CSRC = pathlib.Path(__file__).resolve().parents[1] / "csrc"
SOURCE = r"""
#include <torch/extension.h>
#include "common/lwta_math.h"

template <typename A>
torch::Tensor run(torch::Tensor h, c10::optional<torch::Tensor> g, int64_t units, double temperature, int64_t mode,
                  int64_t seed) {
  // h: contiguous [outer, D], blocks of `units` along D (inner = 1), logical index = memory index
  auto out = torch::empty_like(h);
  const A* hp = h.data_ptr<A>();
  const A* gp = g ? g->data_ptr<A>() : nullptr;
  A* op = out.data_ptr<A>();
  for (int64_t b = 0; b < h.numel() / units; ++b) {
    A hb[32], gb[32], w[32], xi[32], y[32];
    int64_t logical[32];
    for (int u = 0; u < units; ++u) {
      logical[u] = b * units + u;
      hb[u] = hp[logical[u]];
      if (gp) gb[u] = gp[logical[u]];
    }
    rk::block_weights<32, A>(hb, logical, static_cast<int>(units), static_cast<A>(temperature),
                             static_cast<int>(mode), static_cast<uint64_t>(seed), 0, w, xi);
    if (gp)
      rk::block_backward(gb, hb, w, xi, static_cast<int>(units), static_cast<A>(temperature),
                         static_cast<int>(mode), y);
    else
      rk::block_forward(hb, w, static_cast<int>(units), y);
    for (int u = 0; u < units; ++u) op[logical[u]] = y[u];
  }
  return out;
}

torch::Tensor block_lwta(torch::Tensor h, c10::optional<torch::Tensor> g, int64_t units, double temperature,
                         int64_t mode, int64_t seed) {
  return h.scalar_type() == torch::kDouble ? run<double>(h, g, units, temperature, mode, seed)
                                           : run<float>(h, g, units, temperature, mode, seed);
}
"""


@pytest.fixture(scope="module")
def block_math(tmp_path_factory):
    from torch.utils.cpp_extension import load_inline

    folder = tmp_path_factory.mktemp("lwta_block_math")
    module = load_inline("rk_lwta_block_math", cpp_sources=SOURCE, functions=["block_lwta"],
                         extra_include_paths=[str(CSRC)], extra_cflags=["-O2", "-ffp-contract=off"],
                         build_directory=str(folder), verbose=False)
    return module.block_lwta


@pytest.mark.parametrize("backend", backend_params(("cpp",)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("units", [2, 3, 4])
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["soft", "hard", "argmax"])
def test_cuda_block_math_matches_the_cpu_kernel(block_math, backend, dtype, units, mode):
    g = torch.Generator().manual_seed(units)
    h = torch.randn(7, 4 * units, generator=g, dtype=dtype)
    h[2, 1] = float("inf")  # one non-finite block: NaN in all its units
    grad = torch.randn(h.shape, generator=g, dtype=dtype)
    seed, temperature = 12345, 0.67
    ours_fwd = block_math(h, None, units, temperature, mode, seed)
    ours_bwd = block_math(h, grad, units, temperature, mode, seed)
    layout = KernelLayout(h, 1)
    with robustkernels.use_backend(backend):
        cpu_fwd = lwta_forward(h, units, *layout.args, temperature, mode, seed, 0)
        cpu_bwd = lwta_backward(grad, h, units, *layout.args, temperature, mode, seed, 0)
    assert torch.equal(ours_fwd.isnan(), cpu_fwd.isnan()) and ours_fwd.isnan().sum() == units
    torch.testing.assert_close(ours_fwd, cpu_fwd, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(ours_bwd, cpu_bwd, rtol=0, atol=0, equal_nan=True)
    if dtype == torch.float32:
        kwargs = {"hard": mode == 1, "mode": "argmax" if mode == 2 else "sample"}
        ref = reference.lwta.lwta(h, units, 0.67, 1, seed=seed, **kwargs)
        torch.testing.assert_close(ours_fwd, ref, rtol=0, atol=0, equal_nan=True)
    else:  # double arithmetic: far closer to the float64 reference than float32 could be
        ref = reference.lwta.lwta(h, units, 0.67, 1, seed=seed, hard=mode == 1,
                                  mode="argmax" if mode == 2 else "sample")
        torch.testing.assert_close(ours_fwd, ref, rtol=1e-12, atol=1e-12, equal_nan=True)

