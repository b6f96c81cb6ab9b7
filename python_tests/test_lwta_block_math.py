"""The CUDA LWTA kernel's thread work (csrc/lwta/math.h's ``lwta_group``: a group of
positions whose draws share whole Philox blocks, and the per-block math templated on the op-math
type) compiled for the host and run on the CPU over every group of a launch: float64 blocks
compute in double, and both float32 and float64 agree bit for bit with the CPU kernel (and
float32 with the reference) on every layout and random-stream phase, so a GPU run of the same
header cannot fall back to float32 arithmetic or misplace a draw unnoticed."""

import pathlib

import pytest
import torch

import robustkernels
from robustkernels.ops import seed_tensor
from robustkernels.ops.lwta import KernelLayout, lwta_backward, lwta_forward
from robustkernels.ops.lwta import reference as lwta_ref

from .conftest import backend_params

CSRC = pathlib.Path(__file__).resolve().parents[1] / "csrc"
SOURCE = r"""
#include <torch/extension.h>
#include "lwta/math.h"

template <typename A>
struct HostIo {
  const A* grad;
  const A* input;
  A* out;
  bool backward;
  A h(int64_t i) const { return input[i]; }
  A g(int64_t i) const { return grad[i]; }
  void put(int64_t i, A v) { out[i] = v; }
};

template <int kMax, typename A>
void run_groups(HostIo<A>& io, const rk::LwtaGeometry& geo, double temperature, int64_t mode, int64_t seed,
                int64_t offset) {
  for (int64_t t = 0; t < geo.groups(rk::kLwtaGroup<kMax>); ++t)  // each CUDA thread's work, in turn
    rk::lwta_group<kMax, A>(io, geo, static_cast<A>(temperature), static_cast<int>(mode),
                            static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), t);
}

template <typename A>
torch::Tensor run(torch::Tensor h, c10::optional<torch::Tensor> g, int64_t units, int64_t dim_size, int64_t inner,
                  int64_t positions, double temperature, int64_t mode, int64_t seed, int64_t offset) {
  auto out = torch::empty_like(h);
  HostIo<A> io{g ? g->data_ptr<A>() : nullptr, h.data_ptr<A>(), out.data_ptr<A>(), g.has_value()};
  const int64_t length = positions > 0 ? positions : inner;
  const rk::LwtaGeometry geo{h.numel() / (dim_size * length), dim_size, inner, positions, units};
  if (units == 2)  // the CUDA launcher's dispatch on U
    run_groups<2, A>(io, geo, temperature, mode, seed, offset);
  else if (units <= 4)
    run_groups<4, A>(io, geo, temperature, mode, seed, offset);
  else if (units <= 8)
    run_groups<8, A>(io, geo, temperature, mode, seed, offset);
  else
    run_groups<32, A>(io, geo, temperature, mode, seed, offset);
  return out;
}

torch::Tensor block_lwta(torch::Tensor h, c10::optional<torch::Tensor> g, int64_t units, int64_t dim_size,
                         int64_t inner, int64_t positions, double temperature, int64_t mode, int64_t seed,
                         int64_t offset) {
  return h.scalar_type() == torch::kDouble
             ? run<double>(h, g, units, dim_size, inner, positions, temperature, mode, seed, offset)
             : run<float>(h, g, units, dim_size, inner, positions, temperature, mode, seed, offset);
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
    layout = KernelLayout(h, 1)
    ours_fwd = block_math(h, None, units, *layout.args, temperature, mode, seed, 0)
    ours_bwd = block_math(h, grad, units, *layout.args, temperature, mode, seed, 0)
    with robustkernels.use_backend(backend):
        cpu_fwd = lwta_forward(h, units, *layout.args, temperature, mode, seed_tensor(seed), 0)
        cpu_bwd = lwta_backward(grad, h, units, *layout.args, temperature, mode, seed_tensor(seed), 0)
    assert torch.equal(ours_fwd.isnan(), cpu_fwd.isnan()) and ours_fwd.isnan().sum() == units
    torch.testing.assert_close(ours_fwd, cpu_fwd, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(ours_bwd, cpu_bwd, rtol=0, atol=0, equal_nan=True)
    if dtype == torch.float32:
        kwargs = {"hard": mode == 1, "mode": "argmax" if mode == 2 else "sample"}
        ref = lwta_ref.lwta(h, units, 0.67, 1, seed=seed, **kwargs)
        torch.testing.assert_close(ours_fwd, ref, rtol=0, atol=0, equal_nan=True)
    else:  # double arithmetic: far closer to the float64 reference than float32 could be
        ref = lwta_ref.lwta(h, units, 0.67, 1, seed=seed, hard=mode == 1,
                                  mode="argmax" if mode == 2 else "sample")
        torch.testing.assert_close(ours_fwd, ref, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("backend", backend_params(("cpp",)))
@pytest.mark.parametrize("shape, dim, channels_last, units", [
    ((3, 6, 7), 1, False, 3),        # contiguous, inner 7: groups of 4 positions end mid row
    ((2, 4, 5, 3), 1, True, 2),      # channels_last, 15 positions
    ((5, 24), 1, False, 4),          # flat [B, F]: groups of 4 blocks, one run of 16 draws
    ((3, 30), 1, False, 10),         # U > 8: one position per thread
    ((2, 20, 3), 1, False, 10),      # U > 8 in a contiguous layout
], ids=str)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 2**32 - 3])
@pytest.mark.parametrize("mode", [0, 1], ids=["soft", "hard"])
def test_cuda_groups_read_the_right_draws_at_every_phase(block_math, backend, shape, dim, channels_last, units,
                                                         offset, mode):
    """A CUDA thread's positions share Philox blocks: rows and flat runs starting at every phase of
    a block, groups cut short by the end of a row, U > 8, counters crossing 2**32: every element
    gets the draw of its logical index, as on the CPU kernel."""
    g = torch.Generator().manual_seed(offset % 97)
    h = torch.randn(shape, generator=g)
    grad = torch.randn(shape, generator=g)
    if channels_last:
        h, grad = (t.contiguous(memory_format=torch.channels_last) for t in (h, grad))
    layout = KernelLayout(h, dim)
    physical_h, physical_g = layout.physical(h), layout.physical(grad)
    args = (units, *layout.args, 0.67, mode)
    ours = (block_math(physical_h, None, *args, 2**40 + 9, offset),
            block_math(physical_h, physical_g, *args, 2**40 + 9, offset))
    key = (seed_tensor(2**40 + 9), offset)
    with robustkernels.use_backend(backend):
        cpu = (lwta_forward(physical_h, *args, *key), lwta_backward(physical_g, physical_h, *args, *key))
    assert torch.equal(ours[0], cpu[0]) and torch.equal(ours[1], cpu[1])
