"""Input-preprocessing defences: each front-end against a hand-computed or reference result, BPDA,
the honest evaluation through them (naive PGD against BPDA), and feature-squeezing detection."""

import io

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from robustkernels.attacks import PGD
from robustkernels.defences import (
    BPDA,
    BitDepthReduction,
    FeatureSqueezing,
    GaussianNoise,
    JPEGCompression,
    MedianSmoothing,
    Preprocessing,
    with_bpda,
)
from robustkernels.eval import autoattack, evaluate

from .models import trained_digits_cnn


def test_bit_depth_reduction_by_hand():
    x = torch.tensor([0.0, 0.1, 0.2, 0.45, 0.6, 0.9, 1.0]).view(1, 1, 1, 7)
    expected = torch.tensor([0.0, 0.0, 1 / 3, 1 / 3, 2 / 3, 1.0, 1.0]).view(1, 1, 1, 7)  # 2 bits: 4 levels
    torch.testing.assert_close(BitDepthReduction(2)(x), expected)
    assert torch.equal(BitDepthReduction(8)(torch.tensor([[[[3 / 255]]]])), torch.tensor([[[[3 / 255]]]]))
    with pytest.raises(ValueError, match="bits"):
        BitDepthReduction(9)


def test_median_smoothing_by_hand_and_against_scipy():
    x = torch.tensor([[1.0, 9, 2], [8, 3, 7], [4, 6, 5]]).view(1, 1, 3, 3)
    # 3x3 windows with the edge mirrored; the centre's window holds 1..9: median 5
    assert MedianSmoothing(3)(x)[0, 0, 1, 1] == 5
    assert MedianSmoothing(3)(x)[0, 0, 0, 0] == 3  # window {1,1,9,1,1,9,8,8,3}: sorted 5th value 3
    torch.manual_seed(0)
    images = torch.rand(2, 3, 7, 6)
    for k in (1, 2, 3, 4, 5):
        expected = ndimage.median_filter(images.numpy(), size=(1, 1, k, k), mode="reflect")
        torch.testing.assert_close(MedianSmoothing(k)(images), torch.from_numpy(expected), rtol=0, atol=0)


def test_jpeg_matches_the_codec_and_bounds_its_error():
    from PIL import Image

    torch.manual_seed(0)
    smooth = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).contiguous()
    out = JPEGCompression(90)(smooth)
    assert out.shape == smooth.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * 255, (out * 255).round())
    assert (out - smooth).abs().mean() < 0.01 and (out - smooth).abs().max() < 0.06
    image = (smooth[0] * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    direct = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255
    assert torch.equal(out[0], direct)
    low = JPEGCompression(10)(smooth)
    assert (low - smooth).abs().mean() > (out - smooth).abs().mean()  # lower quality, larger error
    gray = JPEGCompression(75)(torch.rand(3, 1, 8, 8, requires_grad=True))
    assert gray.shape == (3, 1, 8, 8) and not gray.requires_grad  # no gradient through the codec


def test_gaussian_noise_statistics():
    torch.manual_seed(0)
    x = torch.full((4, 3, 32, 32), 0.5)
    noise = GaussianNoise(0.05)(x) - x
    assert abs(float(noise.mean())) < 3 * 0.05 / noise.numel() ** 0.5
    assert float(noise.std()) == pytest.approx(0.05, rel=0.02)
    assert not torch.equal(GaussianNoise(0.05)(x), GaussianNoise(0.05)(x))


def test_bpda_is_the_identity_backward_and_the_exact_forward():
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    front = BitDepthReduction(3)
    out = BPDA(front)(x)
    assert torch.equal(out, front(x))
    (out * torch.arange(64.0).view(1, 1, 8, 8)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(64.0).view(1, 1, 8, 8).expand(2, 1, 8, 8))
    model = nn.Sequential(BitDepthReduction(3), nn.Flatten(), nn.Linear(64, 3))
    wrapped, names = with_bpda(model)
    assert names == ["BitDepthReduction"] and isinstance(model[0], BitDepthReduction)  # the caller's model kept
    assert wrapped[2] is model[2] and torch.equal(wrapped(x), model(x))


@pytest.fixture(scope="module")
def digits_model():
    return trained_digits_cnn()


@pytest.mark.parametrize("front", [BitDepthReduction(2), JPEGCompression(60)], ids=["bit-depth", "jpeg"])
def test_a_quantising_defence_looks_robust_to_naive_pgd_and_falls_under_bpda(front, digits_model):
    model, x, y = digits_model
    defended = nn.Sequential(front, model).eval()
    x, y = x[:150], y[:150]
    eps = 0.15
    naive = evaluate(defended, (x, y), eps=eps, attacks=("pgd",), bpda=False, checks=False, progress=False)
    honest = evaluate(defended, (x, y), eps=eps, attacks=("pgd",), check_samples=100, progress=False)
    naive_acc = naive.attacks["pgd"].robust_accuracy.mean
    bpda_acc = honest.attacks["pgd"].robust_accuracy.mean
    assert honest.gradients.startswith("BPDA") and type(front).__name__ in honest.gradients
    assert naive.gradients == "the model's own"
    assert naive_acc > bpda_acc + 0.25, (naive_acc, bpda_acc)
    gap = next(c for c in honest.checks if c.name == "naive vs BPDA")
    assert gap.status == "pass" and "through BPDA" in gap.detail
    aa = autoattack(defended, (x[:60], y[:60]), eps=eps, steps=20, n_queries=100, progress=False)
    assert aa.gradients.startswith("BPDA") and aa.robust_accuracy.mean <= bpda_acc + 0.1


class _Reversed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -grad


class MisleadingFrontEnd(Preprocessing):
    """The identity whose gradient points the wrong way: not zero, so only the checks see it."""

    differentiable = False

    def transform(self, x):
        return _Reversed.apply(x)


def test_failing_masking_checks_send_the_evaluation_through_bpda(digits_model):
    model, x, y = digits_model
    defended = nn.Sequential(MisleadingFrontEnd(), model).eval()
    x, y = x[:120], y[:120]
    naive = evaluate(defended, (x, y), eps=0.1, attacks=("fgsm", "pgd"), bpda=False, check_samples=60,
                     progress=False, generator=torch.Generator().manual_seed(0))
    assert any(c.status == "warn" for c in naive.checks)  # the checks see the masking
    report = evaluate(defended, (x, y), eps=0.1, attacks=("fgsm", "pgd"), check_samples=60, progress=False,
                      generator=torch.Generator().manual_seed(0))
    assert report.gradients.startswith("BPDA") and "failed the masking checks" in report.gradients
    assert report.attacks["pgd"].robust_accuracy.mean < naive.attacks["pgd"].robust_accuracy.mean - 0.3


def test_feature_squeezing_rejects_about_the_chosen_share_of_clean_inputs(shared_data):
    """On MNIST (the squeezers of the paper: 1-bit depth and a 2x2 median), a calibrated detector
    rejects ~5% of unseen clean images and most PGD examples."""
    from robustkernels.data import load_mnist
    from robustkernels.models import build_model
    from robustkernels.train import fit, make_method

    (x, y), (x_test, y_test) = (load_mnist(shared_data / "mnist", train=t) for t in (True, False))
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=28)
    fit(model, make_method("standard"), (x[:6000], y[:6000]), epochs=2, batch_size=64, lr=1e-3, optimizer="adam",
        progress=False)
    model.eval()
    order = torch.randperm(len(y_test), generator=torch.Generator().manual_seed(1))[:1600]
    calibration, held_out = order[:800], order[800:]
    detector = FeatureSqueezing(model, squeezers=[BitDepthReduction(1), MedianSmoothing(2)], fpr=0.05)
    detector.calibrate(x_test[calibration])
    clean = detector.evaluate(x_test[held_out], y_test[held_out])
    assert abs(clean.detection_rate - 0.05) <= 3 * (0.05 * 0.95 / len(held_out)) ** 0.5 + 0.01, clean
    x_adv = PGD(model, eps=0.3, alpha=0.03, steps=20)(x_test[held_out], y_test[held_out])
    attacked = detector.evaluate(x_adv, y_test[held_out])
    assert attacked.detection_rate > clean.detection_rate + 0.3, (attacked, clean)
    assert attacked.accepted == int((~detector.reject(x_adv)).sum())
    with pytest.raises(ValueError, match="calibrate"):
        FeatureSqueezing(model).reject(x_test[:4])


def test_transfer_examples_come_from_the_surrogate(digits_model):
    import copy

    model, x, y = digits_model
    x, y = x[:120], y[:120]
    twin = copy.deepcopy(model)  # white-box knowledge in another module: transfers like PGD itself
    blind = copy.deepcopy(model)
    for p in blind.parameters():
        p.data.zero_()  # zero gradients: its "adversarial" examples are the random start only
    options = dict(eps=0.15, attacks=("pgd",), check_samples=60, progress=False,
                   generator=torch.Generator().manual_seed(0))
    from_twin = evaluate(model, (x, y), surrogate=twin, **options)
    from_blind = evaluate(model, (x, y), surrogate=blind, **options)
    twin_acc = from_twin.attacks["transfer"].robust_accuracy.mean
    blind_acc = from_blind.attacks["transfer"].robust_accuracy.mean
    assert twin_acc <= from_twin.attacks["pgd"].robust_accuracy.mean + 0.05
    assert blind_acc > twin_acc + 0.3
    assert all(not p.any() for p in blind.parameters())  # the surrogate was only attacked, not changed
    check = next(c for c in from_twin.checks if c.name == "transfer not stronger")
    assert check.status == "pass"
    assert from_twin.worst_case.mean <= min(r.robust_accuracy.mean for r in from_twin.attacks.values())
    with pytest.raises(ValueError, match="surrogate must be another model"):
        evaluate(model, (x, y), surrogate=model, **options)
