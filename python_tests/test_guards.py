"""Nothing silently wrong in an evaluation: NaN or misshapen model outputs are refused, the
caller's RNG is untouched by a shuffling DataLoader, labels must be classes, a model noisy on one
call in three is stochastic, and a model at chance is reported as such instead of passing."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustkernels.attacks import APGD, CW, FAB, PGD, Square
from robustkernels.eval import autoattack, evaluate, is_stochastic

from .models import trained_digits_cnn

EPS = 0.1
FAST = dict(attacks=("fgsm", "pgd"), steps={"pgd": 5}, check_samples=32, progress=False)


@pytest.fixture(scope="module")
def digits():
    model, x, y = trained_digits_cnn()
    return model, x[:64], y[:64]


class Output(nn.Module):
    """The trained model with its output replaced by ``change(logits)``."""

    def __init__(self, net, change):
        super().__init__()
        self.net, self.change = net, change

    def forward(self, x):
        return self.change(self.net(x))


BAD_OUTPUTS = {
    "nan": (lambda z: z * float("nan"), "NaN or inf logits"),
    "some nan": (lambda z: torch.where(torch.arange(len(z))[:, None] == 3, float("nan"), z), r"1 of \d+ samples"),
    "inf": (lambda z: z.index_fill(1, torch.tensor([0]), float("inf")), "NaN or inf"),
    "[B]": (lambda z: z[:, 0], r"shape \[B, K\].*got \[\d+\]"),
    "[B, K, 1]": (lambda z: z[..., None], r"got \[\d+, 10, 1\]"),
    "batch": (lambda z: z[:1], r"B = \d+, got \[1, 10\]"),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_evaluate_and_autoattack_refuse_bad_outputs(case, digits):
    model, x, y = digits
    change, match = BAD_OUTPUTS[case]
    bad = Output(model, change)
    with pytest.raises(ValueError, match=match):
        evaluate(bad, (x, y), eps=EPS, **FAST)
    with pytest.raises(ValueError, match=match):
        autoattack(bad, (x, y), eps=EPS, steps=2, n_queries=10, progress=False)


@pytest.mark.parametrize("case", ["[B]", "[B, K, 1]", "batch"])
@pytest.mark.parametrize("attack", [PGD, APGD, FAB, CW, Square])
def test_attacks_refuse_misshapen_outputs(case, attack, digits):
    model, x, y = digits
    kwargs = dict(n_queries=5) if attack is Square else dict(steps=2)
    atk = attack(Output(model, BAD_OUTPUTS[case][0]), eps=0.5 if attack is CW else EPS,
                 **({"norm": "l2"} if attack is CW else {}), **kwargs)
    with pytest.raises(ValueError, match=r"shape \[B, K\]"):
        atk(x[:8], y[:8])


@pytest.mark.parametrize("attack", [PGD, APGD, FAB, CW, Square])
def test_attacks_refuse_labels_out_of_range_and_empty_batches(attack, digits):
    model, x, y = digits
    kwargs = dict(n_queries=5) if attack is Square else dict(steps=2)
    atk = attack(model, eps=0.5 if attack is CW else EPS, **({"norm": "l2"} if attack is CW else {}), **kwargs)
    with pytest.raises(ValueError, match="y has labels >= the model's 10 classes"):
        atk(x[:4], torch.tensor([1, 2, 10, 3]))
    with pytest.raises(ValueError, match="empty batch"):
        atk(x[:0], y[:0])


def test_evaluate_leaves_the_callers_rng_with_a_shuffling_loader(digits):
    model, x, y = digits
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    evaluate(model, loader, eps=EPS, **FAST)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("labels, error, match", [
    (lambda y: y.float(), TypeError, "integer class indices, got torch.float32"),
    (lambda y: y > 4, TypeError, "got torch.bool"),
    (lambda y: y + 10, ValueError, r"labels must lie in \[0, 10\)"),
])
def test_evaluate_refuses_labels_that_are_not_classes(labels, error, match, digits):
    model, x, y = digits
    with pytest.raises(error, match=match):
        evaluate(model, (x, labels(y)), eps=EPS, **FAST)
    with pytest.raises(error, match=match):
        autoattack(model, (x, labels(y)), eps=EPS, progress=False)


@pytest.mark.parametrize("steps, match", [({"pdg": 5}, r"unknown keys \['pdg'\]"), ({"pgd": 0}, r"steps\['pgd'\]"),
                                          ({"apgd": -1}, r"steps\['apgd'\]")])
def test_evaluate_steps_are_checked(steps, match, digits):
    model, x, y = digits
    with pytest.raises(ValueError, match=match):
        evaluate(model, (x, y), eps=EPS, **{**FAST, "steps": steps})


class NoisyEveryThirdCall(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out + torch.randn_like(out) if self.calls % 3 == 0 else out


def test_a_model_noisy_on_one_call_in_three_is_stochastic(digits):
    model, x, y = digits
    assert is_stochastic(NoisyEveryThirdCall(model), x) and not is_stochastic(model, x)
    report = evaluate(NoisyEveryThirdCall(model), (x, y), eps=EPS, eot_iter=2, repeats=2, **FAST)
    assert report.stochastic


def test_a_model_at_chance_is_reported_not_passed(digits):
    _, x, y = digits
    torch.manual_seed(0)
    untrained = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        untrained[1].weight.mul_(1e-3)  # near-uniform outputs: one class wins everywhere
        untrained[1].bias.copy_(torch.arange(10.0))
    report = evaluate(untrained, (x, y), eps=EPS, **FAST)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses.pop("clean accuracy above chance") == "warn"
    assert set(statuses.values()) == {"n/a"} and "has not learned" in report.to_markdown()
    aa = autoattack(untrained, (x, y), eps=EPS, steps=2, n_queries=10, progress=False)
    assert "has not learned" in aa.log()
    trained_report = evaluate(digits[0], (x, y), eps=EPS, **FAST)
    assert {c.name: c.status for c in trained_report.checks}["clean accuracy above chance"] == "pass"


@pytest.mark.parametrize("mode", ["train", "keep"])
def test_attacks_in_train_mode_restore_batchnorm_statistics(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model.train(mode == "keep")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    PGD(model, eps=0.1, steps=3, model_mode=mode)(x, y)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.training == (mode == "keep")


class _CastsItsInput(nn.Module):
    """float64 weights that cast whatever comes in: runs on float32 data."""

    def __init__(self, net):
        super().__init__()
        self.net = net.double()

    def forward(self, x):
        return self.net(x.double()).float()


def test_data_of_another_dtype_than_the_model_is_named(digits):
    """float64 data (NumPy's default) into a float32 model: a TypeError naming the argument, in
    the attacks, evaluate, autoattack and fit - and a model that casts its input itself runs."""
    import copy

    from robustkernels.train import fit, make_method

    model, x, y = digits
    wide = x.double()
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's parameters are torch.float32"):
        PGD(model, eps=EPS, steps=1)(wide, y)
    with pytest.raises(TypeError, match=r"^data is torch.float64"):
        evaluate(model, (wide, y), eps=EPS, **FAST)
    with pytest.raises(TypeError, match=r"^data is torch.float64"):
        autoattack(model, (wide, y), eps=EPS, version="fast", progress=False)
    trained = copy.deepcopy(model)
    with pytest.raises(TypeError, match=r"^train_data is torch.float64"):
        fit(trained, make_method("standard"), (wide, y), epochs=1, progress=False)
    casting = _CastsItsInput(copy.deepcopy(model)).eval()
    assert PGD(casting, eps=EPS, steps=2)(x, y).dtype == torch.float32
    assert 0 <= autoattack(casting, (x[:16], y[:16]), eps=EPS, version="fast", progress=False).robust_accuracy.mean <= 1
