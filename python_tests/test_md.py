"""MD (margin decomposition, Ma et al. 2023): the step and loss schedule of the original's code,
its iterates against a plain re-statement of that code on a trained CNN, a linear model's exact
Linf distance, and its strength on the trained CNN against PGD on the margin."""

import importlib
import math

import pytest
import torch
from torch import nn

from robustkernels.attacks import MD, PGD

from .helpers import assert_reaches_exact_linf
from .models import accuracy, trained_digits_cnn


@pytest.fixture(scope="module")
def trained():
    model, x, y = trained_digits_cnn()
    return model, x[:120], y[:120]


def original_md(model, x, y, start, eps, steps, change_point, term, climb=True):
    """The last iterate of one run of the original's ``MDAttack`` (one branch ``r``), given its
    start: step 0 ascends z_y, then the term alone, then the margin; sign steps of the cosine
    schedule, projected onto the ball and [0, 1]."""
    x_adv = start.clone()
    for i in range(steps):
        x_adv.requires_grad_(True)
        z = model(x_adv)
        z_y = z.gather(1, y[:, None]).squeeze(1)
        z_max = z.scatter(1, y[:, None], -1e8).max(1).values
        if i < 1 and climb:
            loss = z_y
        elif i < change_point:
            loss = -z_y if term == "true" else z_max
        else:
            loss = z_max - z_y
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
        shift = change_point + 1 if i > change_point else 1
        alpha = 2 * eps * 0.5 * (1 + math.cos((i - shift) / (steps - change_point) * math.pi))
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


@pytest.mark.parametrize("steps,change_point", [(50, 25), (25, 10), (7, 1)])
def test_the_schedule_is_the_originals(steps, change_point):
    md = MD(nn.Linear(2, 3), eps=0.1, steps=steps, change_point=change_point)
    for i in range(steps):
        loss, sign, size = md.stage(i, "other")
        shift = change_point + 1 if i > change_point else 1
        assert size == pytest.approx(0.1 * (1 + math.cos((i - shift) / (steps - change_point) * math.pi)))
        expected = ("true-logit", -1.0) if i == 0 else ("other-logit" if i < change_point else "margin", 1.0)
        assert (loss, sign) == expected, i
    assert MD(nn.Linear(2, 3), climb=False).stage(0, "true")[:2] == ("true-logit", 1.0)


@pytest.mark.parametrize("term,climb", [("true", True), ("other", True), ("true", False)])
def test_iterates_match_the_original_code(trained, term, climb, monkeypatch):
    """Without early stop, a sample never fooled ends where the original's code ends from the
    same start (the same steps; the fused projection, the same arithmetic)."""
    model, x, y = trained
    eps = 0.03
    md = MD(model, eps=eps, steps=12, change_point=5, terms=term, climb=climb,
            generator=torch.Generator().manual_seed(0))
    md_module = importlib.import_module("robustkernels.attacks.md")
    start, starts = md_module.start_point, []

    def remember(ctx, z, how):
        starts.append(start(ctx, z, how))
        return starts[-1].clone()

    monkeypatch.setattr(md_module, "start_point", remember)
    ours = md(x, y)
    with torch.no_grad():
        never = model(ours).argmax(1) == y
    reference = original_md(model, x, y, starts[0], eps, 12, 5, term, climb)
    assert never.sum() > 20 and (~never).sum() > 5  # both kinds present at this eps
    torch.testing.assert_close(ours[never], reference[never], atol=1e-6, rtol=0)


def test_a_linear_models_exact_linf_distance_is_reached():
    """Two classes, z = W x + b: the smallest Linf perturbation that flips a point is
    |margin| / ||w_1 - w_0||_1 (the box does not bind here); MD fools every point whose distance
    is below eps and, within the ball, none beyond it."""
    assert_reaches_exact_linf(lambda model, eps: MD(model, eps=eps, steps=20, change_point=8, early_stop=True))


def test_at_least_as_strong_as_pgd_on_the_margin(trained):
    """Two runs of 25 steps (both terms, the original's settings) against PGD on the margin loss
    with the same 50 gradient steps, on a trained CNN."""
    model, x, y = trained
    md = MD(model, eps=0.06, steps=25, change_point=12, generator=torch.Generator().manual_seed(1))(x, y)
    pgd = PGD(model, eps=0.06, alpha=0.006, steps=50, loss="margin", generator=torch.Generator().manual_seed(1))(x, y)
    assert accuracy(model, md, y) <= accuracy(model, pgd, y)
    assert accuracy(model, md, y) < accuracy(model, x, y) - 0.1
