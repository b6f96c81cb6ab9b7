"""Square in L2, as the original's (fra31/auto-attack): inside the ball and the bounds, never
fooling a point whose exact minimal L2 distance exceeds eps (a linear model), fooling the close
ones, as strong as the original on the same model where it is importable, and part of AutoAttack
standard in L2."""

import pytest
import torch
from torch import nn

from robustkernels.attacks import Square
from robustkernels.eval import autoattack

from .models import trained_digits_cnn


def _linear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    return model


def _minimal_l2(model, x, y):
    """The exact minimal L2 distance to the nearest other class of a linear model (no bounds)."""
    w = model[1].weight
    z = model(x)
    dist = []
    for i in range(len(x)):
        others = [j for j in range(3) if j != int(y[i])]
        dist.append(min(float((z[i, y[i]] - z[i, j]) / (w[y[i]] - w[j]).norm()) for j in others))
    return torch.tensor(dist)


def test_square_l2_stays_in_the_ball_and_follows_the_exact_distance():
    model = _linear_model()
    x = 0.3 + 0.4 * torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
        distance = _minimal_l2(model, x, y)
    eps = float(distance.median())
    adv = Square(model, eps=eps, norm="l2", n_queries=2000, generator=torch.Generator().manual_seed(0))(x, y)
    assert adv.shape == x.shape and ((adv >= 0) & (adv <= 1)).all()
    assert ((adv - x).flatten(1).norm(dim=1) <= eps * (1 + 1e-5)).all()
    with torch.no_grad():
        fooled = model(adv).argmax(1) != y
    assert not fooled[distance > eps].any()  # beyond the exact distance: impossible
    close = distance < eps / 2
    assert close.sum() >= 5 and fooled[close].float().mean() >= 0.9


def test_square_l2_is_as_strong_as_the_original():
    original = pytest.importorskip("autoattack.square", reason="fra31/auto-attack is not installed (test-only)")
    model, x, y = trained_digits_cnn()
    x, y = x[:200], y[:200]
    ours = Square(model, eps=0.5, norm="l2", n_queries=1000, generator=torch.Generator().manual_seed(0))(x, y)
    torch.manual_seed(0)
    theirs = original.SquareAttack(model, norm="L2", n_queries=1000, eps=0.5, p_init=0.8, seed=0,
                                   resc_schedule=False, device="cpu").perturb(x, y)
    with torch.no_grad():
        ours_acc = float((model(ours).argmax(1) == y).float().mean())
        theirs_acc = float((model(theirs).argmax(1) == y).float().mean())
    assert ours_acc <= theirs_acc + 0.03, (ours_acc, theirs_acc)


def test_autoattack_standard_in_l2_includes_square():
    model, x, y = trained_digits_cnn()
    report = autoattack(model, (x[:40], y[:40]), eps=0.5, norm="l2", steps=10, n_queries=100, seed=0, progress=False)
    assert report.attacks == ["apgd-ce", "apgd-t", "fab-t", "square"]
