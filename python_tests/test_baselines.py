"""The baselines our benchmarks compare with compute what our ops compute: the same values and
gradients for the same inputs (and the same noise), so a speed-up is against the same function."""

import pytest
import torch

from robustkernels import ops
from robustkernels.bench import baselines


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_official_pni_formulation_matches_noisy_weight(dtype, granularity):
    torch.manual_seed(0)
    w = (torch.randn(16, 8, 3, 3, dtype=dtype) * 0.05).requires_grad_()
    alpha = torch.full((1,) if granularity == "layer" else (16,), 0.25, dtype=dtype, requires_grad=True)
    ours = ops.noisy_weight(w, alpha if granularity == "layer" else alpha.view(16, 1, 1, 1),
                            generator=torch.Generator().manual_seed(7))
    shaped = alpha.detach().view(-1, *[1] * 3) if granularity == "channel" else alpha.detach()
    eta = ((ours.detach() - w.detach()) / (shaped * w.detach().std())).detach()  # our draws, recovered
    theirs = baselines.official_noisy_weight(w, alpha, eta=eta)
    torch.testing.assert_close(theirs, ours)
    g = torch.randn_like(ours)
    grads_ours = torch.autograd.grad(ours, (w, alpha), g)
    grads_theirs = torch.autograd.grad(theirs, (w, alpha), g)
    for a, b in zip(grads_ours, grads_theirs):  # d/dw: identity (std taken without gradient); d/dalpha: noise
        torch.testing.assert_close(a, b)
    assert abs(float(eta.std()) - 1) < 0.1  # the recovered draws are standard normal


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_torchattacks_step_matches_pgd_step(norm):
    torch.manual_seed(0)
    x_nat = torch.rand(8, 3, 16, 16)
    x_adv = (x_nat + 0.05 * torch.randn_like(x_nat)).clamp(0, 1)
    grad = torch.randn_like(x_nat)
    step, eps = (2 / 255, 8 / 255) if norm == "linf" else (0.1, 0.5)
    theirs = baselines.torchattacks_step(x_adv, x_nat, grad, step, eps, norm)
    ours = ops.pgd_step(x_adv, x_nat, grad, step=step, eps=eps, norm=norm)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)  # torchattacks adds 1e-10 to ||g||


def test_eager_lwta_formulation_matches_lwta_in_distribution():
    """The LWTA code's Gumbel-softmax and our op draw differently (one logistic per pair), so they
    agree in distribution: the mean output and the mean input gradient over many draws."""
    torch.manual_seed(0)
    h = torch.randn(1, 8, 4, 4)
    reps = 4000
    batch = h.expand(reps, -1, -1, -1).clone().requires_grad_()
    g = torch.ones_like(batch)
    means = []
    for fn in (lambda x: baselines.official_lwta(x, 2, 0.67), lambda x: ops.lwta(x, competitors=2, temperature=0.67)):
        out = fn(batch)
        (grad,) = torch.autograd.grad(out, batch, g)
        means.append((out.detach().mean(0), grad.mean(0)))
    (y_eager, g_eager), (y_ours, g_ours) = means
    torch.testing.assert_close(y_ours, y_eager, atol=0.06, rtol=0.0)  # ~4 standard errors of 4000 draws
    torch.testing.assert_close(g_ours, g_eager, atol=0.06, rtol=0.0)
