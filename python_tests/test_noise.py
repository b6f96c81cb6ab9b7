"""Noise injection (PNI): the op against reference/ on every backend, gradients, no saved noise."""

import math

import pytest
import torch

import robustkernels
from robustkernels import ops
from robustkernels.ops import seed_tensor
from robustkernels.ops.noise import noise_add, noise_alpha_grad
from robustkernels.ops.noise import reference as noise_ref
from robustkernels.ops.philox import reference as philox_ref

from .conftest import backend_params
from .helpers import assert_lowp_close

SHAPES = [(5, 3, 3, 3), (7, 2), (3, 5, 7), (1, 4, 3, 3), (2, 9)]
GRANULARITIES = ["layer", "channel", "element"]


def make_alpha(x, granularity, channel_dim=0, value=None):
    shape = {"layer": (1,), "channel": (x.shape[channel_dim],), "element": tuple(x.shape)}[granularity]
    alpha = (
        torch.rand(shape, dtype=torch.float64) + 0.1 if value is None else torch.full(shape, value, dtype=torch.float64)
    )
    return alpha.float().requires_grad_()


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def seed_of(seed=0):
    return ops.draw_seed(seeded(seed))


def grads(y, inputs, weights):
    return torch.autograd.grad((y.float() * weights).sum(), inputs)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_noisy_weight_matches_reference_fp32(backend, shape, granularity):
    torch.manual_seed(1)
    w = torch.randn(shape, requires_grad=True)
    alpha = make_alpha(w, granularity)
    g = torch.randn(shape)
    with robustkernels.use_backend(backend):
        y = ops.noisy_weight(w, alpha, generator=seeded())
        gw, ga = grads(y, (w, alpha), g)
    y_ref = noise_ref.noisy_weight(w, alpha, seed_of())
    gw_ref, ga_ref = grads(y_ref, (w, alpha), g)
    assert y.shape == w.shape and y.dtype == w.dtype
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gw, gw_ref)  # the identity: std is a constant
    torch.testing.assert_close(ga, ga_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_low_precision_within_reference_error(backend, dtype, granularity):
    torch.manual_seed(2)
    w32 = torch.randn(6, 5, 3, 3)
    w = w32.to(dtype)
    alpha = make_alpha(w, granularity)
    with robustkernels.use_backend(backend):
        y = ops.noisy_weight(w, alpha, generator=seeded())
    assert y.dtype == dtype
    seed = seed_of()
    ref_fp32 = noise_ref.noisy_weight(w.float(), alpha, seed)  # same input values, fp32 math and storage
    assert_lowp_close(y, noise_ref.noisy_weight(w, alpha, seed), ref_fp32)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_alpha_gradient(backend, dtype):
    torch.manual_seed(3)
    w = torch.randn(8, 3, 3, 3).to(dtype).requires_grad_()
    alpha = make_alpha(w, "channel")
    g = torch.randn(w.shape)
    with robustkernels.use_backend(backend):
        (ga,) = grads(ops.noisy_weight(w, alpha, generator=seeded()), (alpha,), g.to(dtype).float())
    seed = seed_of()
    (ga_fp32,) = grads(noise_ref.noisy_weight(w.detach().float(), alpha, seed), (alpha,), g.to(dtype).float())
    # the incoming gradient is bf16/fp16 but alpha and its gradient are fp32 on every path
    assert ga.dtype == torch.float32
    torch.testing.assert_close(ga, ga_fp32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_inject_noise_activations_non_contiguous(backend, granularity):
    torch.manual_seed(4)
    base = torch.randn(3, 5, 6, 4)
    x = base.permute(0, 1, 3, 2)[:, :, ::2]  # [3, 5, 2, 6], non-contiguous
    assert not x.is_contiguous()
    x = x.requires_grad_() if x.is_leaf else x
    alpha = make_alpha(x, granularity, channel_dim=1)
    before = base.clone()
    with robustkernels.use_backend(backend):
        y = ops.inject_noise(x, alpha, generator=seeded())
        (ga,) = grads(y, (alpha,), torch.ones(x.shape))
    y_ref = noise_ref.inject_noise(x, alpha, seed_of())
    (ga_ref,) = grads(y_ref, (alpha,), torch.ones(x.shape))
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ga, ga_ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(base, before)  # the caller's tensor is untouched


@pytest.mark.parametrize("backend", backend_params())
def test_same_seed_same_noise_on_every_backend(backend):
    w = torch.randn(4, 3, 5)
    with robustkernels.use_backend("reference"):
        expected = ops.noisy_weight(w, 0.5, generator=seeded(7))
    with robustkernels.use_backend(backend):
        got = ops.noisy_weight(w, 0.5, generator=seeded(7))
        other = ops.noisy_weight(w, 0.5, generator=seeded(8))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got, other)


@pytest.mark.parametrize("backend", backend_params(("reference", "cpp")))
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_gradcheck_float64(backend, granularity):
    torch.manual_seed(5)
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    channels, inner, elementwise = {"layer": (1, 60, False), "channel": (4, 15, False), "element": (60, 1, True)}[
        granularity
    ]
    alpha = torch.rand(1 if granularity == "layer" else (4 if granularity == "channel" else 60), dtype=torch.float64)
    alpha.requires_grad_()
    std = x.detach().std()
    with robustkernels.use_backend(backend):
        assert torch.autograd.gradcheck(
            lambda x, a: noise_add(x, a, std, channels, inner, elementwise, seed_tensor(123), 7), (x, alpha)
        )


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_opcheck(backend, dtype, granularity):
    x = torch.randn(4, 6, dtype=dtype)
    channels, inner, elementwise = {"layer": (1, 24, False), "channel": (4, 6, False), "element": (24, 1, True)}[
        granularity
    ]
    alpha = torch.rand(1 if granularity == "layer" else (4 if granularity == "channel" else 24), requires_grad=True)
    std = x.float().std()
    with robustkernels.use_backend(backend):
        torch.library.opcheck(noise_add.op, (x, alpha, std, channels, inner, elementwise, seed_tensor(3), 11))
        torch.library.opcheck(noise_alpha_grad.op, (torch.randn(4, 6, dtype=dtype), alpha.detach(), std, channels,
                                                    inner, elementwise, seed_tensor(3), 11))


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_no_noise_tensor_saved_for_backward(backend, granularity):
    w = torch.randn(16, 8, 3, 3, requires_grad=True)
    alpha = make_alpha(w, granularity)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with robustkernels.use_backend(backend), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = ops.noisy_weight(w, alpha)
    y.sum().backward()
    # only alpha (a parameter, whatever its size), the 0-dim std and the 0-dim key: no noise
    assert sum(t.numel() for t in saved) == alpha.numel() + 2
    assert all(t.numel() == 1 or t.data_ptr() == alpha.data_ptr() for t in saved)


def test_noise_has_the_normal_moments():
    n = 1 << 20
    w = torch.randn(n, dtype=torch.float64)
    y = ops.noisy_weight(w, 1.0, generator=seeded(11))
    eta = ((y - w) / w.std()).numpy()
    assert abs(eta.mean()) < 5 / math.sqrt(n)
    assert abs(eta.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(((eta - eta.mean()) ** 3).mean()) < 5 * math.sqrt(15 / n)


def test_zero_alpha_is_identity_and_default_generator_reproducible():
    w = torch.randn(5, 4)
    assert torch.equal(ops.noisy_weight(w, 0.0), w)
    torch.manual_seed(0)
    a = ops.noisy_weight(w, 0.3)
    torch.manual_seed(0)
    assert torch.equal(ops.noisy_weight(w, 0.3), a)


def test_compiles_fullgraph_forward_backward():
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    alpha = torch.tensor([0.5], requires_grad=True)

    @torch.compile(fullgraph=True)
    def forward(w, alpha):
        return ops.noisy_weight(w, alpha)

    y = forward(w, alpha)
    gw, ga = torch.autograd.grad((y * y).sum(), (w, alpha))  # through the compiled graph's backward
    eta = (y - w).detach() / (0.5 * w.detach().std())
    assert abs(eta.mean().item()) < 0.3 and 0.7 < eta.var().item() < 1.3  # 216 draws
    torch.testing.assert_close(gw, 2 * y.detach())
    torch.testing.assert_close(ga, (2 * y.detach() * eta * w.detach().std()).sum().view(1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "weight, alpha, error, match",
    [
        (torch.randn(4, 3), torch.ones(5), ValueError, "alpha must have one element"),
        (torch.randn(4, 3), torch.ones(4, 2), ValueError, "alpha must have one element"),
        (torch.arange(6), 0.1, TypeError, "weight must be float32"),
        (torch.randn(1), 0.1, ValueError, "weight needs at least 2 elements"),
        ([1.0, 2.0], 0.1, TypeError, "weight must be a Tensor"),
        (torch.randn(4, 3), torch.ones(1, dtype=torch.int64), TypeError, "alpha must be a floating-point"),
        (torch.randn(4, 3), "0.1", TypeError, "alpha must be a float or a Tensor"),
        (torch.randn(4, 3), torch.ones(1, device="meta"), ValueError, "alpha is on meta"),
    ],
)
def test_bad_input(weight, alpha, error, match):
    with pytest.raises(error, match=match):
        ops.noisy_weight(weight, alpha)


def test_bad_channel_dim():
    with pytest.raises(ValueError, match="channel_dim must be <= 1"):
        ops.inject_noise(torch.randn(2, 3), 0.1, channel_dim=2)


def assert_close_given_std(got, ref_lowp, ref_fp32, noise_scale, std_gap):
    """:func:`assert_lowp_close`, widened by what a different std allows: a noisy weight is
    ``x + std * alpha * eta``, so a std that differs by ``std_gap`` moves it by at most
    ``max |alpha * eta| * std_gap`` (``noise_scale`` = ``max |alpha * eta|``) before its rounding,
    which the bound's one ulp already covers."""
    slack = noise_scale * std_gap * (1 + 1e-6)
    error = (got.float() - ref_fp32.float()).abs().max().item()
    own = (ref_lowp.float() - ref_fp32.float()).abs().max().item()
    ulp = torch.finfo(got.dtype).eps * ref_fp32.abs().max().item()
    assert error <= 2 * own + ulp + slack, f"error {error:.3g} vs own {own:.3g} + ulp {ulp:.3g} + std slack {slack:.3g}"


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
@pytest.mark.parametrize("layout", [(1, 231, False), (3, 77, False), (7, 33, False), (3, 8, False), (231, 1, True)],
                         ids=["layer", "channel inner 77", "channel inner 33", "channel inner 8", "element"])
@pytest.mark.parametrize("offset", [0, 1, 3, 2**32 - 2])
def test_kernels_read_whole_philox_blocks_at_any_alignment(backend, layout, offset):
    """The kernels compute each Philox block once for the (up to) four elements it serves: rows
    that start mid block (inner not a multiple of 4, offsets 1 and 3), a stream across 2**32;
    values and alpha gradients as the reference's."""
    channels, inner, elementwise = layout
    torch.manual_seed(10)
    x, g = torch.randn(231 if inner != 8 else 24 * 3), torch.randn(231 if inner != 8 else 24 * 3)
    alpha = torch.rand(x.numel() if elementwise else channels) + 0.1
    args = (alpha, x.std(), channels, inner, elementwise, seed_tensor(2**40 + 5), offset)
    with robustkernels.use_backend(backend):
        y, ga = noise_add(x, *args), noise_alpha_grad(g, *args)
    assert torch.equal(y, noise_ref.noise_add(x, *args))
    torch.testing.assert_close(ga, noise_ref.noise_alpha_grad(g, *args), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_std_gap_bound_covers_a_device_std(dtype, granularity):
    """What the CUDA test below allows for: a std a few ulp off the CPU's (a GPU's torch.std) moves
    a noisy weight past :func:`assert_lowp_close`'s bound in fp32, never past the widened one."""
    from robustkernels.ops.noise import _alpha_layout

    torch.manual_seed(6)
    w = torch.randn(64, 32, 3, 3).to(dtype)
    alpha = make_alpha(w, granularity).detach()
    seed, flat = seed_of(), alpha.float().reshape(-1)
    layout = _alpha_layout(w, alpha, 0)
    eta = philox_ref.philox_normal(w.numel(), seed, 0, per_block=4)
    scale = (noise_ref._flat_alpha(flat, w.numel(), *layout) * eta).abs().max().item()
    std = w.float().std()
    ref_lowp, ref_fp32 = noise_ref.noisy_weight(w, alpha, seed), noise_ref.noisy_weight(w.float(), alpha, seed)
    for ulps in (1, -1, 4, -4):
        off = std * (1 + ulps * torch.finfo(torch.float32).eps)  # a "device" std
        device = noise_ref.noise_add(w, flat, off, *layout, seed, 0)
        assert_close_given_std(device, ref_lowp, ref_fp32, scale, abs(off.item() - std.item()))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_cuda_backends_match_reference(backend, dtype, granularity):
    from robustkernels.ops.noise import _alpha_layout, tensor_std

    torch.manual_seed(6)  # drawn on the CPU: the same weights and alpha on every machine
    w_cpu = torch.randn(64, 32, 3, 3).to(dtype)
    alpha_cpu = make_alpha(w_cpu, granularity).detach()
    w, alpha = w_cpu.cuda().requires_grad_(), alpha_cpu.cuda().requires_grad_()
    with robustkernels.use_backend(backend):
        y = ops.noisy_weight(w, alpha, generator=seeded())
        (ga,) = torch.autograd.grad(y.float().sum(), alpha)
        std_device = tensor_std(w.detach()).cpu()
    seed = seed_of()
    channels, inner, elementwise = _alpha_layout(w_cpu, alpha_cpu, 0)
    flat_alpha = alpha_cpu.float().reshape(-1)
    # exact: given the device's std, the kernel is the reference bit for bit
    exact = noise_ref.noise_add(w_cpu, flat_alpha, std_device, channels, inner, elementwise, seed, 0)
    assert torch.equal(y.detach().cpu(), exact)
    # against the CPU's std (torch.std may differ in its last bits between devices): as good as
    # the reference in this dtype, within what the std difference moves the noise
    std_cpu = w_cpu.float().std()
    assert abs(std_device.item() - std_cpu.item()) <= 8 * torch.finfo(torch.float32).eps * std_cpu.item()
    eta = philox_ref.philox_normal(w_cpu.numel(), seed, 0, per_block=4).view(w_cpu.shape)
    scale = (noise_ref._flat_alpha(flat_alpha, w_cpu.numel(), channels, inner, elementwise).view(w_cpu.shape)
             * eta).abs().max().item()
    assert_close_given_std(y.detach().cpu(), noise_ref.noisy_weight(w_cpu, alpha_cpu, seed),
                           noise_ref.noisy_weight(w_cpu.float(), alpha_cpu, seed), scale,
                           abs(std_device.item() - std_cpu.item()))
    a_ref = alpha_cpu.clone().requires_grad_()
    (ga_ref,) = torch.autograd.grad(noise_ref.noisy_weight(w_cpu.float(), a_ref, seed).sum(), a_ref)
    torch.testing.assert_close(ga.cpu(), ga_ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("n", [2, 7, 40_000, 100_003])
def test_tensor_std_matches_float64(backend, dtype, n):
    from robustkernels.ops.noise import tensor_std

    x = (torch.randn(n, dtype=torch.float64) * 3 + 100).to(dtype)  # a large mean: cancellation-prone
    with robustkernels.use_backend(backend):
        got = tensor_std(x)
        torch.library.opcheck(tensor_std.op, (x,))
    assert got.shape == () and got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    exact = x.double().std()
    torch.testing.assert_close(got.double(), exact, rtol=1e-5 if dtype != torch.float64 else 1e-12, atol=0)


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_channels_last_stays_channels_last(backend, granularity):
    """inject_noise reads channels_last activations in place and returns channels_last; the draws
    follow memory order (NHWC), on every backend as on the reference."""
    torch.manual_seed(7)
    x = torch.randn(3, 5, 4, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    alpha = make_alpha(x, granularity, channel_dim=1)
    if granularity == "element":
        alpha = alpha.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(x.shape)
    with robustkernels.use_backend(backend):
        y = ops.inject_noise(x, alpha, generator=seeded())
        gx, ga = grads(y, (x, alpha), g)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    y_ref = noise_ref.inject_noise(x, alpha, seed_of())
    gx_ref, ga_ref = grads(y_ref, (x, alpha), g)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(ga, ga_ref, rtol=1e-5, atol=1e-5)
    # memory order: the NHWC buffer gets the draws a contiguous [B, H, W, C] tensor would
    nhwc = x.detach().permute(0, 2, 3, 1)
    a_nhwc = alpha.detach().reshape(-1) if granularity != "element" else alpha.detach().permute(0, 2, 3, 1)
    with robustkernels.use_backend(backend):
        y_nhwc = ops.inject_noise(nhwc.contiguous(), a_nhwc, channel_dim=3, generator=seeded())
    torch.testing.assert_close(y.detach().permute(0, 2, 3, 1), y_nhwc, rtol=1e-6, atol=1e-6)


def test_channels_last_is_not_copied():
    x = torch.randn(2, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    seen = []
    real = noise_add.op

    def spy(physical, *args):
        seen.append(physical)
        return real(physical, *args)

    from unittest import mock

    with mock.patch.object(noise_add, "op", spy):
        y = ops.inject_noise(x, 0.1)
    assert seen[0].data_ptr() == x.data_ptr() and y.stride() == x.stride()


def test_noise_reads_no_tensor_value_on_the_host():
    """alpha's finiteness is checked without a GPU-to-host sync (torch._assert_async on a
    device): on meta tensors, where any read of a value fails, the op runs through."""
    meta = torch.device("meta")
    x = torch.empty(4, 3, 5, 5, device=meta)
    for alpha in (torch.full((1,), 0.1, device=meta), torch.full((3,), 0.1, device=meta)):
        assert ops.inject_noise(x, alpha).device.type == "meta"
    with pytest.raises(ValueError, match="alpha must be finite"):  # on the CPU: at once, a ValueError
        ops.noisy_weight(torch.randn(4, 3), torch.tensor([float("nan")]))


# ---- compiled kernels on a GPU: what the interpreter alone vouches for on the CPU ----

@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("offset", [2**32 - 6, 2**33 + 3], ids=["across 2**32", "past 2**33"])
def test_cuda_offsets_past_2_32(backend, granularity, offset):
    """The Philox counter's high word: noise_add and its alpha gradient at offsets past 2**32
    equal the reference (given the same std), bit for bit and to float64 rounding."""
    torch.manual_seed(8)
    x = torch.randn(6, 5, 7, 3)
    alpha = make_alpha(x, granularity).detach().reshape(-1)
    channels, inner, elementwise = {"layer": (1, x.numel(), False), "channel": (6, 105, False),
                                    "element": (x.numel(), 1, True)}[granularity]
    std, g, seed = x.std(), torch.randn(x.shape), seed_tensor(2**40 + 7)
    args = (alpha, std, channels, inner, elementwise, seed, offset)
    with robustkernels.use_backend(backend):
        y = noise_add(x.cuda(), *(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
        ga = noise_alpha_grad(g.cuda(), *(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
    assert torch.equal(y.cpu(), noise_ref.noise_add(x, *args))
    torch.testing.assert_close(ga.cpu(), noise_ref.noise_alpha_grad(g, *args), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_cuda_channels_last_in_place_matches_reference(backend, granularity):
    """channels_last activations on the GPU: read in place, returned channels_last, and given the
    device's std exactly the reference on the NHWC buffer."""
    from robustkernels.ops.noise import tensor_std

    torch.manual_seed(9)
    x = torch.randn(4, 6, 5, 7).contiguous(memory_format=torch.channels_last)
    alpha = make_alpha(x, granularity, channel_dim=1).detach()
    with robustkernels.use_backend(backend):
        y = ops.inject_noise(x.cuda(), alpha.cuda(), generator=seeded())
        std = tensor_std(x.cuda().permute(0, 2, 3, 1)).cpu()
    assert y.is_contiguous(memory_format=torch.channels_last)
    nhwc = x.permute(0, 2, 3, 1)  # the memory, as a contiguous tensor
    channels, inner = (1, x.numel()) if granularity == "layer" else (6, 1)
    expected = noise_ref.noise_add(nhwc, alpha.reshape(-1), std, channels, inner, False, seed_of(), 0)
    assert torch.equal(y.cpu().permute(0, 2, 3, 1), expected)
