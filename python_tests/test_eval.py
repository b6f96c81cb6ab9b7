"""evaluate(): the report's invariants, EOT on stochastic models, each gradient-masking check
firing on a model built to trip it (and passing on a normal one), JSON and plots."""

import copy

import pytest
import torch
from torch import nn

from robustkernels.attacks import PGD, Square
from robustkernels.eval import RobustnessReport, evaluate, is_stochastic
from robustkernels.nn import convert_activations

from .models import accuracy, trained_digits_cnn

EPS = 0.1
FAST = dict(attacks=("fgsm", "pgd"), steps={"pgd": 10, "square": 300}, check_samples=100, progress=False)


def _data(n=150):
    model, x, y = trained_digits_cnn()
    return model, x[:n], y[:n]


def _checks(report):
    return {c.name.split(" ")[0]: c.status for c in report.checks}


class _GradientOnly(torch.autograd.Function):
    """Identity forward; the backward is ``rule(x, grad)``."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.rule(x, grad), None


class Masked(nn.Module):
    def __init__(self, net, rule=None, quantize=False, noise=0.0):
        super().__init__()
        self.net, self.rule, self.quantize, self.noise = net, rule, quantize, noise

    def forward(self, x):
        if self.quantize:  # round to the digits' 17 grey levels: zero gradient everywhere
            x = torch.round(x * 16) / 16
        if self.rule is not None:
            x = _GradientOnly.apply(x, self.rule)
        out = self.net(x)
        return out + self.noise * torch.randn_like(out) if self.noise else out


def off_grid_flips(x, grad):  # true gradient near the data grid, reversed away from it
    off = (x - torch.round(x * 16) / 16).abs() > 0.01
    return torch.where(off, -grad, grad)


def far_from_data_flips(x, grad):  # true gradient within 0.06 (Linf) of a test image, reversed beyond
    _, reference, _ = _data(100)
    distance = (x[:, None] - reference[None]).abs().flatten(2).amax(dim=2).min(dim=1).values
    return torch.where((distance > 0.06).view(-1, 1, 1, 1), -grad, grad)


def constant(x, grad):
    return torch.ones_like(grad)


def sometimes_huge_and_wrong(x, grad):
    return -50 * grad if float(torch.rand(())) < 0.2 else grad


def test_report_invariants_and_model_untouched():
    model, x, y = _data()
    model.train()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    attacks = ("fgsm", "pgd", "cw", "apgd-ce", "apgd-dlr", "md", "smoothed-pgd")
    steps = {"apgd": 20, "pgd": 10, "md": 20, "smoothed-pgd": 10}
    report = evaluate(model, (x, y), eps=EPS, attacks=attacks, steps=steps, checks=False, progress=False)
    assert model.training is True  # restored
    accs = [r.robust_accuracy.mean for r in report.attacks.values()]
    assert report.worst_case.mean <= min(accs) <= max(accs) <= report.clean_accuracy.mean
    assert report.clean_accuracy.mean == pytest.approx(accuracy(model.eval(), x, y))
    assert report.robustness_gap == pytest.approx(report.clean_accuracy.mean - report.worst_case.mean)
    for r in report.attacks.values():
        assert 0 <= r.success_rate <= 1 and 0 < r.confidence_adv <= 1 and r.seconds_per_image > 0
        assert 0 < r.perturbation_norm <= EPS + 1e-5
    assert not report.stochastic and report.eot_iter == 1 and report.overhead > 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_dataloader_input_matches_tensors():
    model, x, y = _data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    a = evaluate(model, loader, eps=EPS, attacks="fgsm", checks=False, progress=False)
    b = evaluate(model, (x, y), eps=EPS, attacks="fgsm", checks=False, progress=False)
    assert a.attacks["fgsm"].robust_accuracy == b.attacks["fgsm"].robust_accuracy


def test_eot_lowers_or_keeps_the_robust_accuracy_of_a_stochastic_model():
    model, x, y = _data(100)
    lwta = convert_activations(copy.deepcopy(model), competitors=2, eval_temperature=0.67)
    assert is_stochastic(lwta, x, lwta) and not is_stochastic(model, x, model)
    common = dict(attacks=("pgd",), steps={"pgd": 10}, checks=False, progress=False, repeats=3,
                  generator=torch.Generator().manual_seed(0))
    with_eot = evaluate(lwta, (x, y), eps=EPS, eot_iter="auto", **common)
    without = evaluate(lwta, (x, y), eps=EPS, eot_iter=1, **common)
    assert with_eot.stochastic and with_eot.eot_iter == 20 and with_eot.repeats == 3
    assert with_eot.clean_accuracy.runs == 3
    assert with_eot.attacks["pgd"].robust_accuracy.mean <= without.attacks["pgd"].robust_accuracy.mean + 0.03
    assert with_eot.clean_accuracy.std > 0  # every evaluation pass draws fresh noise


def test_eot_off_on_a_stochastic_model_is_flagged():
    model, x, y = _data(64)
    noisy = Masked(model, noise=0.5)
    report = evaluate(noisy, (x, y), eps=EPS, eot_iter=1, **FAST)
    assert report.stochastic and _checks(report)["EOT"] == "warn"


def test_checks_pass_on_a_normal_model():
    model, x, y = _data(100)
    report = evaluate(model, (x, y), eps=EPS, **FAST)
    assert _checks(report) == {"clean": "pass", "iterative": "pass", "accuracy": "pass", "unbounded": "pass",
                               "gradient-free": "pass", "EOT": "n/a"}


@pytest.mark.parametrize("rule, quantize, noise, eps, tripped", [
    (off_grid_flips, False, 0.0, EPS, ("iterative",)),  # masked off the data grid: PGD weaker than FGSM
    (far_from_data_flips, False, 0.0, 0.2, ("accuracy",)),  # masked beyond 0.06: eps 0.1 beats eps 0.05
    (constant, False, 0.0, EPS, ("unbounded",)),  # gradients carry no information
    (None, True, 0.0, EPS, ("gradient-free",)),  # non-differentiable input quantisation
    (sometimes_huge_and_wrong, False, 1e-3, EPS, ("EOT",)),  # averaging the draws points the wrong way
])
def test_each_check_fires_on_a_model_built_to_trip_it(rule, quantize, noise, eps, tripped):
    model, x, y = _data(100)
    report = evaluate(Masked(model, rule, quantize, noise), (x, y), eps=eps, **FAST)
    statuses = _checks(report)
    for name in tripped:
        assert statuses[name] == "warn", report.to_markdown()


def test_json_round_trip_and_plots(tmp_path):
    model, x, y = _data(64)
    report = evaluate(model, (x, y), eps=EPS, title="digits", **FAST)
    again = RobustnessReport.from_json(report.to_json(tmp_path / "r.json"))
    assert again == report
    assert "| pgd |" in report.to_markdown() and "Worst case" in report.to_markdown()
    files = report.plot(tmp_path / "plots")
    assert len(files) == 3
    for path in files:
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_square_is_gradient_free_and_stays_in_the_ball():
    model, x, y = _data(100)
    x_adv = Square(Masked(model, quantize=True), eps=EPS, n_queries=200,
                   generator=torch.Generator().manual_seed(0))(x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert accuracy(model, x_adv, y) < accuracy(model, PGD(Masked(model, quantize=True), eps=EPS)(x, y), y)
    with pytest.raises(ValueError, match="norm"):  # Linf, L2 and L1 (the original's searches) only
        Square(model, eps=EPS, norm="l0")


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=-1.0), "eps"), (dict(eps=EPS, attacks=("pgd", "nope")), "attacks"),
    (dict(eps=EPS, eot_iter=0), "eot_iter"), (dict(eps=EPS, norm="l3"), "norm"),
    (dict(eps=EPS, norm="l2", attacks=("pgd", "md")), "md needs norm='linf'"),
    (dict(eps=EPS, attacks="md", steps={"md": 1}), r"steps\['md'\] >= 2"),
    (dict(eps=EPS, norm="l2", attacks="smoothed-pgd"), "smoothed-pgd needs norm='linf'"),
    (dict(eps=EPS, attacks="smoothed-pgd", steps={"smoothed-pgd": 0}), r"steps\['smoothed-pgd'\]"),
])
def test_bad_arguments(kwargs, match):
    model, x, y = _data(16)
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate(model, (x, y), progress=False, **kwargs)
    with pytest.raises(TypeError, match="data"):
        evaluate(model, [x], eps=EPS, progress=False)


class _LoggedDigits(torch.utils.data.Dataset):
    """The digits, logging every sample read into ``log``."""

    def __init__(self, x, y, log):
        self.x, self.y, self.log = x, y, log

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.log.append(("read", i))
        return self.x[i], self.y[i]


def test_evaluate_streams_the_data_batch_by_batch():
    """Each batch is attacked before the next is read, every sample is read once per pass (the
    checks use the kept leading samples), and a shuffling loader gives the same figures as the
    tensors it holds: the per-sample verdicts line up across attacks whatever the order."""
    model, x, y = _data(90)
    log = []
    logged = copy.deepcopy(model)
    logged.register_forward_pre_hook(lambda m, a: log.append(("forward",)))
    loader = torch.utils.data.DataLoader(_LoggedDigits(x, y, log), batch_size=30)
    report = evaluate(logged, loader, eps=EPS, **{**FAST, "check_samples": 40}, batch_size=30)
    reads = [e[1] for e in log if e[0] == "read"]
    assert sorted(reads) == list(range(90))  # once each
    first_forward = next(i for i, e in enumerate(log) if e[0] == "forward")
    second_batch = next(i for i, e in enumerate(log) if e[0] == "read" and e[1] >= 30)
    assert first_forward < second_batch
    fixed = evaluate(model, (x, y), eps=EPS, **{**FAST, "attacks": ("fgsm",)}, batch_size=30, checks=False)
    shuffled = evaluate(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=30,
                                                           shuffle=True, generator=torch.Generator().manual_seed(1)),
                        eps=EPS, **{**FAST, "attacks": ("fgsm",)}, batch_size=30, checks=False)
    assert report.n_samples == fixed.n_samples == shuffled.n_samples == 90
    assert fixed.clean_accuracy.mean == shuffled.clean_accuracy.mean
    assert fixed.attacks["fgsm"].robust_accuracy.mean == shuffled.attacks["fgsm"].robust_accuracy.mean  # FGSM: no draws
    assert report.worst_case.mean <= min(r.robust_accuracy.mean for r in report.attacks.values())
