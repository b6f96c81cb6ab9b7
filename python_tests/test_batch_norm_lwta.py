"""BatchNorm -> LWTA fused: against the unfused pair on every backend, gradients, running
statistics, layouts and dtypes, what it saves, the module and the WideResNet built on it."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import robustkernels
from robustkernels import ops
from robustkernels.bench import baselines
from robustkernels.bench.timing import kept_for_backward_bytes
from robustkernels.models import wide_resnet
from robustkernels.nn import LWTA, BatchNormLWTA, convert_activations, lwta_kl

from .conftest import backend_params
from .helpers import assert_lowp_close


def seeded(seed=3):
    return torch.Generator().manual_seed(seed)


def bn_params(channels, dtype=torch.float32):
    torch.manual_seed(1)
    weight = (torch.rand(channels, dtype=dtype) + 0.5).requires_grad_()
    bias = (torch.randn(channels, dtype=dtype) * 0.1).requires_grad_()
    return weight, bias, torch.randn(channels, dtype=dtype) * 0.1, torch.rand(channels, dtype=dtype) + 0.5


def fused_and_unfused(x, training, temperature=0.5, competitors=2, hard=False):
    """(outputs, gradients wrt x/weight/bias, running stats) of the fused op and of
    lwta(F.batch_norm(...)) with the same seed, on separate copies of everything."""
    results = []
    for fused in (True, False):
        xx = x.detach().clone().requires_grad_()
        weight, bias, running_mean, running_var = bn_params(x.shape[1], x.dtype if x.dtype == torch.float64
                                                            else torch.float32)
        if fused:
            y = ops.batch_norm_lwta(xx, weight, bias, running_mean, running_var, training=training, momentum=0.1,
                                    eps=1e-5, competitors=competitors, temperature=temperature, hard=hard,
                                    generator=seeded())
        else:
            h = F.batch_norm(xx, running_mean, running_var, weight, bias, training, 0.1, 1e-5)
            y = ops.lwta(h, competitors=competitors, temperature=temperature, hard=hard, generator=seeded())
        probe = torch.linspace(-1, 1, y.numel()).view(y.shape)
        (y.float() * probe).sum().backward()
        results.append((y, (xx.grad, weight.grad, bias.grad), (running_mean, running_var)))
    return results


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape, competitors", [((4, 6, 5, 7), 2), ((3, 6, 4, 4), 3), ((5, 8), 2)], ids=str)
def test_matches_unfused_pair(backend, training, shape, competitors):
    torch.manual_seed(0)
    x = torch.randn(shape) * 2 + 0.5
    with robustkernels.use_backend(backend):
        (y, grads, running), (y_ref, grads_ref, running_ref) = fused_and_unfused(x, training, competitors=competitors)
    # h = x * scale + shift vs ATen's batch norm kernel: equal up to fp32 rounding
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, ref in zip(grads + running, grads_ref + running_ref):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", backend_params(("cpp", "triton")))
def test_bit_identical_across_backends(backend):
    torch.manual_seed(2)
    x = torch.randn(3, 8, 5, 5)
    with robustkernels.use_backend(backend):
        (y, grads, _), _ = fused_and_unfused(x, True, hard=True)
    with robustkernels.use_backend("reference"):
        (y_ref, grads_ref, _), _ = fused_and_unfused(x, True, hard=True)
    assert torch.equal(y, y_ref) and all(torch.equal(a, b) for a, b in zip(grads, grads_ref))


@pytest.mark.parametrize("backend", backend_params(("reference", "cpp")))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradcheck_float64(backend, training):
    torch.manual_seed(3)
    x = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    weight, bias, running_mean, running_var = bn_params(4, torch.float64)
    running = (running_mean, running_var) if not training else (None, None)  # no in-place updates per call

    def fn(x, weight, bias):
        return ops.batch_norm_lwta(x, weight, bias, *running, training=training, temperature=0.7,
                                   generator=seeded(5))

    with robustkernels.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (x, weight, bias))


def test_saves_only_the_input_of_batch_norm():
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    weight, bias, running_mean, running_var = bn_params(8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = ops.batch_norm_lwta(x, weight, bias, running_mean, running_var)
    y.sum().backward()
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1 and big[0] is x  # h (LWTA's input) is recomputed, not kept
    assert all(t.numel() <= 8 for t in saved if t is not x)


def test_channels_last_same_values_and_layout():
    torch.manual_seed(4)
    x = torch.randn(2, 6, 5, 3)
    (y, grads, _), _ = fused_and_unfused(x, True)
    (y_cl, grads_cl, _), _ = fused_and_unfused(x.contiguous(memory_format=torch.channels_last), True)
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    # the batch statistics are summed in another order in the other layout
    torch.testing.assert_close(y_cl, y, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, grads_cl):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input(dtype):
    torch.manual_seed(5)
    x32 = torch.randn(4, 8, 4, 4)
    (y, _, _), (y_lowp_ref, _, _) = fused_and_unfused(x32.to(dtype), True)
    (y_fp32, _, _), _ = fused_and_unfused(x32, True)
    assert y.dtype == dtype
    assert_lowp_close(y, y_lowp_ref, y_fp32, factor=3.0)


def test_module_matches_batchnorm_then_lwta_and_keeps_state_dict_keys():
    torch.manual_seed(6)
    fused = BatchNormLWTA(8, competitors=2, momentum=None)  # cumulative running averages
    plain = nn.BatchNorm2d(8, momentum=None)
    plain.load_state_dict(fused.state_dict())
    assert fused.state_dict().keys() == plain.state_dict().keys()
    for step in range(3):
        x = torch.randn(4, 8, 3, 3) + step
        torch.manual_seed(step)
        y = fused(x)
        torch.manual_seed(step)
        y_ref = ops.lwta(plain(x), temperature=0.67)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(fused, name), getattr(plain, name))
    fused.eval(), plain.eval()
    assert fused.lwta.temperature == 0.01
    x = torch.randn(4, 8, 3, 3)
    torch.manual_seed(9)
    y = fused(x)
    torch.manual_seed(9)
    torch.testing.assert_close(y, ops.lwta(plain(x), temperature=0.01), rtol=1e-5, atol=1e-5)


def test_module_runs_unfused_when_tracking_kl_or_on_another_lwta():
    torch.manual_seed(7)
    layer = BatchNormLWTA(4)
    layer.lwta.track_kl = True
    x = torch.randn(3, 4, 2, 2, requires_grad=True)
    layer(x).sum().backward()
    assert lwta_kl(layer) > 0 and x.grad is not None
    model = baselines.with_official_layers(nn.Sequential(BatchNormLWTA(4)))
    assert type(model[0].lwta) is baselines.EagerLWTA
    assert model(x).shape == x.shape


def test_lwta_wide_resnet_keeps_as_many_activations_as_relu():
    torch.manual_seed(8)
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 10, (4,))
    models = {
        "relu": wide_resnet(10, 1),
        "lwta fused": wide_resnet(10, 1, activation="lwta"),
        "lwta unfused": convert_activations(wide_resnet(10, 1)),
    }
    kept = {}
    for name, model in models.items():
        leaves = list(model.parameters()) + [x]
        kept[name] = kept_for_backward_bytes(lambda m=model: F.cross_entropy(m(x), y).backward(), leaves)
    assert kept["lwta fused"] <= 1.02 * kept["relu"]
    assert kept["lwta fused"] < 0.8 * kept["lwta unfused"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(weight=torch.ones(5)), ValueError, r"weight must be a tensor of shape \(6,\)"),
        (dict(running_mean=torch.zeros(6)), ValueError, "both be given"),
        (dict(training=False), ValueError, "training=False needs running_mean"),
        (dict(competitors=4), ValueError, r"competitors=4 must divide h.shape\[1\]=6"),
        (dict(temperature=-1.0), ValueError, "temperature must be a float > 0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.batch_norm_lwta(torch.randn(2, 6, 3, 3), **kwargs)
    with pytest.raises(ValueError, match=r"x must be \[B, C, ...\]"):
        ops.batch_norm_lwta(torch.randn(6))
    with pytest.raises(TypeError, match="x must be float32"):
        ops.batch_norm_lwta(torch.ones(2, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="competitors=4 must divide num_features=6"):
        BatchNormLWTA(6, competitors=4)


def test_module_does_not_mutate_input():
    x = torch.randn(2, 4, 3, 3)
    before = x.clone()
    BatchNormLWTA(4)(x)
    assert torch.equal(x, before) and isinstance(BatchNormLWTA(4).lwta, LWTA)
