"""The fourth red team's cases (the attack core and AutoAttack's options, tried as a user who
never saw them): each fixed defect, as the smallest call that showed it."""

import pytest
import torch
from torch import nn

from robustkernels.attacks import APGDT, FAB, PGD
from robustkernels.eval import AutoAttackOptions, autoattack, evaluate


def _five_classes():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 5)), torch.rand(6, 1, 4, 4)


@pytest.mark.parametrize("build", [lambda m: APGDT(m, eps=0.1, steps=2, n_target_classes=9),
                                   lambda m: FAB(m, eps=0.1, steps=2, targeted=True, n_target_classes=9)])
def test_targets_beyond_the_classes_are_refused_whatever_the_batch(build):
    """A batch the model already misclassifies used to run silently, a correct one to fail: both
    are refused, on the call's first logits."""
    model, x = _five_classes()
    with torch.no_grad():
        right, wrong = model(x).argmax(1), (model(x).argmax(1) + 1) % 5
    for y in (right, wrong):
        with pytest.raises(ValueError, match="target rank 10 needs more than 5 classes"):
            build(model)(x, y)


def test_a_model_with_one_logit_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    with pytest.raises(ValueError, match=r"K >= 2 classes"):
        PGD(model, eps=0.1, steps=2)(torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))


def test_square_on_flat_inputs_is_refused_before_any_attack_runs():
    model = nn.Sequential(nn.Linear(16, 5))
    x, y = torch.rand(8, 16), torch.randint(0, 5, (8,))
    with pytest.raises(ValueError, match=r"data: version 'standard' runs Square, which needs images"):
        autoattack(model, (x, y), eps=0.1, version="standard", seed=0, progress=False, n_target_classes=4)
    custom = autoattack(model, (x, y), eps=0.1, version="custom", attacks=["apgd-ce"], seed=0, progress=False, steps=2)
    assert custom.attacks == ["apgd-ce"]


def test_autoattack_options_without_the_suite_are_refused():
    model, x = _five_classes()
    with pytest.raises(ValueError, match="suite='autoattack' only"):
        evaluate(model, (x, torch.zeros(6, dtype=torch.long)), eps=0.1, autoattack=AutoAttackOptions(version="fast"),
                 checks=False, progress=False)


def test_rank_at_of_another_dtype_or_with_nan_is_refused_by_name():
    model, x = _five_classes()
    y = torch.zeros(6, dtype=torch.long)
    attack = APGDT(model, eps=0.1, steps=2, n_target_classes=2)
    with pytest.raises(ValueError, match="rank_at must be a tensor of x's shape .*, dtype and device"):
        attack(x, y, rank_at=x.double())
    with pytest.raises(ValueError, match="rank_at contains NaN"):
        attack(x, y, rank_at=torch.full_like(x, float("nan")))


def test_flags_take_bools_only():
    model, _ = _five_classes()
    with pytest.raises(TypeError, match="early_stop must be True or False, got 'no'"):
        PGD(model, eps=0.1, early_stop="no")
    with pytest.raises(TypeError, match="random_start must be True or False"):
        PGD(model, eps=0.1, random_start="no")
    with pytest.raises(TypeError, match="active_set must be True or False"):
        AutoAttackOptions(active_set="no")
    with pytest.raises(ValueError, match="bpda must be True, False or 'auto'"):
        AutoAttackOptions(bpda="x")
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        AutoAttackOptions(seed=-1)
    assert AutoAttackOptions(seed=0).seed == 0
