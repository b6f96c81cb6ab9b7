"""TRADES loss and the interval-bound sensitivity."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from robustkernels.train import interval_bounds, sensitivity, trades_loss


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1),
                          nn.Linear(24, 5))
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(-1.5, 1.5)
    return model.eval()


def test_interval_bounds_are_sound():
    model, x, eps = small_model(), torch.rand(3, 1, 8, 8), 0.05
    lower, upper = interval_bounds(model, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1))
    assert (lower <= upper).all()
    for _ in range(200):  # random points of the ball stay inside the bounds
        point = (x + eps * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
        out = model(point)
        assert (out >= lower - 1e-5).all() and (out <= upper + 1e-5).all()


def test_sensitivity_grows_with_eps_and_is_differentiable():
    model, x = small_model(), torch.rand(4, 1, 8, 8)
    values = [sensitivity(model, x, eps).item() for eps in (0.01, 0.03, 0.1)]
    assert values[0] < values[1] < values[2]
    loss = sensitivity(model, x, 0.05)
    loss.backward()
    assert model[0].weight.grad is not None and torch.isfinite(model[0].weight.grad).all()


def test_sensitivity_rejects_what_it_cannot_bound():
    with pytest.raises(TypeError, match=r"^1 \(GELU\): forward is not a known layer"):
        sensitivity(nn.Sequential(nn.Linear(4, 4), nn.GELU()), torch.rand(2, 4), 0.1)
    with pytest.raises(ValueError, match=r"^1 \(BatchNorm2d\): BatchNorm in training mode"):
        sensitivity(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train(), torch.rand(2, 1, 5, 5), 0.1)
    with pytest.raises(ValueError, match="eps must be a float > 0"):
        sensitivity(small_model(), torch.rand(2, 1, 8, 8), 0.0)


def test_trades_loss():
    torch.manual_seed(1)
    logits, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    torch.testing.assert_close(trades_loss(logits, logits, y, beta=6.0), F.cross_entropy(logits, y))  # KL = 0
    adv = logits + torch.randn(6, 5)
    p, log_q = logits.softmax(1), adv.log_softmax(1)
    kl = (p * (p.log() - log_q)).sum(1).mean()
    torch.testing.assert_close(trades_loss(logits, adv, y, beta=2.0), F.cross_entropy(logits, y) + 2.0 * kl)
    with pytest.raises(ValueError, match="beta"):
        trades_loss(logits, adv, y, beta=-1.0)
