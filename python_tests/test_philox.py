"""The shared Philox stream: same draws on every backend, the Philox spec, and the statistics."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import robustkernels
from robustkernels import ops
from robustkernels.ops.lwta import reference as lwta_ref
from robustkernels.ops.philox import philox as philox_op
from robustkernels.ops.philox import reference as philox_ref
from robustkernels.ops.philox.reference import uint_to_uniform

from .conftest import backend_params
from .helpers import ulp_distance

# Where FMA contraction cannot be ruled out (CUDA/Triton on a GPU we could not test), allow 1 ulp;
# on the CPU backends and the Triton interpreter every draw is bit-identical.

STREAMS = [  # (n, seed, offset): n not a multiple of 4 or of a block, counters across 2**32
    (1, 0, 0),
    (7, 1, 0),
    (1023, 2**31 - 1, 5),
    (4099, 2**40 + 17, 2**32 - 2049),
    (513, 2**63 - 1, 2**32 - 1),
    (130, 123456789, 2**63 - 131),
]


@pytest.mark.parametrize(
    "counter, key, expected",
    [  # Known-answer vectors published with Random123 (Salmon et al. 2011), kat_vectors
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_reference_philox_matches_random123_known_answers(counter, key, expected):
    words = philox_ref.philox4x32_10(tuple(torch.tensor([c]) for c in counter), key)
    assert tuple(int(w) for w in words) == expected


PER_BLOCK = pytest.mark.parametrize("per_block", [1, 4], ids=["x1", "x4"])


DRAWS = pytest.mark.parametrize(
    "draw, expected_draw",
    [(ops.philox_uniform, philox_ref.philox_uniform), (ops.philox_normal, philox_ref.philox_normal)],
    ids=["uniform", "normal"],
)


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("n, seed, offset", STREAMS)
@PER_BLOCK
@DRAWS
def test_bit_identical_to_reference(backend, n, seed, offset, per_block, draw, expected_draw):
    expected = expected_draw(n, seed, offset, per_block=per_block)
    with robustkernels.use_backend(backend):
        got = draw(n, seed, offset, per_block=per_block)
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@PER_BLOCK
def test_normal_bit_identical_on_a_large_draw(backend, per_block):
    expected = philox_ref.philox_normal(1 << 18, 99, 3, per_block=per_block)
    with robustkernels.use_backend(backend):
        got = ops.philox_normal(1 << 18, 99, 3, per_block=per_block)
    assert torch.equal(got, expected)


def test_polynomial_log_and_sincos_are_accurate():
    u = philox_ref.philox_uniform(1 << 18, 5).clamp_min(1e-7)
    exact_log = torch.log(u.double())
    assert (ulp_distance(philox_ref.log_poly(u), exact_log.float()) <= 2).all()
    theta = 6.283185307179586 * u
    sin, cos = philox_ref.sincos_poly(theta)
    eps = torch.finfo(torch.float32).eps
    assert ((sin.double() - torch.sin(theta.double())).abs() <= 2 * eps).all()
    assert ((cos.double() - torch.cos(theta.double())).abs() <= 2 * eps).all()
    x = torch.linspace(-86.0, 88.0, 100_001)
    exact_exp = torch.exp(x.double())
    assert ((lwta_ref.exp_poly(x).double() - exact_exp).abs() <= 2 * eps * exact_exp).all()
    assert lwta_ref.exp_poly(torch.tensor([-88.0, -1e4, float("-inf")])).eq(0).all()  # underflow to 0


def _exact_box_muller(u1, u2):
    u1 = uint_to_uniform(u1).double().clamp_min(1e-7)
    theta = 2 * math.pi * uint_to_uniform(u2).double()
    radius = torch.sqrt(-2 * torch.log(u1))
    # fp32 error bound: rounding theta = 2*pi*u2 (|d theta| <= theta * eps) times the radius,
    # plus a few roundings of log, sqrt, cos/sin and the product.
    bound = radius * torch.finfo(torch.float32).eps * (theta + 4)
    return radius * torch.cos(theta), radius * torch.sin(theta), bound


def test_reference_normal_is_box_muller_of_reference_uniforms():
    n, seed = 1 << 16, 31337
    c0, c1, _, _ = philox_ref.philox_block(seed, torch.arange(n))
    exact_cos, _, bound = _exact_box_muller(c0, c1)
    assert ((philox_ref.philox_normal(n, seed).double() - exact_cos).abs() <= bound).all()


def test_reference_four_per_block_uses_all_words_in_order():
    blocks, seed, offset = 4096, 99, 8  # offset 8 = block 2, output 0
    c0, c1, c2, c3 = philox_ref.philox_block(seed, torch.arange(2, 2 + blocks))
    cos01, sin01, bound01 = _exact_box_muller(c0, c1)
    cos23, sin23, bound23 = _exact_box_muller(c2, c3)
    draws = philox_ref.philox_normal(4 * blocks, seed, offset, per_block=4).double().view(blocks, 4)
    for got, exact, bound in ((draws[:, 0], cos01, bound01), (draws[:, 1], sin01, bound01),
                              (draws[:, 2], cos23, bound23), (draws[:, 3], sin23, bound23)):
        assert ((got - exact).abs() <= bound).all()
    uniforms = philox_ref.philox_uniform(4 * blocks, seed, offset, per_block=4).view(blocks, 4)
    assert torch.equal(uniforms, torch.stack([uint_to_uniform(c) for c in (c0, c1, c2, c3)], dim=1))


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("draw", [ops.philox_uniform, ops.philox_normal], ids=["uniform", "normal"])
@PER_BLOCK
@pytest.mark.parametrize("start", [200, 201, 203])
def test_offset_continues_the_stream(backend, draw, per_block, start):
    with robustkernels.use_backend(backend):
        whole = draw(300, 5, 0, per_block=per_block)
        tail = draw(300 - start, 5, start, per_block=per_block)
    assert torch.equal(tail, whole[start:])


@pytest.mark.parametrize("backend", backend_params())
def test_empty_draw(backend):
    with robustkernels.use_backend(backend):
        assert ops.philox_uniform(0, 1).shape == (0,)


@PER_BLOCK
def test_uniform_range_and_moments(per_block):
    n = 1 << 20
    u = ops.philox_uniform(n, 2024, per_block=per_block).double()
    assert u.min().item() >= 0.0 and u.max().item() < 1.0
    # 5-sigma bounds from the exact moments of U(0, 1)
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    var_se = math.sqrt((1 / 80 - 1 / 144) / n)  # Var of (U - 1/2)^2 is 1/80 - 1/144
    assert abs(u.var().item() - 1 / 12) < 5 * var_se
    assert abs(stats.skew(u.numpy())) < 5 * math.sqrt(6 / n)


@PER_BLOCK
def test_uniform_chi_square_and_independence(per_block):
    n, bins = 1 << 20, 256
    u = ops.philox_uniform(n, 7, per_block=per_block).numpy()
    counts = np.bincount((u * bins).astype(np.int64), minlength=bins)
    assert stats.chisquare(counts).pvalue > 1e-4
    # pairs of consecutive draws fill a 16x16 grid evenly (no serial dependence)
    pairs = (u[0::2] * 16).astype(np.int64) * 16 + (u[1::2] * 16).astype(np.int64)
    assert stats.chisquare(np.bincount(pairs, minlength=256)).pvalue > 1e-4
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / math.sqrt(n)


def test_streams_of_different_seeds_are_independent():
    n = 1 << 18
    a, b = ops.philox_uniform(n, 1).numpy(), ops.philox_uniform(n, 2).numpy()
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(n)
    assert not np.array_equal(a, b)


@PER_BLOCK
def test_normal_moments_and_distribution(per_block):
    n = 1 << 20
    z = ops.philox_normal(n, 4242, per_block=per_block).double().numpy()
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)  # cos/sin of one pair too
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-4


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("normal", [False, True], ids=["uniform", "normal"])
@PER_BLOCK
def test_opcheck(backend, normal, per_block):
    with robustkernels.use_backend(backend):
        torch.library.opcheck(philox_op.op, (257, 11, 2**32 - 3, normal, per_block, torch.device("cpu")))


@pytest.mark.parametrize("backend", backend_params(("reference", "cpp")))
def test_compiles_fullgraph_with_explicit_seed(backend):
    def noisy(x, seed):
        return x + ops.philox_normal(x.numel(), seed, 0).view_as(x)

    x = torch.randn(4, 33)
    compiled = torch.compile(noisy, fullgraph=True, backend="inductor")
    with robustkernels.use_backend(backend):
        assert torch.equal(compiled(x, 1234), noisy(x, 1234))


def test_compiles_fullgraph_with_seed_from_generator():
    def noisy(x):
        return x + ops.philox_uniform(x.numel(), ops.draw_seed(), 0).view_as(x)

    compiled = torch.compile(noisy, fullgraph=True)
    x = torch.zeros(64)
    torch.manual_seed(0)
    first, second = compiled(x), compiled(x)
    torch.manual_seed(0)
    assert torch.equal(compiled(x), first)  # reproducible under torch.manual_seed
    assert not torch.equal(first, second)  # fresh draws on each call


def test_draw_seed_follows_generators():
    torch.manual_seed(3)
    a = ops.draw_seed()
    torch.manual_seed(3)
    assert ops.draw_seed() == a
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    seeds = [ops.draw_seed(g1) for _ in range(3)]
    assert seeds == [ops.draw_seed(g2) for _ in range(3)]
    assert len(set(seeds)) == 3 and all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n=-1, seed=0), ValueError, "n must be >= 0"),
        (dict(n=2.0, seed=0), TypeError, "n must be an int"),
        (dict(n=True, seed=0), TypeError, "n must be an int"),
        (dict(n=4, seed=-1), ValueError, "seed must be >= 0"),
        (dict(n=4, seed=2**63), ValueError, "seed must be <="),
        (dict(n=4, seed=torch.tensor(3)), TypeError, "seed must be an int"),
        (dict(n=4, seed=0, offset=-5), ValueError, "offset must be >= 0"),
        (dict(n=4, seed=0, offset=2**63 - 2), ValueError, "offset \\+ number of draws"),
        (dict(n=4, seed=0, device=0), TypeError, "device must be"),
        (dict(n=4, seed=0, per_block=2), ValueError, "per_block must be 1 or 4"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    for draw in (ops.philox_uniform, ops.philox_normal):
        with pytest.raises(error, match=match):
            draw(**kwargs)


def test_draw_seed_rejects_non_generator():
    with pytest.raises(TypeError, match="generator"):
        ops.draw_seed(42)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@PER_BLOCK
def test_cuda_backends_match_reference(backend, per_block):
    n, seed, offset = 100_003, 2**40 + 1, 2**32 - 7
    with robustkernels.use_backend(backend):
        u = ops.philox_uniform(n, seed, offset, device="cuda", per_block=per_block)
        z = ops.philox_normal(n, seed, offset, device="cuda", per_block=per_block)
    assert torch.equal(u.cpu(), philox_ref.philox_uniform(n, seed, offset, per_block=per_block))
    # no FMA contraction anywhere (nvcc -fmad=false, enable_fp_fusion=False): the same bits
    assert torch.equal(z.cpu(), philox_ref.philox_normal(n, seed, offset, per_block=per_block))
