"""Interval bound propagation and CROWN-IBP through our layers (residual blocks included), against
auto_LiRPA where it is installed; certified accuracy against the empirical robust accuracy; IBP
and CROWN-IBP training."""

import pytest
import torch
from torch import nn

from robustkernels.attacks import PGD
from robustkernels.certify import NotBoundable, crown_ibp_margins, interval_bounds, margin_bounds, margin_lower_bounds
from robustkernels.data import load_digits
from robustkernels.eval import autoattack, certified_accuracy, evaluate
from robustkernels.models import build_model, lenet5, wide_resnet
from robustkernels.train import fit, make_method

from .models import trained_digits_cnn


def _sound(model, x, y, eps, points=1000):
    """1,000 random points of the clipped eps-box per sample (and its corners' signs) stay
    within the IBP and CROWN-IBP bounds."""
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    with torch.no_grad():
        lo, hi = interval_bounds(model, lower, upper)
        margins = {"ibp": margin_lower_bounds(model, lower, upper, y),
                   "crown-ibp": crown_ibp_margins(model, lower, upper, y)}
        for i in range(len(x)):
            u = torch.rand(points, *x.shape[1:])
            u[: points // 2] = u[: points // 2].round()  # vertices of the box
            z = model(lower[i] + u * (upper[i] - lower[i]))
            assert (z >= lo[i] - 1e-4).all() and (z <= hi[i] + 1e-4).all()
            for bound in margins.values():
                assert (z[:, y[i], None] - z >= bound[i] - 1e-4).all()


def _resnet(in_channels=1):
    resnet = wide_resnet(10, 1, num_classes=10, in_channels=in_channels).eval()
    for m in resnet.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return resnet


def test_bounds_are_sound_for_a_cnn_a_max_pooling_net_and_a_residual_network():
    torch.manual_seed(0)
    model, x, y = trained_digits_cnn()
    _sound(model, x[:5], y[:5], 0.05)
    _sound(lenet5(1, 10, 16).eval(), torch.rand(3, 1, 16, 16), y[:3], 0.02, points=300)
    _sound(_resnet(), x[:3], y[:3], 0.02, points=300)


def test_crown_ibp_is_tighter_than_ibp_on_a_normally_trained_network():
    model, x, y = trained_digits_cnn()
    lower, upper = (x[:50] - 0.02).clamp(0, 1), (x[:50] + 0.02).clamp(0, 1)
    with torch.no_grad():
        ibp, crown = margin_lower_bounds(model, lower, upper, y[:50]), crown_ibp_margins(model, lower, upper, y[:50])
        best = margin_bounds(model, lower, upper, y[:50])
    others = torch.ones_like(ibp, dtype=torch.bool).scatter_(1, y[:50, None], False)
    assert (crown[others] > ibp[others]).float().mean() > 0.9
    assert torch.equal(best, torch.maximum(ibp, crown))
    assert (crown.gather(1, y[:50, None]) == 0).all()


def test_crown_ibp_margins_are_differentiable_in_the_weights():
    """CROWN-IBP training backpropagates through the transposed layers: gradcheck in float64."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.ReLU(),
                                torch.nn.Linear(5, 3)).double()
    x, y = torch.rand(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    original = model[1].weight

    def margins(w):
        del model[1].weight
        model[1].weight = w
        try:
            return crown_ibp_margins(model, x - 0.05, x + 0.05, y)
        finally:
            model[1].weight = original

    assert torch.autograd.gradcheck(margins, (original.detach().clone().requires_grad_(),))


@pytest.mark.parametrize("name", ["cnn", "lenet5", "wrn-10-1"])
def test_bounds_against_auto_lirpa(name):
    """Never looser than auto_LiRPA's IBP bounds; CROWN-IBP equal to its CROWN-IBP (through max
    pooling, where our relaxation is simpler, within 1% of the bounds' scale)."""
    auto_lirpa = pytest.importorskip("auto_LiRPA", reason="auto_LiRPA (test-only) is not installed")
    from auto_LiRPA.perturbations import PerturbationLpNorm

    torch.manual_seed(0)
    model, size = {"cnn": (build_model("cnn", in_channels=1, image_size=8).eval(), 8),
                   "lenet5": (lenet5(1, 10, 16).eval(), 16), "wrn-10-1": (_resnet(3), 16)}[name]
    channels = 3 if name.startswith("wrn") else 1
    x, y, eps = torch.rand(4, channels, size, size), torch.tensor([0, 3, 5, 9]), 0.01
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    spec = torch.eye(10)[y][:, None, :] - torch.eye(10)[None, :, :]
    bounded = auto_lirpa.BoundedModule(model, torch.empty_like(x), device="cpu")
    xb = auto_lirpa.BoundedTensor(x, PerturbationLpNorm(norm=float("inf"), eps=eps, x_L=lower, x_U=upper))
    with torch.no_grad():
        theirs_lo, theirs_hi = bounded.compute_bounds(x=(xb,), method="IBP")
        theirs_ibp = bounded.compute_bounds(x=(xb,), method="IBP", C=spec)[0]
        theirs_crown = bounded.compute_bounds(x=(xb,), method="CROWN-IBP", C=spec)[0]
        lo, hi = interval_bounds(model, lower, upper)
        ibp, crown = margin_lower_bounds(model, lower, upper, y), margin_bounds(model, lower, upper, y)
    tol = 1e-4 * max(1.0, float(theirs_hi.abs().max()))
    assert (lo >= theirs_lo - tol).all() and (hi <= theirs_hi + tol).all()
    assert (ibp >= theirs_ibp - tol).all() and (crown >= theirs_ibp - tol).all()
    ours_crown = crown_ibp_margins(model, lower, upper, y)
    if name != "lenet5":
        assert torch.allclose(ours_crown, theirs_crown, atol=tol, rtol=0)
    else:  # max pooling: our relaxation is simpler than auto_LiRPA's, within 1% of its scale
        assert (ours_crown >= theirs_crown - 0.01 * float(theirs_crown.abs().max())).all()


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


def test_ibp_and_crown_ibp_training_certify_more_than_standard_training():
    x, y, x_test, y_test = load_digits()
    certified = {}
    for name, kwargs in (("standard", {}), ("ibp", {}), ("ibp", {"bound": "crown-ibp"})):
        torch.manual_seed(0)
        model = build_model("cnn", in_channels=1, image_size=8)
        history = fit(model, make_method(name, eps=0.05, **kwargs), (x, y), epochs=6, batch_size=64, lr=3e-3,
                      optimizer="adam", progress=False)
        certified[kwargs.get("bound", name)] = certified_accuracy(model, (x_test, y_test), 0.05).certified_accuracy
        if name == "ibp":
            assert history[-1]["eps"] == pytest.approx(0.05) and history[-1]["kappa"] == pytest.approx(0.5)
            betas = [h["beta"] for h in history]  # CROWN-IBP: 1 -> 0 over the ramp (3 of 6 epochs)
            assert betas[-1] == 0.0 and (not kwargs or 0.5 < betas[0] < 1 and betas == sorted(betas, reverse=True))
    assert certified["ibp"] > certified["standard"] + 0.2, certified
    assert certified["crown-ibp"] > certified["standard"] + 0.2, certified


def test_evaluate_reports_certified_beside_empirical():
    model, x, y = trained_digits_cnn()
    report = evaluate(model, (x[:100], y[:100]), eps=0.01, attacks=("pgd",), certify="crown-ibp", checks=False,
                      progress=False, generator=torch.Generator().manual_seed(0))
    assert report.certified["method"] == "crown-ibp"
    assert 0.3 < report.certified["accuracy"] <= report.worst_case.mean
    check = [c for c in report.checks if c.name == "certified <= empirical"][0]
    assert check.status == "pass" and "0 certified samples fooled" in check.detail
    assert "Certified** (CROWN-IBP" in report.to_markdown()
    with pytest.raises(ValueError, match="certify"):
        evaluate(model, (x[:10], y[:10]), eps=0.1, norm="l2", certify="ibp", progress=False)
    with pytest.raises(ValueError, match="method"):
        certified_accuracy(model, (x[:10], y[:10]), 0.01, method="crown")
    with pytest.raises(ValueError, match="deterministic"):
        evaluate(build_model("cnn", in_channels=1, image_size=8, pni=True).eval(), (x[:10], y[:10]), eps=0.01,
                 certify="ibp", progress=False)


def test_stochastic_layers_are_refused():
    with pytest.raises(TypeError, match="stochastic"):
        certified_accuracy(build_model("cnn", in_channels=1, image_size=8, pni=True).eval(),
                           (torch.rand(2, 1, 8, 8), torch.tensor([0, 1])), 0.01)
    with pytest.raises(TypeError, match="stochastic"):
        certified_accuracy(build_model("cnn", activation="lwta", in_channels=1, image_size=8).eval(),
                           (torch.rand(2, 1, 8, 8), torch.tensor([0, 1])), 0.01)


def test_certified_accuracy_works_inside_no_grad_and_inference_mode():
    """The same report (and CROWN-IBP bounds) inside either mode, data made there included; the
    model's flags come back."""
    model, x, y = trained_digits_cnn()
    x, y = x[:40], y[:40]
    expected = certified_accuracy(model, (x, y), 0.01)
    lower, upper = (x - 0.01).clamp(0, 1), (x + 0.01).clamp(0, 1)
    bounds = margin_bounds(model, lower, upper, y).detach()
    flags = [p.requires_grad for p in model.parameters()]
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            assert certified_accuracy(model, (x.clone(), y.clone()), 0.01) == expected
            assert torch.equal(margin_bounds(model, lower.clone(), upper.clone(), y.clone()), bounds)
            assert torch.equal(crown_ibp_margins(model, lower, upper, y), crown_ibp_margins(model, lower, upper, y))
    assert [p.requires_grad for p in model.parameters()] == flags


def test_bounds_ignore_autocast():
    """Half-precision rounding would make the bounds unsound: autocast is off inside."""
    model, x, y = trained_digits_cnn()
    x, y = x[:40], y[:40]
    lower, upper = (x - 0.01).clamp(0, 1), (x + 0.01).clamp(0, 1)
    expected = margin_bounds(model, lower, upper, y).detach(), certified_accuracy(model, (x, y), 0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(margin_bounds(model, lower, upper, y).detach(), expected[0])
        assert certified_accuracy(model, (x, y), 0.01) == expected[1]


def test_a_certified_report_prints_as_a_one_line_summary():
    from robustkernels.certify import CertifiedReport

    report = CertifiedReport(0.01, 3, 2 / 3, 1 / 3, [True, False, False], "ibp")
    assert str(report) == repr(report) == ("CertifiedReport(method='ibp', eps=0.01, n_samples=3, clean=66.67%, "
                                           "certified=33.33%)")
    assert report.certified == [True, False, False]


def test_a_method_replaced_on_the_class_or_in_torch_is_refused(monkeypatch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    y = model(x).argmax(1)
    assert certified_accuracy(model, (x, y), 0.01).n_samples == 4
    with monkeypatch.context() as patch:
        patch.setattr(nn.ReLU, "forward", lambda self, h: h.abs() * 3 - 1)  # as a patching library would
        with pytest.raises(NotBoundable, match=r"2 \(ReLU\): ReLU.forward is not torch's or ours"):
            certified_accuracy(model, (x, y), 0.01)
    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, "relu", lambda h, inplace=False: h.abs())
        with pytest.raises(NotBoundable, match="torch.nn.functional.relu is replaced"):
            certified_accuracy(model, (x, y), 0.01)
    assert certified_accuracy(model, (x, y), 0.01).n_samples == 4


def test_every_layer_the_refusal_lists_is_bounded():
    """``SUPPORTED`` (what a refusal lists) is built from the table the bound code dispatches on:
    each layer it names is accepted, and a refusal names them all."""
    from torch import nn

    from robustkernels.certify.graph import LAYERS, SUPPORTED, steps_of
    from robustkernels.models import build_model
    from robustkernels.models.preact import preact_resnet18
    from robustkernels.nn import IBPConv2d, IBPLinear

    wrn, resnet = build_model("wrn-10-1", in_channels=1, image_size=8), preact_resnet18()
    built = {nn.Linear: nn.Linear(2, 2), nn.Conv2d: nn.Conv2d(1, 1, 3), nn.BatchNorm1d: nn.BatchNorm1d(2),
             nn.BatchNorm2d: nn.BatchNorm2d(2), nn.MaxPool2d: nn.MaxPool2d(2), nn.AvgPool2d: nn.AvgPool2d(2),
             nn.AdaptiveMaxPool2d: nn.AdaptiveMaxPool2d(1), nn.AdaptiveAvgPool2d: nn.AdaptiveAvgPool2d(1),
             IBPLinear: IBPLinear(2, 2), IBPConv2d: IBPConv2d(1, 1, 3), type(wrn): wrn, type(resnet): resnet,
             type(wrn.blocks[0]): wrn.blocks[0]}
    for layer in LAYERS:
        module = built[layer] if layer in built else layer()
        assert isinstance(steps_of(module.eval()), list), layer  # bounded, not refused
    assert all(name in SUPPORTED for name in LAYERS.values())
