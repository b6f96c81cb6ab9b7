"""Natural corruptions at the CIFAR-10-C severities: each against its definition, in bounds,
stronger with severity; and the accuracy table."""

import pytest
import torch

from robustkernels.defences import JPEGCompression
from robustkernels.eval.corruptions import (
    CORRUPTIONS,
    PARAMETERS,
    corrupt,
    corruption_accuracy,
    disk_kernel,
    motion_kernel,
)

from .models import trained_digits_cnn


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(8, 3, 36, 36), 5, stride=1)  # [8, 3, 32, 32]
    return (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 0.6 + 0.2  # in [0.2, 0.8]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_stays_in_bounds_and_grows_with_severity(name, images):
    errors = []
    for severity in range(1, 6):
        out = corrupt(images, name, severity, torch.Generator().manual_seed(severity))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert out.min() >= 0 and out.max() <= 1
        errors.append(float((out - images).abs().mean()))
    assert errors[0] > 0
    if name != "motion_blur":  # a random angle per call
        assert all(b >= a * 0.95 for a, b in zip(errors, errors[1:])), errors


def test_noises_have_their_stated_statistics():
    x = torch.full((4, 3, 64, 64), 0.5)
    g = torch.Generator().manual_seed(0)
    for severity, sigma in enumerate(PARAMETERS["gaussian_noise"], 1):
        assert float((corrupt(x, "gaussian_noise", severity, g) - x).std()) == pytest.approx(sigma, rel=0.03)
    for severity, photons in enumerate(PARAMETERS["shot_noise"], 1):
        out = corrupt(x, "shot_noise", severity, g)
        assert float(out.mean()) == pytest.approx(0.5, abs=0.01)
        assert float(out.var()) == pytest.approx(0.5 / photons, rel=0.08)  # Poisson(x c) / c
    for severity, amount in enumerate(PARAMETERS["impulse_noise"], 1):
        out = corrupt(x, "impulse_noise", severity, g)
        changed = out != x
        assert float(changed.float().mean()) == pytest.approx(amount, rel=0.15)
        assert set(out[changed].unique().tolist()) <= {0.0, 1.0}


def test_blurs_contrast_brightness_jpeg_and_pixelate_follow_their_definitions(images):
    flat = torch.full((1, 3, 32, 32), 0.3)
    for name in ("defocus_blur", "motion_blur"):
        torch.testing.assert_close(corrupt(flat, name, 3, torch.Generator()), flat)  # blurs keep constants
    assert float(disk_kernel(1.5, 0.1).sum()) == pytest.approx(1.0)
    line = motion_kernel(4, 2.0, 0.0)
    assert line[4, 4:].sum() == pytest.approx(1.0) and line[4, 4] == line.max()  # one-sided, heaviest at centre
    out = corrupt(images, "contrast", 5)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, (images - mean) * 0.15 + mean)
    bright = corrupt(images, "brightness", 2)
    v, v_new = images.amax(1), bright.amax(1)
    torch.testing.assert_close(v_new, (v + 0.1).clamp(max=1))
    torch.testing.assert_close(bright / v_new[:, None], images / v[:, None])  # hue and saturation kept
    assert torch.equal(corrupt(images, "jpeg_compression", 4), JPEGCompression(50)(images))
    pix = corrupt(images, "pixelate", 5)  # 32 -> 20 -> 32: fewer distinct values per image
    assert pix[0].unique().numel() < images[0].unique().numel()


def test_bad_corruption_arguments_are_named(images):
    with pytest.raises(ValueError, match="corruption must be one of"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "contrast", 6)


def test_corruption_accuracy_table_on_a_trained_model():
    model, x, y = trained_digits_cnn()
    state = torch.get_rng_state()
    report = corruption_accuracy(model, (x[:200], y[:200]), corruptions=("gaussian_noise", "contrast", "pixelate"),
                                 severities=(1, 3, 5))
    assert torch.equal(torch.get_rng_state(), state)
    assert report.clean_accuracy > 0.9
    assert set(report.accuracy) == {"gaussian_noise", "contrast", "pixelate"}
    assert all(len(a) == 3 and a[0] >= a[-1] for a in report.accuracy.values())
    assert report.mean_accuracy < report.clean_accuracy
    assert "| contrast |" in report.to_markdown()


def test_corruption_accuracy_streams_and_honours_normalization():
    """A model behind a normalisation, given ``normalization=``, scores what the plain model
    scores on the same data; a DataLoader gives what the tensors give."""
    model, x, y = trained_digits_cnn()
    x, y = x[:64], y[:64]
    mean, std = (0.3,), (0.2,)

    class Denormalising(torch.nn.Module):  # expects (x - mean) / std, undoes it for the trained net
        def forward(self, v):
            return model(v * std[0] + mean[0])

    names = ("contrast", "gaussian_noise")
    plain = corruption_accuracy(model, (x, y), corruptions=names, severities=(1, 5), batch_size=16)
    wrapped = corruption_accuracy(Denormalising(), (x, y), corruptions=names, severities=(1, 5), batch_size=16,
                                  normalization=(mean, std))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    streamed = corruption_accuracy(model, loader, corruptions=names, severities=(1, 5), batch_size=16)
    assert wrapped.clean_accuracy == plain.clean_accuracy == streamed.clean_accuracy
    for name in names:
        assert wrapped.accuracy[name] == pytest.approx(plain.accuracy[name], abs=1 / 64)
        assert streamed.accuracy[name] == plain.accuracy[name]
