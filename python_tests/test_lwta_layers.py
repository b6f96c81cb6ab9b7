"""LWTA and IBP modules, activation conversion, the LWTA WideResNet."""

import math

import pytest
import torch
from scipy import stats
from torch import nn

from robustkernels.models import wide_resnet
from robustkernels.nn import LWTA, IBPConv2d, IBPLinear, convert_activations, elbo_loss, lwta_kl
from robustkernels.nn.ibp import kl_kumaraswamy_beta, kumaraswamy_sample


def test_temperature_follows_train_and_eval():
    layer = LWTA(2, train_temperature=0.67, eval_temperature=0.01)
    h = torch.randn(64, 8, 4, 4)
    assert layer.temperature == 0.67
    soft = layer(h) / h  # relaxed weights
    layer.eval()
    assert layer.temperature == 0.01
    sharp = layer(h) / h
    # at T = 0.01 nearly every block is one-hot; at T = 0.67 far fewer are
    one_hot = lambda w: ((w.view(64, 4, 2, 4, 4) > 0.999).any(dim=2)).float().mean().item()  # noqa: E731
    assert one_hot(sharp) > 0.95 > one_hot(soft)
    assert not torch.equal(layer(h), layer(h))  # still sampling in evaluation


def test_convert_activations_in_place():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Sequential(nn.Linear(4, 6), nn.ReLU()))
    assert convert_activations(model, competitors=2) is model
    assert [type(m).__name__ for m in model.modules()].count("LWTA") == 2
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    with pytest.raises(TypeError):  # LWTA is the only target: no positional choice to make
        convert_activations(model, "lwta")


def test_kl_against_uniform_prior():
    layer = LWTA(2, kl=True)
    h = torch.tensor([[1.0, 1.0, 2.0, 0.0]])
    layer(h)
    q = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    expected = (q * (q.log() + math.log(2))).sum()  # the equal block contributes 0
    torch.testing.assert_close(layer.kl(), expected)
    assert lwta_kl(nn.Sequential(layer)) >= 0
    with pytest.raises(RuntimeError, match="kl=True"):
        LWTA(2).kl()


@pytest.mark.parametrize("depth, width, competitors", [(10, 1, 2), (16, 2, 4), (22, 1, 2)])
def test_lwta_wide_resnet_forward_backward(depth, width, competitors):
    torch.manual_seed(0)
    model = wide_resnet(depth, width, num_classes=5, activation="lwta", competitors=competitors)
    assert sum(isinstance(m, LWTA) for m in model.modules()) == 2 * (depth - 4) // 2 + 1
    x = torch.rand(2, 3, 16, 16)
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 5) and all(p.grad is not None for p in model.parameters())
    model.eval()
    assert model(x).shape == (2, 5)


def test_kumaraswamy_inverse_cdf_is_correct():
    a, b = torch.tensor(2.5), torch.tensor(0.7)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = kumaraswamy_sample(a.double(), b.double(), u).numpy()
    cdf = lambda v: 1 - (1 - v ** 2.5) ** 0.7  # noqa: E731
    assert stats.kstest(x, cdf).pvalue > 1e-3


def test_kl_kumaraswamy_beta_matches_monte_carlo():
    a, b, alpha = torch.tensor(3.0, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64), 5.0
    x = kumaraswamy_sample(a, b, torch.rand(400000, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    x = x.clamp(1e-12, 1 - 1e-12)
    log_q = torch.log(a * b) + (a - 1) * x.log() + (b - 1) * torch.log1p(-x.pow(a))
    log_p = math.log(alpha) + (alpha - 1) * x.log()
    estimate = (log_q - log_p).mean().item()
    assert abs(kl_kumaraswamy_beta(a, b, alpha).item() - estimate) < 0.01
    assert kl_kumaraswamy_beta(torch.tensor(alpha), torch.tensor(1.0), alpha).abs() < 1e-6  # q = p


def test_ibp_layers_train_relaxed_and_evaluate_thresholded():
    torch.manual_seed(2)
    model = nn.Sequential(IBPConv2d(3, 8, 3), LWTA(2, kl=True), nn.Flatten(), IBPLinear(8 * 4 * 4, 10))
    x, y = torch.rand(5, 3, 6, 6), torch.randint(0, 10, (5,))
    loss = elbo_loss(model(x), y, model, dataset_size=1000)
    loss.backward()
    conv = model[0]
    assert conv.raw_a.grad is not None and conv.mask_logits.grad is not None and conv.weight.grad is not None
    kl = sum(m.last_kl for m in (model[0], model[3])) + model[1].kl()
    assert kl > 0 and torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        conv.mask_logits[0] = -20.0  # below the threshold: pruned at test time
    mask = conv.mask()
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask[0].sum() == 0 and mask[1].sum() > 0
    assert torch.equal(model[3](torch.ones(1, 128)), model[3](torch.ones(1, 128)))  # deterministic


def test_elbo_is_cross_entropy_plus_scaled_kl():
    model = nn.Sequential(IBPLinear(4, 3))
    x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    logits = model(x)
    expected = nn.functional.cross_entropy(logits, y) + 0.5 * model[0].last_kl / 100
    torch.testing.assert_close(elbo_loss(logits, y, model, 100, kl_weight=0.5), expected)
    with pytest.raises(ValueError, match="dataset_size"):
        elbo_loss(logits, y, model, 0)


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="competitors must be an int >= 2"):
        LWTA(1)
    with pytest.raises(ValueError, match="eval_temperature"):
        LWTA(2, eval_temperature=0)
    with pytest.raises(ValueError, match="threshold"):
        IBPLinear(2, 2, threshold=1.5)
    with pytest.raises(ValueError, match="competitors must divide the 16 channels"):
        wide_resnet(10, 1, activation="lwta", competitors=3)
