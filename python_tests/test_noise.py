"""Noise injection (PNI): the op against reference/ on every backend, gradients, no saved noise."""

import math

import pytest
import torch

import robustkernels
from robustkernels import ops, reference
from robustkernels.ops.noise import noise_add, noise_alpha_grad

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
    y_ref = reference.noisy_weight(w, alpha, seed_of())
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
    ref_fp32 = reference.noisy_weight(w.float(), alpha, seed)  # same input values, fp32 math and storage
    assert_lowp_close(y, reference.noisy_weight(w, alpha, seed), ref_fp32)


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
    (ga_fp32,) = grads(reference.noisy_weight(w.detach().float(), alpha, seed), (alpha,), g.to(dtype).float())
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
    y_ref = reference.inject_noise(x, alpha, seed_of())
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
            lambda x, a: noise_add(x, a, std, channels, inner, elementwise, 123, 7), (x, alpha)
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
        torch.library.opcheck(noise_add.op, (x, alpha, std, channels, inner, elementwise, 3, 11))
        torch.library.opcheck(noise_alpha_grad.op, (torch.randn(4, 6, dtype=dtype), alpha.detach(), std, channels,
                                                    inner, elementwise, 3, 11))


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
    # only alpha (a parameter, whatever its size) and the 0-dim std: no tensor of noise
    assert sum(t.numel() for t in saved) == alpha.numel() + 1
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


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_cuda_backends_match_reference(backend, dtype, granularity):
    w = torch.randn(64, 32, 3, 3, device="cuda").to(dtype).requires_grad_()
    alpha = make_alpha(w, granularity).detach().cuda().requires_grad_()
    with robustkernels.use_backend(backend):
        y = ops.noisy_weight(w, alpha, generator=seeded())
        (ga,) = torch.autograd.grad(y.float().sum(), alpha)
    seed = seed_of()
    y_ref = reference.noisy_weight(w.detach().cpu().float(), alpha.detach().cpu(), seed)
    assert_lowp_close(y.cpu(), reference.noisy_weight(w.detach().cpu(), alpha.detach().cpu(), seed), y_ref)
    # given the device's std (its last bit is per device, see ops.noise), the kernel is exact
    from robustkernels.ops.noise import _alpha_layout, tensor_std

    std = tensor_std(w.detach())
    channels, inner, elementwise = _alpha_layout(w, alpha.detach(), 0)
    flat = reference.noise.noise_add(w.detach().cpu(), alpha.detach().cpu().float().reshape(-1), std.cpu(), channels,
                                     inner, elementwise, seed, 0)
    assert torch.equal(y.detach().cpu(), flat)
    a_ref = alpha.detach().cpu().requires_grad_()
    (ga_ref,) = torch.autograd.grad(reference.noisy_weight(w.detach().cpu().float(), a_ref, seed).sum(), a_ref)
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
