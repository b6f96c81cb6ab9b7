"""Stochastic LWTA: the op against reference/ on every backend, layouts, statistics, gradients."""

import numpy as np
import pytest
import torch
from scipy import stats

import robustkernels
from robustkernels import ops
from robustkernels.ops import seed_tensor
from robustkernels.ops.lwta import lwta_backward, lwta_forward
from robustkernels.ops.lwta import reference as lwta_ref
from robustkernels.ops.philox import reference as philox_ref

from .conftest import backend_params
from .helpers import assert_lowp_close

CASES = [  # (shape, competitors, dim)
    ((2, 6, 5, 7), 2, 1),
    ((2, 6, 5, 7), 3, 1),
    ((1, 4, 3, 3), 4, 1),
    ((4, 10), 2, 1),
    ((3, 5, 8), 4, -1),
    ((2, 9, 4), 3, 1),
    ((2, 4, 17, 19), 2, 1),  # rows of 323 positions: a full and a partial tile
]


def seeded(seed=3):
    return torch.Generator().manual_seed(seed)


def run(backend, h, **kwargs):
    x = h.detach().clone().requires_grad_(True)
    weights = torch.linspace(-1, 1, h.numel()).view(h.shape)
    with robustkernels.use_backend(backend):
        y = ops.lwta(x, generator=seeded(), **kwargs)
        (grad,) = torch.autograd.grad((y.float() * weights).sum(), x)
    return y, grad, weights


def reference_autograd(h, weights, competitors, dim, **kwargs):
    x = h.detach().clone().requires_grad_(True)
    dim = dim % h.dim()
    y = lwta_ref.lwta(x, competitors, dim=dim, seed=ops.draw_seed(seeded()), **kwargs)
    (grad,) = torch.autograd.grad((y.float() * weights).sum(), x)
    return y, grad


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("shape, competitors, dim", CASES, ids=str)
@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_matches_reference_fp32(backend, shape, competitors, dim, hard):
    torch.manual_seed(0)
    h = torch.randn(shape)
    y, grad, weights = run(backend, h, competitors=competitors, dim=dim, hard=hard)
    y_ref, grad_ref = reference_autograd(h, weights, competitors, dim, hard=hard)
    assert torch.equal(y, y_ref)  # the same fp32 operations on every backend
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-6)  # our closed form vs autograd


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("shape, competitors, dim", CASES[:3], ids=str)
@pytest.mark.parametrize("mode", ["soft", "hard", "argmax"])
def test_gradients_bit_identical_across_backends(backend, shape, competitors, dim, mode):
    torch.manual_seed(1)
    h = torch.randn(shape)
    kwargs = dict(
        competitors=competitors, dim=dim, hard=mode == "hard", mode="argmax" if mode == "argmax" else "sample"
    )
    y, grad, _ = run(backend, h, **kwargs)
    y_ref, grad_ref, _ = run("reference", h, **kwargs)
    assert torch.equal(y, y_ref) and torch.equal(grad, grad_ref)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(backend, dtype):
    torch.manual_seed(2)
    h32 = torch.randn(2, 8, 4, 4)
    h = h32.to(dtype)
    with robustkernels.use_backend(backend):
        y = ops.lwta(h, generator=seeded())
    assert y.dtype == dtype
    seed = ops.draw_seed(seeded())
    ref_fp32 = lwta_ref.lwta(h.float(), 2, seed=seed)
    assert_lowp_close(y, lwta_ref.lwta(h, 2, seed=seed), ref_fp32)
    if backend != "triton":  # the Triton interpreter rounds fp32 -> bf16/fp16 its own way
        with robustkernels.use_backend("reference"):
            assert torch.equal(y, ops.lwta(h, generator=seeded()))


@pytest.mark.parametrize("backend", backend_params())
def test_channels_last_same_values_and_layout(backend):
    torch.manual_seed(3)
    h = torch.randn(2, 6, 5, 3)
    h_cl = h.contiguous(memory_format=torch.channels_last)
    y, grad, _ = run(backend, h)
    y_cl, grad_cl, _ = run(backend, h_cl)
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y_cl, y) and torch.equal(grad_cl, grad)


@pytest.mark.parametrize("backend", backend_params())
def test_non_contiguous_input_untouched(backend):
    torch.manual_seed(4)
    base = torch.randn(3, 7, 6)
    h = base.transpose(1, 2)  # [3, 6, 7], units along dim 1, non-contiguous
    before = base.clone()
    y, _, _ = run(backend, h)
    y_ref, _, _ = run("reference", h.contiguous())
    assert torch.equal(y, y_ref) and torch.equal(base, before)


def test_winners_follow_softmax_of_h():
    # Gumbel-max: argmax((h + G) / T) = argmax(h + G) ~ softmax(h), whatever T (the issue says
    # softmax(h / T); the relaxation's winner distribution does not depend on T).
    logits = torch.tensor([0.8, 0.1, -0.5, 0.3])  # non-zero, so a winner shows as y != 0
    n = 20000
    h = logits.view(1, 4, 1).expand(n, 4, 1).contiguous()
    expected = torch.softmax(logits.double(), 0).numpy() * n
    for temperature in (0.67, 0.01):
        y = ops.lwta(h, competitors=4, temperature=temperature, hard=True, generator=seeded(7))
        winners = (y != 0).float().argmax(dim=1).flatten().numpy()
        counts = np.bincount(winners, minlength=4)
        assert stats.chisquare(counts, expected).pvalue > 1e-4, (temperature, counts, expected)


def test_pair_winners_follow_sigmoid_of_h_difference():
    # Two competitors draw one logistic L = G0 - G1 per block: unit 0 wins with sigmoid(h0 - h1).
    n = 20000
    gaps = torch.tensor([-1.5, -0.3, 0.0, 0.7, 2.0])
    h = torch.stack([gaps + 0.5, torch.full_like(gaps, 0.5)], dim=1)  # [5, 2], both units non-zero
    h = h.unsqueeze(0).expand(n, 5, 2).reshape(n, 10).contiguous()
    for temperature in (0.67, 0.01):
        y = ops.lwta(h, competitors=2, temperature=temperature, hard=True, generator=seeded(11))
        first_wins = (y.view(n, 5, 2)[..., 0] != 0).sum(dim=0).double()
        expected = torch.sigmoid(gaps.double()) * n
        chi2 = ((first_wins - expected) ** 2 / expected + (first_wins - expected) ** 2 / (n - expected)).sum()
        assert stats.chi2.sf(chi2.item(), df=5) > 1e-4, (temperature, first_wins, expected)


def test_logistic_noise_matches_its_distribution():
    u = philox_ref.philox_uniform(200000, 12345, per_block=4)
    noise = lwta_ref.logistic(u).double()
    assert stats.kstest(noise.numpy(), stats.logistic.cdf).pvalue > 1e-4
    assert abs(noise.mean().item()) < 5 * (np.pi**2 / 3 / noise.numel()) ** 0.5
    assert abs(noise.var().item() - np.pi**2 / 3) < 0.05  # sd of the variance estimate: about 0.01
    # the two Gumbels it replaces: G0 - G1 has the same law
    gumbels = lwta_ref.gumbel(philox_ref.philox_uniform(400000, 999, per_block=4)).double().view(-1, 2)
    assert stats.ks_2samp(noise.numpy(), (gumbels[:, 0] - gumbels[:, 1]).numpy()).pvalue > 1e-4


def test_zero_temperature_limit_pair_is_sign_of_difference_plus_logistic():
    torch.manual_seed(8)
    h = torch.randn(4, 6, 5, 5)
    y = ops.lwta(h, competitors=2, temperature=1e-6, generator=seeded(9))
    seed = ops.draw_seed(seeded(9))
    u0 = philox_ref.philox_uniform(h.numel(), seed, per_block=4).view(4, 3, 2, 5, 5)[:, :, 0]
    blocks = h.view(4, 3, 2, 5, 5)
    first = (blocks[:, :, 0] - blocks[:, :, 1] + lwta_ref.logistic(u0)) >= 0
    mask = torch.stack([first, ~first], dim=2).float().view(h.shape)
    assert torch.equal(y, h * mask)


def test_zero_temperature_limit_is_masked_argmax_of_h_plus_gumbel():
    torch.manual_seed(5)
    h = torch.randn(4, 6, 5, 5)
    y = ops.lwta(h, competitors=3, temperature=1e-6, generator=seeded(9))
    seed = ops.draw_seed(seeded(9))
    g = lwta_ref.gumbel(philox_ref.philox_uniform(h.numel(), seed, per_block=4).view(h.shape))
    blocks = (h + g).view(4, 2, 3, 5, 5)
    mask = torch.zeros_like(blocks).scatter_(2, blocks.argmax(dim=2, keepdim=True), 1.0).view(h.shape)
    assert torch.equal(y, h * mask)


def test_argmax_mode_is_deterministic_winner():
    h = torch.tensor([[1.0, 3.0, -2.0, -1.0, 0.5, 0.25]])
    y = ops.lwta(h, competitors=2, mode="argmax")
    assert torch.equal(y, torch.tensor([[0.0, 3.0, 0.0, -1.0, 0.5, 0.0]]))


@pytest.mark.parametrize("backend", backend_params(("reference", "cpp")))
@pytest.mark.parametrize("mode", [0, 2], ids=["soft", "argmax"])
@pytest.mark.parametrize("competitors", [2, 3])
def test_gradcheck_float64(backend, mode, competitors):
    torch.manual_seed(6)
    h = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)
    with robustkernels.use_backend(backend):
        key = seed_tensor(5)
        assert torch.autograd.gradcheck(lambda x: lwta_forward(x, competitors, 6, 9, 0, 0.67, mode, key, 0), (h,))


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_opcheck(backend, mode):
    h, g = torch.randn(2, 6, 3, 3), torch.randn(2, 6, 3, 3)
    with robustkernels.use_backend(backend):
        torch.library.opcheck(lwta_forward.op, (h.requires_grad_(), 2, 6, 9, 0, 0.67, mode, seed_tensor(5), 0))
        torch.library.opcheck(lwta_backward.op, (g, h.detach(), 2, 6, 9, 0, 0.67, mode, seed_tensor(5), 0))
        torch.library.opcheck(lwta_forward.op, (torch.randn(2, 3, 3, 6), 3, 6, 1, 9, 0.5, mode, seed_tensor(5),
                                                0))  # channels_last


@pytest.mark.parametrize("backend", backend_params())
def test_saves_only_the_input(backend):
    h = torch.randn(4, 8, 6, 6, requires_grad=True)
    saved = []
    with robustkernels.use_backend(backend), torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        y = ops.lwta(h)
    y.sum().backward()
    # the input and the 0-dim key: no noise, no softmax, no mask kept
    assert [t.numel() for t in saved] == [h.numel(), 1] and saved[1].dtype == torch.int64


def test_compiles_fullgraph():
    h = torch.randn(2, 4, 3, 3, requires_grad=True)

    @torch.compile(fullgraph=True)
    def forward(h):
        return ops.lwta(h, competitors=2, temperature=0.5)

    y = forward(h)
    y.sum().backward()
    blocks = (y / h).detach().view(2, 2, 2, 3, 3)  # the winner weights: a distribution per block
    torch.testing.assert_close(blocks.sum(dim=2), torch.ones(2, 2, 3, 3))
    assert h.grad is not None and torch.isfinite(h.grad).all()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(competitors=4), ValueError, r"competitors=4 must divide h.shape\[1\]=6"),
        (dict(competitors=1), ValueError, "competitors must be >= 2"),
        (dict(temperature=0.0), ValueError, "temperature must be a float > 0"),
        (dict(mode="max"), ValueError, "mode must be one of"),
        (dict(dim=4), ValueError, "dim must be <= 3"),
        (dict(competitors=2.0), TypeError, "competitors must be an int"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.lwta(torch.randn(2, 6, 3, 3), **kwargs)
    with pytest.raises(TypeError, match="h must be float32"):
        ops.lwta(torch.ones(2, 6, dtype=torch.int64))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("competitors", [2, 4])
def test_cuda_backends_match_reference(backend, hard, competitors):
    h = torch.randn(8, 16, 12, 12)
    y_ref, grad_ref, weights = run("reference", h, hard=hard, competitors=competitors)
    x = h.cuda().requires_grad_(True)
    with robustkernels.use_backend(backend):
        y = ops.lwta(x, generator=seeded(), hard=hard, competitors=competitors)
        (grad,) = torch.autograd.grad((y * weights.cuda()).sum(), x)
    assert torch.equal(y.cpu(), y_ref) and torch.equal(grad.cpu(), grad_ref)  # the same bits, fusion off


@pytest.mark.cuda
@pytest.mark.parametrize("competitors", [2, 3])
def test_cuda_float64_gradcheck_and_double_arithmetic(competitors):
    """float64 on the CUDA kernel computes in double (the shared block math), so gradcheck holds
    and the values equal the CPU kernel's float64 ones within double rounding."""
    h = torch.randn(3, 6, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    with robustkernels.use_backend("cuda"):
        assert torch.autograd.gradcheck(lambda t: ops.lwta(t, competitors=competitors, generator=seeded()), (h,))
        y = ops.lwta(h, competitors=competitors, generator=seeded())
    with robustkernels.use_backend("cpp"):
        y_cpu = ops.lwta(h.detach().cpu(), competitors=competitors, generator=seeded())
    torch.testing.assert_close(y.detach().cpu(), y_cpu, rtol=1e-14, atol=1e-14)


def test_zero_dim_is_refused_and_empty_passes_through():
    with pytest.raises(ValueError, match="h must have at least one dimension"):
        ops.lwta(torch.tensor(1.0))
    empty = torch.ones(0, 4, requires_grad=True)
    out = ops.lwta(empty)
    assert out.shape == (0, 4)
    out.sum().backward()
    assert empty.grad.shape == (0, 4)


def _poisoned(shape, competitors, dim, dtype, seed=0):
    """Random h with NaN, +inf and -inf planted in a few blocks; and the [.., blocks, U, ..]
    mask of the units whose block holds one."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(shape, generator=g)
    flat = h.view(-1)
    picks = torch.randperm(h.numel(), generator=g)[:4]
    for i, value in zip(picks.tolist(), (float("nan"), float("inf"), -float("inf"), float("inf"))):
        flat[i] = value
    d = dim % h.dim()
    blocks = h.reshape(*shape[:d], shape[d] // competitors, competitors, *shape[d + 1:])
    bad = (~torch.isfinite(blocks)).any(dim=d + 1, keepdim=True).expand_as(blocks).reshape(shape)
    return h.to(dtype), bad


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("shape, competitors, dim", CASES[:6], ids=str)
@pytest.mark.parametrize("mode", ["soft", "hard", "argmax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_non_finite_blocks_are_nan_and_the_others_untouched(backend, shape, competitors, dim, mode, dtype):
    """The documented rule: a block with a NaN or +-inf input is NaN in every unit, forward and
    backward, on every backend; every other block equals the run on the same input made finite."""
    if backend == "triton" and dtype == torch.float64:
        pytest.skip("the triton kernels take fp32/bf16/fp16")
    kwargs = {"soft": {}, "hard": {"hard": True}, "argmax": {"mode": "argmax"}}[mode]
    h, bad = _poisoned(shape, competitors, dim, dtype)
    y, grad, _ = run(backend, h, competitors=competitors, dim=dim, **kwargs)
    assert y.isnan()[bad].all() and grad.isnan()[bad].all()
    clean_y, clean_grad, _ = run(backend, torch.where(bad, torch.zeros_like(h), h), competitors=competitors, dim=dim,
                                 **kwargs)
    assert torch.equal(y[~bad], clean_y[~bad]) and torch.equal(grad[~bad], clean_grad[~bad])
    ref_y, ref_grad, _ = run("reference", h, competitors=competitors, dim=dim, **kwargs)
    assert torch.equal(y.isnan(), ref_y.isnan()) and torch.equal(grad.isnan(), ref_grad.isnan())


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("features, competitors", [(2 * 600, 2), (3 * 300, 3), (4 * 7, 4), (2 * 3, 2)], ids=str)
@pytest.mark.parametrize("offset", [0, 3, 2**32 - 5])
@pytest.mark.parametrize("mode", [0, 1])
def test_features_layout_matches_reference_at_any_offset(backend, features, competitors, offset, mode):
    """[B, F] features (inner 1), where the CPU kernel's tiles run along the blocks of a row: more
    blocks than one tile holds, few, and counters that start mid Philox block or cross 2**32."""
    torch.manual_seed(14)
    h, g = torch.randn(3, features), torch.randn(3, features)
    args = (competitors, features, 1, 0, 0.67, mode, seed_tensor(2**40 + 3), offset)
    with robustkernels.use_backend("reference"):
        expected = (lwta_forward(h, *args), lwta_backward(g, h, *args))
    with robustkernels.use_backend(backend):
        got = (lwta_forward(h, *args), lwta_backward(g, h, *args))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("shape, competitors, args", [
    ((2, 6, 7), 3, (6, 7, 0)),             # contiguous [outer, D, inner], inner odd: rows start mid block
    ((1, 4, 300), 2, (4, 300, 0)),         # inner past one tile (256): the second tile's rows
    ((2, 5, 3, 4), 4, (4, 1, 15)),         # channels_last [B, P, D], P = 15 positions
], ids=str)
@pytest.mark.parametrize("offset", [1, 2**32 - 5])
@pytest.mark.parametrize("mode", [0, 1])
def test_row_layouts_match_reference_at_any_offset(backend, shape, competitors, args, offset, mode):
    """Contiguous and channels_last tiles, whose rows (one unit, consecutive positions) read whole
    Philox blocks and shift them into place: rows starting at every phase of a block, counters
    crossing 2**32, more positions than one tile holds."""
    torch.manual_seed(15)
    h, g = torch.randn(shape), torch.randn(shape)
    full = (competitors, *args, 0.67, mode, seed_tensor(2**40 + 3), offset)
    with robustkernels.use_backend("reference"):
        expected = (lwta_forward(h, *full), lwta_backward(g, h, *full))
    with robustkernels.use_backend(backend):
        got = (lwta_forward(h, *full), lwta_backward(g, h, *full))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# ---- compiled kernels on a GPU: what the interpreter alone vouches for on the CPU ----

def run_cuda(backend, h, **kwargs):
    """:func:`run` with ``h`` on the GPU (its layout kept) on ``backend``; results on the CPU."""
    x = h.detach().clone().cuda().requires_grad_(True)
    weights = torch.linspace(-1, 1, h.numel()).view(h.shape).cuda()
    with robustkernels.use_backend(backend):
        y = ops.lwta(x, generator=seeded(), **kwargs)
        (grad,) = torch.autograd.grad((y.float() * weights).sum(), x)
    assert y.stride() == x.stride()  # the layout kept
    return y.detach().cpu(), grad.cpu()


GPU_LAYOUTS = {  # name: (h, competitors)
    "channels_last": (lambda: torch.randn(4, 12, 9, 7).contiguous(memory_format=torch.channels_last), 2),
    "channels_last U=3": (lambda: torch.randn(2, 9, 5, 6).contiguous(memory_format=torch.channels_last), 3),
    "flat [B, F]": (lambda: torch.randn(64, 24), 2),
    "flat [B, F] U=4": (lambda: torch.randn(33, 40), 4),
    "U=3 padded to 4": (lambda: torch.randn(2, 9, 5, 5), 3),
    "inner > 256": (lambda: torch.randn(2, 4, 17, 19), 2),
    "inner > 256 U=3": (lambda: torch.randn(3, 6, 600), 3),
}


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("layout", list(GPU_LAYOUTS))
@pytest.mark.parametrize("mode", ["soft", "hard", "argmax"])
def test_cuda_layouts_match_reference(backend, layout, mode):
    torch.manual_seed(11)
    make, competitors = GPU_LAYOUTS[layout]
    h = make()
    kwargs = dict(competitors=competitors, hard=mode == "hard", mode="argmax" if mode == "argmax" else "sample")
    y, grad = run_cuda(backend, h, **kwargs)
    y_ref, grad_ref, _ = run("reference", h.contiguous(), **kwargs)
    assert torch.equal(y, y_ref) and torch.equal(grad, grad_ref)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("competitors", [2, 3])
def test_cuda_low_precision_matches_reference(backend, dtype, competitors):
    """fp32 math, one rounding to bf16/fp16 (round to nearest even, as torch): the same bits as the
    reference backend, forward and backward."""
    torch.manual_seed(12)
    h = torch.randn(4, 6, 7, 5).to(dtype)
    y, grad = run_cuda(backend, h, competitors=competitors)
    y_ref, grad_ref, _ = run("reference", h, competitors=competitors)
    assert y.dtype == dtype and torch.equal(y, y_ref) and torch.equal(grad, grad_ref)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("shape, competitors, dim", [CASES[0], CASES[1], CASES[3]], ids=str)
@pytest.mark.parametrize("mode", ["soft", "hard", "argmax"])
def test_cuda_non_finite_blocks(backend, shape, competitors, dim, mode):
    kwargs = {"soft": {}, "hard": {"hard": True}, "argmax": {"mode": "argmax"}}[mode]
    h, bad = _poisoned(shape, competitors, dim, torch.float32)
    y, grad = run_cuda(backend, h, competitors=competitors, dim=dim, **kwargs)
    y_ref, grad_ref, _ = run("reference", h, competitors=competitors, dim=dim, **kwargs)
    assert y.isnan()[bad].all() and grad.isnan()[bad].all()
    assert torch.equal(y.isnan(), y_ref.isnan()) and torch.equal(grad.isnan(), grad_ref.isnan())
    assert torch.equal(y[~bad], y_ref[~bad]) and torch.equal(grad[~bad], grad_ref[~bad])


@pytest.mark.cuda
def test_cuda_backward_refuses_a_gradient_on_another_device():
    """The CUDA kernel reads grad through a raw pointer: a grad left on the CPU is an error that
    says so, not a read of host memory from the GPU."""
    h = torch.randn(2, 4, 3, 3, device="cuda")
    with robustkernels.use_backend("cuda"), pytest.raises(RuntimeError, match="grad is on cpu but h is on cuda"):
        lwta_backward(torch.randn(2, 4, 3, 3), h, 2, 4, 9, 0, 0.67, 0, seed_tensor(5), 0)
