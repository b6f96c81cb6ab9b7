"""The shared Philox stream: same draws on every backend, the Philox spec, and the statistics."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import robustkernels
from robustkernels import ops, reference
from robustkernels.reference.philox import uint_to_uniform
from robustkernels.ops.philox import philox as philox_op

from .conftest import backend_params
from .helpers import ulp_distance

# Backends differ only in their libm log/cos inside Box-Muller (measured: <= 4 ulp over 2**20
# draws, 95-98% of draws within 1 ulp); uniform draws are bit-identical.
NORMAL_ULP_BOUND = 6

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
    words = reference.philox4x32_10(tuple(torch.tensor([c]) for c in counter), key)
    assert tuple(int(w) for w in words) == expected


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("n, seed, offset", STREAMS)
def test_uniform_bit_identical_to_reference(backend, n, seed, offset):
    expected = reference.philox_uniform(n, seed, offset)
    with robustkernels.use_backend(backend):
        got = ops.philox_uniform(n, seed, offset)
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("n, seed, offset", STREAMS)
def test_normal_matches_reference_within_ulps(backend, n, seed, offset):
    expected = reference.philox_normal(n, seed, offset)
    with robustkernels.use_backend(backend):
        got = ops.philox_normal(n, seed, offset)
    assert got.dtype == torch.float32 and got.shape == (n,)
    assert ulp_distance(got, expected).max().item() <= NORMAL_ULP_BOUND


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
def test_normal_agrees_on_a_large_draw(backend):
    expected = reference.philox_normal(1 << 18, 99, 3)
    with robustkernels.use_backend(backend):
        got = ops.philox_normal(1 << 18, 99, 3)
    distance = ulp_distance(got, expected)
    assert distance.max().item() <= NORMAL_ULP_BOUND
    assert (distance <= 2).float().mean().item() > 0.99  # measured: >= 99.4% within 2 ulp


def test_reference_normal_is_box_muller_of_reference_uniforms():
    n, seed = 1 << 16, 31337
    c0, c1, _, _ = reference.philox_block(seed, torch.arange(n))
    u1 = uint_to_uniform(c0).double().clamp_min(1e-7)
    theta = 2 * math.pi * uint_to_uniform(c1).double()
    radius = torch.sqrt(-2 * torch.log(u1))
    exact = radius * torch.cos(theta)
    # fp32 Box-Muller error: rounding theta = 2*pi*u2 (|d theta| <= theta * eps) times the
    # radius, plus a few roundings of log, sqrt, cos and the product.
    eps = torch.finfo(torch.float32).eps
    bound = radius * eps * (theta + 4)
    assert ((reference.philox_normal(n, seed).double() - exact).abs() <= bound).all()


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("draw", [ops.philox_uniform, ops.philox_normal], ids=["uniform", "normal"])
def test_offset_continues_the_stream(backend, draw):
    with robustkernels.use_backend(backend):
        whole = draw(300, 5, 0)
        tail = draw(100, 5, 200)
    assert torch.equal(tail, whole[200:])


@pytest.mark.parametrize("backend", backend_params())
def test_empty_draw(backend):
    with robustkernels.use_backend(backend):
        assert ops.philox_uniform(0, 1).shape == (0,)


def test_uniform_range_and_moments():
    n = 1 << 20
    u = ops.philox_uniform(n, 2024).double()
    assert u.min().item() >= 0.0 and u.max().item() < 1.0
    # 5-sigma bounds from the exact moments of U(0, 1)
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    var_se = math.sqrt((1 / 80 - 1 / 144) / n)  # Var of (U - 1/2)^2 is 1/80 - 1/144
    assert abs(u.var().item() - 1 / 12) < 5 * var_se
    assert abs(stats.skew(u.numpy())) < 5 * math.sqrt(6 / n)


def test_uniform_chi_square_and_independence():
    n, bins = 1 << 20, 256
    u = ops.philox_uniform(n, 7).numpy()
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


def test_normal_moments_and_distribution():
    n = 1 << 20
    z = ops.philox_normal(n, 4242).double().numpy()
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-4


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("normal", [False, True], ids=["uniform", "normal"])
def test_opcheck(backend, normal):
    with robustkernels.use_backend(backend):
        torch.library.opcheck(philox_op.op, (257, 11, 2**32 - 3, normal, torch.device("cpu")))


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
def test_cuda_backends_match_reference(backend):
    n, seed, offset = 100_003, 2**40 + 1, 2**32 - 7
    with robustkernels.use_backend(backend):
        u = ops.philox_uniform(n, seed, offset, device="cuda")
        z = ops.philox_normal(n, seed, offset, device="cuda")
    assert torch.equal(u.cpu(), reference.philox_uniform(n, seed, offset))
    assert ulp_distance(z.cpu(), reference.philox_normal(n, seed, offset)).max().item() <= NORMAL_ULP_BOUND
