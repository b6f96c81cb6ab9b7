"""Smoothed PGD (margin steps on the gradient averaged over Gaussian draws around the iterate): a
plain re-statement of the algorithm on a trained CNN, a linear model's exact Linf distance, a model
whose gradient is zero at the data (a hard threshold of the input, flat then steep) that PGD from
the clean point cannot move but the smoothed gradient breaks, and bad arguments by name."""

import math

import pytest
import torch
from torch import nn

from robustkernels.attacks import SmoothedPGD
from robustkernels.ops import draw_seed
from robustkernels.ops.philox import philox_normal

from .helpers import assert_reaches_exact_linf
from .models import trained_digits_cnn


def restated(model, x, y, eps, steps, sigma, draws, generator):
    """The last iterate of one run without early stop: the margin's gradient averaged over
    ``draws`` copies plus N(0, sigma^2) (Philox draws seeded from ``generator``, clamped to [0, 1]),
    signed steps of eps (1 + cos(pi i / steps)), projected onto the ball and [0, 1]."""
    x_adv = x.clone()
    for i in range(steps):
        noise = philox_normal(draws * x.numel(), draw_seed(generator), 0, per_block=4)
        noise = noise.view(draws * len(x), *x.shape[1:])
        noisy = (x_adv.repeat(draws, *[1] * (x.dim() - 1)) + sigma * noise).clamp(0, 1).requires_grad_(True)
        z = model(noisy)
        yy = y.repeat(draws)
        other = z.masked_fill(nn.functional.one_hot(yy, z.shape[1]).bool(), -math.inf).amax(1)
        margin = other - z.gather(1, yy[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(margin.sum(), noisy)
        grad = grad.view(draws, *x.shape).mean(0)
        size = eps * (1 + math.cos(math.pi * i / steps))
        x_adv = torch.min(torch.max(x_adv + size * grad.sign(), x - eps), x + eps).clamp(0, 1).detach()
    return x_adv


def test_the_iterates_follow_the_algorithm_on_a_trained_cnn():
    model, x, y = trained_digits_cnn()
    x, y = x[:24], y[:24]
    attack = SmoothedPGD(model, eps=0.1, steps=6, draws=3, generator=torch.Generator().manual_seed(3))
    ours = attack(x, y)
    want = restated(model, x, y, 0.1, 6, 0.05, 3, torch.Generator().manual_seed(3))
    fooled = model(ours).argmax(1) != y
    assert 0 < fooled.sum() < len(y) - 5  # both kinds of rows, most to compare
    # a fooled sample returns its first fooling iterate, the others the last one
    torch.testing.assert_close(ours[~fooled], want[~fooled], rtol=0, atol=1e-6)
    assert (model(want).argmax(1) != y)[~fooled].sum() == 0


def test_a_linear_models_exact_linf_distance_is_reached():
    """Two classes, z = W x + b: the smallest Linf perturbation that flips a point is
    |margin| / ||w_1 - w_0||_1 (the box does not bind); smoothed PGD fools every point whose
    distance is below eps and, within the ball, none beyond it (a linear model's smoothed gradient
    is its gradient)."""
    assert_reaches_exact_linf(lambda model, eps: SmoothedPGD(model, eps=eps, steps=20, early_stop=True))


class _Threshold(nn.Module):
    """Class 1 once at least two of the 16 inputs pass 0.5: each input through a ramp of width
    0.02 (zero gradient below 0.5 - where the data lie - and above 0.52), the way a PGD-AT MNIST
    CNN's first layer thresholds its pixels."""

    def forward(self, x):
        h = ((x - 0.5) * 50).clamp(0, 1).sum(1)
        return torch.stack([torch.full_like(h, 1.5), h], 1)


def test_it_breaks_a_model_whose_gradient_is_zero_at_the_data_where_pgd_cannot_move():
    model = _Threshold()
    x = 0.4 + 0.04 * torch.rand(50, 16, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(50, dtype=torch.long)
    assert (model(x).argmax(1) == y).all()
    plain = SmoothedPGD(model, eps=0.15, sigma=0.0, generator=torch.Generator().manual_seed(1))(x, y)  # = PGD
    assert torch.equal(plain, x)  # a zero gradient: not a step
    smoothed = SmoothedPGD(model, eps=0.15, generator=torch.Generator().manual_seed(1))(x, y)
    assert (smoothed - x).abs().amax() <= 0.15 + 2**-24
    assert (model(smoothed).argmax(1) != y).float().mean() >= 0.9


def test_same_generator_same_draws():
    model, x, y = trained_digits_cnn()
    a = SmoothedPGD(model, eps=0.1, steps=4, generator=torch.Generator().manual_seed(5))(x[:16], y[:16])
    b = SmoothedPGD(model, eps=0.1, steps=4, generator=torch.Generator().manual_seed(5))(x[:16], y[:16])
    assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sigma=-0.1), ValueError, "sigma must be >= 0"),
    (dict(sigma=float("inf")), ValueError, "sigma must be finite"),
    (dict(sigma="0.1"), TypeError, "sigma must be a float"),
    (dict(draws=0), ValueError, "draws must be >= 1"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
    (dict(targeted=True), ValueError, "targeted: SmoothedPGD is untargeted"),
    (dict(loss="ce"), ValueError, "loss: SmoothedPGD ascends the margin"),
    (dict(norm="l2"), ValueError, "norm must be one of"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        SmoothedPGD(nn.Linear(4, 2), eps=0.1, **kwargs)
