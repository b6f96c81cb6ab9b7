"""Interval bound propagation through our layers (residual blocks included), certified accuracy
against the empirical robust accuracy, and IBP training."""

import pytest
import torch

from robustkernels.attacks import PGD
from robustkernels.data import load_digits
from robustkernels.eval import autoattack, certified_accuracy
from robustkernels.models import build_model, wide_resnet
from robustkernels.nn.bounds import interval_bounds, margin_lower_bounds
from robustkernels.train import fit, make_method

from .models import trained_digits_cnn


def _sound(model, x, y, eps, points=1000):
    """1,000 random points of the clipped eps-box per sample stay within the bounds."""
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    with torch.no_grad():
        lo, hi = interval_bounds(model, lower, upper)
        margins = margin_lower_bounds(model, lower, upper, y)
        for i in range(len(x)):
            u = torch.rand(points, *x.shape[1:])
            z = model(lower[i] + u * (upper[i] - lower[i]))
            assert (z >= lo[i] - 1e-4).all() and (z <= hi[i] + 1e-4).all()
            assert (z[:, y[i], None] - z >= margins[i] - 1e-4).all()


def test_bounds_are_sound_for_a_cnn_and_a_residual_network():
    torch.manual_seed(0)
    model, x, y = trained_digits_cnn()
    _sound(model, x[:5], y[:5], 0.05)
    resnet = wide_resnet(10, 1, num_classes=10, in_channels=1).eval()
    for m in resnet.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    _sound(resnet, x[:3], y[:3], 0.02, points=300)


def test_margin_bounds_are_at_least_as_tight_as_subtracting_logit_bounds():
    model, x, y = trained_digits_cnn()
    lower, upper = (x[:20] - 0.03).clamp(0, 1), (x[:20] + 0.03).clamp(0, 1)
    lo, hi = interval_bounds(model, lower, upper)
    naive = lo.gather(1, y[:20, None]) - hi
    folded = margin_lower_bounds(model, lower, upper, y[:20])
    assert (folded >= naive - 1e-5).all() and (folded > naive + 1e-3).any()


def test_certified_accuracy_is_below_the_empirical_robust_accuracy():
    model, x, y = trained_digits_cnn()
    x, y = x[:150], y[:150]
    for eps in (0.005, 0.02):
        cert = certified_accuracy(model, (x, y), eps)
        pgd = PGD(model, eps=eps, alpha=eps / 4, steps=20)(x, y)
        with torch.no_grad():
            robust = float((model(pgd).argmax(1) == y).float().mean())
        report = autoattack(model, (x, y), eps=eps, steps=20, n_queries=200, progress=False)
        aa = report.robust_accuracy.mean
        assert cert.certified_accuracy <= aa + 1e-9 <= robust + 1e-9 <= cert.clean_accuracy + 1e-9
        assert all(r for r, c in zip(report.robust, cert.certified) if c)  # no certified point falls
    assert certified_accuracy(model, (x, y), 0.005).certified_accuracy > 0.3  # a tiny eps certifies most


def test_ibp_training_certifies_more_than_standard_training():
    x, y, x_test, y_test = load_digits()
    certified = {}
    for name in ("standard", "ibp"):
        torch.manual_seed(0)
        model = build_model("cnn", in_channels=1, image_size=8)
        history = fit(model, make_method(name, eps=0.05), (x, y), epochs=6, batch_size=64, lr=3e-3,
                      optimizer="adam", progress=False)
        certified[name] = certified_accuracy(model, (x_test, y_test), 0.05).certified_accuracy
    assert history[-1]["eps"] == pytest.approx(0.05) and history[-1]["kappa"] == pytest.approx(0.5)
    assert certified["ibp"] > certified["standard"] + 0.2, certified


def test_stochastic_layers_are_refused():
    with pytest.raises(TypeError, match="stochastic"):
        certified_accuracy(build_model("cnn", in_channels=1, image_size=8, pni=True).eval(),
                           (torch.rand(2, 1, 8, 8), torch.tensor([0, 1])), 0.01)
    with pytest.raises(TypeError, match="stochastic"):
        certified_accuracy(build_model("cnn", activation="lwta", in_channels=1, image_size=8).eval(),
                           (torch.rand(2, 1, 8, 8), torch.tensor([0, 1])), 0.01)
