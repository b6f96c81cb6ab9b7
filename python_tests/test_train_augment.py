"""Training augmentations: each one's definition and statistics, and fit combining them with methods."""

import pytest
import torch
from torch.nn import functional as F

from robustkernels.data import load_digits
from robustkernels.models import build_model
from robustkernels.train import fit, make_method
from robustkernels.train.augment import CutMix, GaussianNoiseAugment, LabelSmoothing, Mixup, make_augmentation


def _batch(n=64, k=10):
    torch.manual_seed(0)
    x, y = torch.rand(n, 3, 8, 8), torch.randint(0, k, (n,))
    return x, y, F.one_hot(y, k).float()


def test_label_smoothing_moves_the_stated_mass():
    x, y, t = _batch()
    x2, y2, soft = LabelSmoothing(0.1)(x, y, t, torch.Generator())
    assert x2 is x and torch.equal(y2, y)
    torch.testing.assert_close(soft.sum(1), torch.ones(len(y)))
    torch.testing.assert_close(soft.gather(1, y[:, None]).squeeze(1), torch.full((len(y),), 0.9 + 0.01))
    assert torch.allclose(soft[t == 0], torch.tensor(0.01))


def test_mixup_is_a_convex_combination_of_inputs_and_targets():
    x, y, t = _batch()
    g = torch.Generator().manual_seed(4)
    mixed, y2, soft = Mixup(1.0)(x, y, t, g)
    g = torch.Generator().manual_seed(4)
    perm = torch.randperm(len(x), generator=g)
    # recover lambda from one sample whose pair has another label, then check every sample
    i = next(j for j in range(len(y)) if y[perm[j]] != y[j])
    lam = float(soft[i, y[i]])
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(soft, lam * t + (1 - lam) * t[perm])
    assert torch.equal(y2, y if lam >= 0.5 else y[perm])
    pair, labels = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)]), torch.tensor([0, 1])
    lams = []
    for seed in range(600):  # a batch of two: when the permutation swaps them, lambda = soft[0, 0]
        mixed, _, soft = Mixup(1.0)(pair, labels, F.one_hot(labels, 2).float(), torch.Generator().manual_seed(seed))
        if mixed[0].max() > 0:
            torch.testing.assert_close(mixed[0], torch.full((3, 8, 8), 1 - float(soft[0, 0])))
            lams.append(float(soft[0, 0]))
    lams = torch.tensor(lams)  # Beta(1, 1) = uniform on [0, 1]: mean 1/2, variance 1/12
    assert len(lams) > 200 and abs(float(lams.mean()) - 0.5) < 0.05 and abs(float(lams.var()) - 1 / 12) < 0.015


def test_cutmix_pastes_a_box_and_mixes_targets_by_its_area():
    x, y, t = _batch()
    out, _, soft = CutMix(1.0)(x, y, t, torch.Generator().manual_seed(1))
    changed = (out != x).any(dim=1)  # [B, H, W]
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(len(x), generator=g)
    i = next(j for j in range(len(y)) if y[perm[j]] != y[j])
    area = float(changed[i].float().mean())
    assert soft[i, y[perm[i]]] == pytest.approx(area, abs=1e-6)
    assert soft[i, y[i]] == pytest.approx(1 - area, abs=1e-6)


def test_gaussian_noise_augmentation_statistics():
    x = torch.full((32, 3, 16, 16), 0.5)
    out, _, _ = GaussianNoiseAugment(0.05)(x, torch.zeros(32, dtype=torch.long), None, torch.Generator())
    assert float((out - x).std()) == pytest.approx(0.05, rel=0.03) and abs(float((out - x).mean())) < 0.002


@pytest.mark.parametrize("method, augmentations", [("standard", ["label_smoothing:0.2", "mixup"]),
                                                   ("pgd_at", ["cutmix", "gaussian_noise:0.05"]),
                                                   ("trades", ["label_smoothing"]), ("n_fgsm", ["mixup:0.4"])])
def test_fit_combines_augmentations_with_methods(method, augmentations):
    x, y, x_test, y_test = load_digits()
    torch.manual_seed(0)
    model = build_model("cnn", in_channels=1, image_size=8)
    history = fit(model, make_method(method, eps=0.1, steps=2), (x, y), augmentations=augmentations,
                  epochs=4, batch_size=64, lr=3e-3, optimizer="adam", progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    with torch.no_grad():
        assert (model(x_test).argmax(1) == y_test).float().mean() > 0.5


def test_bad_augmentations_are_named():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        make_augmentation("rotate")
    with pytest.raises(ValueError, match="smoothing must be in"):
        make_augmentation("label_smoothing:1.5")
    x, y, _, _ = load_digits()
    with pytest.raises(TypeError, match="augmentations must be"):
        fit(build_model("cnn", in_channels=1, image_size=8), make_method("standard"), (x[:32], y[:32]),
            augmentations=[3], progress=False)
