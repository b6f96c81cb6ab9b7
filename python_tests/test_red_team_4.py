"""The fourth red team's cases (the attack core and AutoAttack's options, tried as a user who
never saw them): each fixed defect, as the smallest call that showed it."""

import pytest
import torch
from torch import nn

from robustkernels.attacks import APGD, APGDT, FAB, MD, PGD, Square
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


def test_autoattack_fast_validation_of_a_few_class_model_is_checked_before_training():
    """fast attacks 2 targets in Linf: a 4-class model validates; a 3-class one (too few for
    APGD-T's loss) is refused at set-up, naming val_attack, before any epoch is trained."""
    import torch.nn as nn

    from robustkernels.train import fit, make_method

    for classes in (4, 3):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, classes))
        x, y = torch.rand(32, 1, 4, 4), torch.randint(0, classes, (32,))
        before = [p.detach().clone() for p in model.parameters()]
        run = lambda: fit(model, make_method("pgd-at", eps=0.1, steps=2), (x, y), val_data=(x[:16], y[:16]),  # noqa: E731
                          epochs=1, batch_size=16, progress=False, val_attack="autoattack-fast")
        if classes == 4:
            assert 0.0 <= run()[-1]["val_fast_acc"] <= 1.0
        else:
            with pytest.raises(ValueError, match="val_attack='autoattack-fast'.*at least 4 classes"):
                run()
            assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("make", [
    lambda m: FAB(m, eps=0.1, targeted="False"),
    lambda m: APGD(m, eps=0.1, norm="l1", use_largereps="no"),
    lambda m: MD(m, eps=0.1, climb="False"),
    lambda m: Square(m, eps=0.1, rescale_schedule=1),
])
def test_attack_switches_take_bools_only(make):
    """A string "False" is truthy: a switch given one is refused by name, not run the other way."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(TypeError, match="must be True or False"):
        make(model)


@pytest.mark.parametrize("options, error, match", [
    (dict(state_path=123), TypeError, "state_path must be a path"),
    (dict(bpda=1), ValueError, "bpda must be True, False or 'auto'"),
    (dict(eot_batched=1), ValueError, "eot_batched must be True, False or 'auto'"),
])
def test_autoattack_options_refuse_what_only_compares_equal(options, error, match):
    with pytest.raises(error, match=match):
        AutoAttackOptions(**options)


def test_project_l1_takes_one_element_samples_as_a_1d_batch():
    """A 1-D x is B samples of one element (as pgd_step and project take it): each clipped to its
    own ball and the box, the same as the [B, 1] call."""
    from robustkernels.ops import project_l1

    x, nat = torch.tensor([0.9, 0.1, 0.5, 1.0]), torch.tensor([0.5, 0.5, 0.5, 0.95])
    flat = project_l1(x, nat, eps=0.2)
    assert torch.equal(flat, project_l1(x[:, None], nat[:, None], eps=0.2).view(-1))
    torch.testing.assert_close(flat, torch.tensor([0.7, 0.3, 0.5, 1.0]))
