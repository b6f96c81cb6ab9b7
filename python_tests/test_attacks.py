"""The attack suite on a real CNN trained on the bundled digits."""

import numpy as np
import pytest
import torch
from torch import nn

from robustkernels.attacks import APGD, APGDT, CW, FGSM, FGSM_RS, MD, MIFGSM, PGD, SmoothedPGD, Square, objective
from robustkernels.eval import autoattack, evaluate

from .models import accuracy, small_cnn, trained_digits_cnn

EPS = 0.1


@pytest.fixture(scope="module")
def trained():
    model, x, y = trained_digits_cnn()
    return model, x[:200], y[:200]


def attacks_for(model, norm="linf"):
    eps = EPS if norm == "linf" else 1.0
    return {
        "FGSM": FGSM(model, eps=eps, norm=norm),
        "FGSM_RS": FGSM_RS(model, eps=eps, norm=norm),
        "PGD": PGD(model, eps=eps, alpha=eps / 4, steps=10, norm=norm),
        "PGD-margin": PGD(model, eps=eps, alpha=eps / 4, steps=10, norm=norm, loss="margin"),
        "PGD-dlr": PGD(model, eps=eps, alpha=eps / 4, steps=10, norm=norm, loss="dlr"),
        "MIFGSM": MIFGSM(model, eps=eps, alpha=eps / 4, steps=10, norm=norm),
        "APGD-ce": APGD(model, eps=eps, steps=20, norm=norm),
        "APGD-dlr": APGD(model, eps=eps, steps=20, norm=norm, loss="dlr"),
        **({"MD": MD(model, eps=eps, steps=20, change_point=8)} if norm == "linf" else {}),
    }


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbation_within_eps_and_bounds_and_effective(trained, norm):
    model, x, y = trained
    clean = accuracy(model, x, y)
    for name, attack in attacks_for(model, norm).items():
        x_adv = attack(x, y)
        delta = (x_adv - x).flatten(1)
        size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
        assert (size <= attack.eps + 1e-5).all(), name
        assert x_adv.min() >= 0 and x_adv.max() <= 1, name
        assert accuracy(model, x_adv, y) < clean - 0.1, name  # every attack does real damage


def test_pgd_one_step_no_random_start_equals_fgsm(trained):
    model, x, y = trained
    pgd = PGD(model, eps=EPS, alpha=EPS, steps=1, random_start=False)
    assert torch.equal(pgd(x, y), FGSM(model, eps=EPS)(x, y))


def test_restarts_never_weaker_than_one_run(trained):
    model, x, y = trained
    single = PGD(model, eps=EPS, alpha=EPS / 4, steps=5, generator=torch.Generator().manual_seed(1))
    multi = PGD(model, eps=EPS, alpha=EPS / 4, steps=5, restarts=4, generator=torch.Generator().manual_seed(1))
    fooled_single = model(single(x, y)).argmax(1) != y
    fooled_multi = model(multi(x, y)).argmax(1) != y
    assert (fooled_multi | ~fooled_single).all()  # every sample fooled by one run stays fooled
    assert fooled_multi.sum() >= fooled_single.sum()


def test_apgd_at_least_as_strong_as_pgd10(trained):
    model, x, y = trained
    pgd = accuracy(model, PGD(model, eps=EPS, alpha=EPS / 4, steps=10)(x, y), y)
    apgd = accuracy(model, APGD(model, eps=EPS, steps=100)(x, y), y)
    assert apgd <= pgd


def test_cw_finds_smaller_l2_perturbations_than_pgd_l2(trained):
    model, x, y = trained
    x, y = x[:100], y[:100]
    pgd_adv = PGD(model, eps=1.5, alpha=0.3, steps=20, norm="l2")(x, y)
    cw_adv = CW(model, steps=60, lr=0.05, binary_search_steps=4)(x, y)
    pgd_fooled = model(pgd_adv).argmax(1) != y
    cw_fooled = model(cw_adv).argmax(1) != y
    both = pgd_fooled & cw_fooled
    assert both.sum() >= 0.5 * pgd_fooled.sum()  # comparable success
    l2 = lambda a: (a - x).flatten(1).norm(dim=1)[both]  # noqa: E731
    assert l2(cw_adv).mean() < l2(pgd_adv).mean()
    assert torch.equal(cw_adv[~cw_fooled], x[~cw_fooled])  # failures come back unchanged


def test_targeted_attacks_reach_the_target(trained):
    model, x, y = trained
    target = (y + 1) % 10
    for attack in (PGD(model, eps=0.3, alpha=0.05, steps=20, targeted=True),
                   PGD(model, eps=0.3, alpha=0.05, steps=20, targeted=True, loss="margin"),
                   APGD(model, eps=0.3, steps=20, targeted=True, loss="dlr"),
                   CW(model, steps=40, lr=0.05, binary_search_steps=2, targeted=True)):
        hit = (model(attack(x, y, target)).argmax(1) == target).float().mean().item()
        assert hit > 0.5, type(attack).__name__


def test_caller_model_tensors_and_rng_unchanged(trained):
    model, x, y = trained
    model.train()
    model[0].eval()  # a mixed state must come back as it was
    model[2].weight.requires_grad_(False)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    x_before, y_before = x.clone(), y.clone()
    attacks = list(attacks_for(model).values()) + [CW(model, steps=3, binary_search_steps=1)]
    rng = torch.get_rng_state()  # (building an attack draws its seed; running one draws nothing)
    for attack in attacks:
        attack(x, y)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert torch.equal(torch.get_rng_state(), rng)
    model[2].weight.requires_grad_(True)
    model.eval()


class CountingStochastic(nn.Module):
    """Wraps a model, adds input noise on every call and counts the calls."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.rows = model, 0, 0

    def forward(self, x):
        self.calls += 1
        self.rows += x.shape[0]
        return self.model(x + 0.05 * torch.randn_like(x))


def test_eot_averages_gradients_over_forward_passes(trained):
    model, x, y = trained
    stochastic = CountingStochastic(model)
    PGD(stochastic, eps=EPS, alpha=EPS / 4, steps=3, eot_iter=5, eot_batched=False)(x, y)
    assert stochastic.calls == 15 and stochastic.rows == 15 * len(y)
    stochastic.calls = stochastic.rows = 0
    PGD(stochastic, eps=EPS, alpha=EPS / 4, steps=3, eot_iter=5, eot_batched=True)(x[:100], y[:100])
    assert stochastic.calls == 3 and stochastic.rows == 15 * 100
    # averaging over more passes gives a gradient closer to the expected one
    attack_1, attack_50 = PGD(stochastic, eps=EPS, eot_iter=1), PGD(stochastic, eps=EPS, eot_iter=50)
    torch.manual_seed(0)
    reference = PGD(stochastic, eps=EPS, eot_iter=400).oracle().loss_and_grad(x, y, None)[1]
    noisy = attack_1.oracle().loss_and_grad(x, y, None)[1]
    averaged = attack_50.oracle().loss_and_grad(x, y, None)[1]
    assert (averaged - reference).norm() < (noisy - reference).norm()


def test_early_stop_leaves_fooled_samples_alone(trained):
    model, x, y = trained
    start_fooled = FGSM(model, eps=EPS)(x, y)
    already = model(start_fooled).argmax(1) != y
    moved = PGD(model, eps=0.2, alpha=0.02, steps=5, random_start=False, early_stop=True)(start_fooled, y)
    assert torch.equal(moved[already], start_fooled[already])
    assert not torch.equal(moved[~already], start_fooled[~already])


def test_normalization_and_per_channel_bounds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x, y = torch.rand(6, 3, 4, 4) * 0.5 + 0.25, torch.randint(0, 5, (6,))
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    bounds = (torch.tensor([0.2, 0.25, 0.25]), torch.tensor([0.8, 0.75, 0.75]))
    x_adv = PGD(model, eps=0.1, alpha=0.05, steps=3, normalization=(mean, std), bounds=bounds)(x, y)
    for c in range(3):
        assert x_adv[:, c].min() >= bounds[0][c] and x_adv[:, c].max() <= bounds[1][c]
    # the attack's objective is computed on the normalised input
    plain = PGD(nn.Sequential(), eps=0.1)
    attack = PGD(model, eps=0.1, normalization=(mean, std))
    torch.testing.assert_close(attack.oracle().logits(x), model((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)))
    assert plain.oracle().logits(x) is x


def test_losses_have_the_right_sign():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    for name in ("ce", "margin", "dlr", "true-logit", "other-logit"):
        value = objective(name, logits, y)
        assert value[1] > value[0], name  # the misclassified sample scores higher
    target = torch.tensor([1, 1])
    for name in ("ce", "margin", "dlr", "true-logit", "other-logit"):
        value = objective(name, logits, y, target)
        assert value[1] > value[0], name  # closer to the target scores higher


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda m: PGD(m, eps=-0.1), ValueError, "eps must be >= 0"),
        (lambda m: PGD(m, steps=0), ValueError, "steps must be >= 1"),
        (lambda m: PGD(m, restarts=0), ValueError, "restarts must be >= 1"),
        (lambda m: PGD(m, norm="l1"), ValueError, "norm must be one of"),
        (lambda m: PGD(m, loss="hinge"), ValueError, "loss must be one of"),
        (lambda m: PGD(m, eot_iter=0), ValueError, "eot_iter must be >= 1"),
        (lambda m: PGD("model"), TypeError, "model must be an nn.Module"),
        (lambda m: APGD(m, steps=1.5), TypeError, "steps must be an int"),
        (lambda m: APGD(m, start="zero"), ValueError, "start must be one of"),
        (lambda m: APGD(m, norm="l2", start="stripes"), ValueError, "start='stripes' .* needs norm='linf'"),
        (lambda m: APGD(m, first_target_steps=50), ValueError, "first_target_steps is APGD-T's"),
        (lambda m: APGDT(m, first_target_steps=0), ValueError, "first_target_steps must be >= 1"),
        (lambda m: CW(m, c=-1.0), ValueError, "c must be >= 0"),
        (lambda m: CW(m, lr=0), ValueError, "lr must be > 0"),
        (lambda m: APGD(m, rho=2), ValueError, "rho must be >= 0 and <= 1"),
        (lambda m: PGD(m, eps=np.bool_(True)), TypeError, "eps must be a float, got bool"),
        (lambda m: MD(m, steps=10, change_point=10), ValueError, "change_point must be below steps=10"),
        (lambda m: MD(m, change_point=2.5), TypeError, "change_point must be an int"),
        (lambda m: MD(m, terms=("true", "z")), ValueError, "terms must list some of"),
        (lambda m: MD(m, terms=()), ValueError, "terms must list some of"),
        (lambda m: MD(m, targeted=True), ValueError, "targeted: MD is untargeted"),
        (lambda m: MD(m, loss="ce"), ValueError, "loss: MD ascends the margin"),
        (lambda m: MD(m, norm="l2"), ValueError, "norm must be one of"),
        (lambda m: MD(m, start="zero"), ValueError, "start must be one of"),
    ],
)
def test_bad_construction(build, error, match):
    with pytest.raises(error, match=match):
        build(small_cnn())


def test_numpy_scalars_are_numbers(trained):
    """eps and alpha read from a NumPy array (np.float32) attack exactly as the Python floats."""
    model, x, y = trained
    ours = PGD(model, eps=np.float32(EPS), alpha=np.float32(EPS / 4), steps=3, random_start=False)(x, y)
    plain = PGD(model, eps=float(np.float32(EPS)), alpha=float(np.float32(EPS / 4)), steps=3, random_start=False)(x, y)
    assert torch.equal(ours, plain)


def test_bad_inputs(trained):
    model, x, y = trained
    attack = PGD(model, eps=EPS, steps=1)
    with pytest.raises(ValueError, match="within bounds"):
        attack(x * 2, y)
    with pytest.raises(ValueError, match="must have shape"):
        attack(x, y[:-1])
    with pytest.raises(ValueError, match="labels >= the model's 10 classes"):
        attack(x, y + 10)
    with pytest.raises(ValueError, match="negative labels"):
        attack(x, y - 100)
    with pytest.raises(TypeError, match="integer Tensor"):
        attack(x, y.float())
    with pytest.raises(ValueError, match="NaN"):
        attack(x.clone().fill_(float("nan")), y)
    with pytest.raises(ValueError, match="needs target labels"):
        PGD(model, targeted=True)(x, y)
    with pytest.raises(ValueError, match="target labels given to an attack that takes none"):
        attack(x, y, y)
    with pytest.raises(ValueError, match="y is on meta"):
        attack(x, y.to("meta"))


class _Flat(torch.nn.Module):
    """Logits that do not depend on the input: no gradient, so APGD stays where it starts."""

    def forward(self, x):
        return torch.zeros(len(x), 10, device=x.device) + torch.arange(10.0, device=x.device) + 0 * x.flatten(1)[:, :1]


def test_apgd_stripes_start_is_squares_vertex_start():
    x = torch.rand(5, 3, 7, 9) * 0.6 + 0.2  # eps 0.1 from the bounds: no clamping
    y = torch.full((5,), 9)  # the model's constant prediction: never fooled
    gen = torch.Generator().manual_seed(3)
    out = APGD(_Flat(), eps=0.1, steps=3, loss="dlr", start="stripes", generator=gen)(x, y)
    delta = out - x
    assert torch.allclose(delta.abs(), torch.full_like(delta, 0.1), atol=1e-6)  # a vertex of the ball
    assert torch.equal(delta.sign(), delta[:, :, :1].sign().expand_as(delta))  # one sign per (sample, channel, column)
    square = Square(_Flat(), eps=0.1, n_queries=1, generator=torch.Generator().manual_seed(3))(x, y)
    assert torch.equal(square, out)  # Square's start, the same draws from the same generator
    with pytest.raises(ValueError, match=r"start='stripes' needs images \[B, C, H, W\]"):
        APGD(_Flat(), eps=0.1, steps=1, start="stripes")(x.flatten(1), y)


@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_apgdt_first_target_runs_its_own_length(trained, norm):
    """``first_target_steps``: the top-ranked target's run is that long, the later targets' ``steps``;
    equal to ``steps`` it changes nothing (the same draws, the same points)."""
    model, x, y = trained
    eps = EPS if norm == "linf" else 5.0
    seen = []
    attack = APGDT(_Flat(), eps=eps, norm=norm, steps=3, n_target_classes=3, first_target_steps=7)
    run = attack._run
    attack._run = lambda *args: seen.append(args[-1]) or run(*args)
    attack(x[:4], torch.full((4,), 9))  # _Flat predicts 9 wherever it is: never fooled, every target runs
    assert seen == [7, 3, 3]
    common = dict(eps=eps, norm=norm, steps=5, n_target_classes=2)
    plain = APGDT(model, generator=torch.Generator().manual_seed(1), **common)(x[:40], y[:40])
    same = APGDT(model, generator=torch.Generator().manual_seed(1), first_target_steps=5, **common)(x[:40], y[:40])
    assert torch.equal(plain, same)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("build, norm, eps", [
    (lambda m, e: PGD(m, eps=e, steps=4), "linf", 8 / 255),
    (lambda m, e: PGD(m, eps=e, steps=4, norm="l2"), "l2", 0.5),
    (lambda m, e: APGD(m, eps=e, steps=4), "linf", 8 / 255),
    (lambda m, e: Square(m, eps=e, n_queries=20), "linf", 8 / 255),
    (lambda m, e: Square(m, eps=e, n_queries=20, norm="l2"), "l2", 0.5),
])
def test_16_bit_points_stay_inside_the_ball_exactly(build, norm, eps, dtype):
    """Rounding to 16 bits carries points up to an ulp outside (bf16 near 0.5: 0.004 against eps
    0.031); the contract's last step projects them back, measured exactly in fp64."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10 * 10, 10)).to(dtype)
    x, y = torch.rand(16, 3, 12, 12).to(dtype), torch.randint(0, 10, (16,))
    x_adv = build(model, eps)(x, y)
    delta = (x_adv.double() - x.double()).flatten(1)
    dist = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert x_adv.dtype == dtype and float(dist.max()) <= eps and float(dist.max()) > 0.9 * eps
    assert 0 <= float(x_adv.double().min()) and float(x_adv.double().max()) <= 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_toward_is_nextafter_on_every_16_bit_value(dtype):
    """contract.toward (bits; CUDA lacks Half nextafter before torch 2.6) against torch.nextafter."""
    from robustkernels.attacks.contract import toward

    values = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype)
    values = values[values.isfinite()]
    for target in (torch.zeros_like(values), values.flip(0), torch.full_like(values, 0.5)):
        assert torch.equal(toward(values, target).view(torch.int16), torch.nextafter(values, target).view(torch.int16))


def test_16_bit_l2_points_keep_their_budget(monkeypatch):
    """Projecting a bf16 L2 point that rounding left just outside keeps (almost) all of eps: the
    largest fp64 scale whose rounded point is inside, not every element moved an ulp (which lost
    15-35% of eps on 32x32 images)."""
    from robustkernels.attacks import base

    own = {}

    def spy(threat, x_adv, x, bounds, who):
        own["distance"] = (x_adv.double() - x.double()).flatten(1).norm(dim=1)
        return hold(threat, x_adv, x, bounds, who)

    hold = base.held_to_contract
    monkeypatch.setattr(base, "held_to_contract", spy)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).bfloat16()
    x, y = torch.rand(8, 3, 32, 32).bfloat16(), torch.randint(0, 10, (8,))
    x_adv = PGD(model, eps=0.5, alpha=0.2, steps=5, norm="l2")(x, y)
    distance = (x_adv.double() - x.double()).flatten(1).norm(dim=1)
    assert bool((distance <= 0.5).all()) and bool((distance >= 0.99 * own["distance"].clamp(max=0.5)).all())


def test_fp32_rounding_of_large_inputs_is_not_refused():
    """Features in [0, 100] with eps 0.01: x + eps rounds up to half an ulp of |x| past eps in fp32;
    the contract allows what rounding explains."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    x, y = 100 * torch.rand(8, 6), torch.randint(0, 3, (8,))
    for attack in (PGD(model, eps=0.01, steps=3, bounds=(0.0, 100.0)), FGSM(model, eps=0.01, bounds=(0.0, 100.0)),
                   PGD(model, eps=0.01, steps=3, norm="l2", bounds=(0.0, 100.0))):
        assert attack(x, y).shape == x.shape


def test_non_finite_points_are_named_as_such():
    class Broken(PGD):  # a subclass whose perturb divides by zero
        def perturb(self, ctx, x, y, target):
            return x / 0.0

    x, y = torch.rand(2, 3, 8, 8), torch.randint(0, 10, (2,))
    with pytest.raises(RuntimeError, match="Broken returned 2 of 2 points that are not finite"):
        Broken(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)), eps=0.1)(x, y)


@pytest.mark.parametrize("build", [
    lambda m: FGSM(m, eps=float("inf")), lambda m: APGD(m, eps=float("inf")),
    lambda m: APGDT(m, eps=float("inf"), norm="l2"), lambda m: Square(m, eps=float("inf"), norm="l2"),
    lambda m: MD(m, eps=float("inf")), lambda m: SmoothedPGD(m, eps=float("inf")),
], ids=["fgsm", "apgd", "apgdt-l2", "square-l2", "md", "smoothed-pgd"])
def test_eps_inf_is_refused_where_the_attack_derives_its_steps_from_eps(build):
    """eps = inf gave NaN points (Square L2's scale, APGD's 2 eps step with per-channel bounds):
    refused when the attack is built, naming eps."""
    with pytest.raises(ValueError, match="eps must be finite for"):
        build(small_cnn())


def test_eps_inf_is_refused_by_evaluate_and_autoattack_and_a_finite_eps_past_float32_by_every_attack():
    """evaluate's suite and AutoAttack derive their steps from eps: refused up front (autoattack
    returned 0% without error when no point was classified right); a finite eps past float32's
    largest failed in a tensor conversion that named nothing."""
    model, data = small_cnn(), (torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    with pytest.raises(ValueError, match="eps must be finite for evaluate"):
        evaluate(model, data, eps=float("inf"), attacks=("pgd",), checks=False, progress=False)
    with pytest.raises(ValueError, match="eps must be finite for autoattack"):
        autoattack(model, data, eps=float("inf"), version="fast", progress=False)
    for build in (lambda: PGD(model, eps=1e39, alpha=0.1), lambda: CW(model, eps=1e308),
                  lambda: APGD(model, eps=3.5e38)):
        with pytest.raises(ValueError, match="eps must be inf .* or at most float32's largest"):
            build()


def test_a_point_of_another_shape_or_dtype_is_refused_by_name():
    class Wide(PGD):  # a subclass whose perturb returns float64 for float32 x
        def perturb(self, ctx, x, y, target):
            return x.double()

    class Doubled(PGD):  # ... or both copies of an EOT batch
        def perturb(self, ctx, x, y, target):
            return torch.cat([x, x])

    x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 10, (2,))
    with pytest.raises(RuntimeError, match=r"Wide returned \[2, 1, 8, 8\] torch.float64 on cpu for x of .*float32"):
        Wide(small_cnn(), eps=0.1)(x, y)
    with pytest.raises(RuntimeError, match=r"Doubled returned \[4, 1, 8, 8\] .*x's shape, dtype and device"):
        Doubled(small_cnn(), eps=0.1)(x, y)


def test_eps_inf_runs_where_the_attack_can_use_it():
    """PGD with its own alpha, Square in Linf and CW / FAB (minimum-norm) take an unbounded ball."""
    x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 10, (2,))
    for attack in (PGD(small_cnn(), eps=float("inf"), alpha=0.1, steps=2, random_start=False),
                   Square(small_cnn(), eps=float("inf"), n_queries=3), CW(small_cnn(), steps=2, binary_search_steps=1)):
        assert torch.isfinite(attack(x, y)).all()


def test_an_attack_of_the_users_that_leaves_the_ball_is_refused_by_name():
    class Sloppy(PGD):  # a subclass whose perturb forgets to project
        def perturb(self, ctx, x, y, target):
            return (x + 0.5).clamp(0, 1)

    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with pytest.raises(RuntimeError, match="Sloppy returned 4 of 4 points outside the eps-ball"):
        Sloppy(small_cnn(), eps=0.1)(x, y)
