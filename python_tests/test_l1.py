"""The L1 threat model: the joint ball-and-box projection against a brute-force solver and its
defining inequality; APGD-L1, FAB-L1 and Square-L1 against a linear model's exact minimal L1
distance (with the box); AutoAttack's L1 standard set; the attacks that have no L1 version refuse
it by name; and, where fra31/auto-attack is importable (test-only), the same figures as the
original on a trained model."""

import copy

import pytest
import torch
from torch import nn

from robustkernels.attacks import APGD, APGDT, FAB, PGD, Square
from robustkernels.eval import autoattack, evaluate
from robustkernels.ops import pgd_step, project_l1

from .models import trained_digits_cnn


def _feasible(x_nat, eps, n, generator):
    """n random points of {||z - x_nat||_1 <= eps, 0 <= z <= 1}: projections of random points,
    and mixtures of them (the set is convex)."""
    pts = [project_l1(x_nat + 2 * torch.randn(x_nat.shape, generator=generator, dtype=x_nat.dtype), x_nat, eps=eps)
           for _ in range(n)]
    mixes = [0.5 * (a + b) for a, b in zip(pts, pts[1:])]
    return pts + mixes + [x_nat]


@pytest.mark.parametrize("dim", [1, 5, 37])
def test_projection_is_the_nearest_point_of_the_ball_and_box(dim):
    """p = P(x) iff p is feasible and <x - p, z - p> <= 0 for every feasible z."""
    g = torch.Generator().manual_seed(dim)
    for _ in range(10):
        x_nat = torch.rand(3, dim, generator=g, dtype=torch.float64)
        x = x_nat + torch.randn(3, dim, generator=g, dtype=torch.float64)
        eps = torch.rand(3, generator=g, dtype=torch.float64) * dim / 3
        p = project_l1(x, x_nat, eps=eps)
        assert ((p - x_nat).abs().sum(1) <= eps * (1 + 1e-12) + 1e-12).all()
        assert ((p >= 0) & (p <= 1)).all()
        for z in _feasible(x_nat, eps, 8, g):
            assert (((x - p) * (z - p)).sum(1) <= 1e-9).all()
        assert torch.allclose(project_l1(p, x_nat, eps=eps), p, atol=1e-12)  # idempotent


def test_projection_matches_a_brute_force_solver():
    optimize = pytest.importorskip("scipy.optimize")
    import numpy as np

    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    for _ in range(12):
        x_nat = torch.rand(1, 6, generator=g, dtype=torch.float64)
        x = x_nat + torch.randn(1, 6, generator=g, dtype=torch.float64)
        eps = float(torch.rand((), generator=g)) * 1.5
        p = project_l1(x, x_nat, eps=eps)[0].numpy()
        xv, nv = x[0].numpy(), x_nat[0].numpy()
        starts = [np.clip(nv + 0.01 * rng.standard_normal(6), 0, 1) for _ in range(4)]
        best = min((optimize.minimize(lambda z: ((z - xv) ** 2).sum(), start,
                                      bounds=[(0, 1)] * 6, method="SLSQP", options={"ftol": 1e-13, "maxiter": 500},
                                      constraints=[{"type": "ineq", "fun": lambda z: eps - np.abs(z - nv).sum()}])
                    for start in starts), key=lambda r: r.fun)
        # no point the solver found is nearer (up to its own feasibility tolerance)
        assert ((p - xv) ** 2).sum() <= best.fun * (1 + 1e-6) + 1e-7
        assert np.abs(p - best.x).max() < 1e-3


def test_projection_edge_cases_and_layouts():
    x_nat = torch.rand(4, 3, 5, 5)
    x = x_nat + torch.randn(4, 3, 5, 5)
    assert torch.equal(project_l1(x, x_nat, eps=0.0), x_nat)
    assert torch.allclose(project_l1(x, x_nat, eps=float("inf")), x.clamp(0, 1))
    lo, hi = torch.tensor([0.0, -1.0, 0.2]), torch.tensor([1.0, 2.0, 0.9])
    x_nat = torch.max(torch.min(x_nat, hi.view(1, 3, 1, 1)), lo.view(1, 3, 1, 1))
    p = project_l1(x, x_nat, eps=torch.tensor([0.5, 1.0, 2.0, 3.0]), bounds=(lo, hi))
    assert ((p >= lo.view(1, 3, 1, 1) - 1e-7) & (p <= hi.view(1, 3, 1, 1) + 1e-7)).all()
    assert ((p - x_nat).abs().flatten(1).sum(1) <= torch.tensor([0.5, 1.0, 2.0, 3.0]) * (1 + 1e-6)).all()
    channels_last = project_l1(x.to(memory_format=torch.channels_last), x_nat, eps=1.0, bounds=(lo, hi))
    assert torch.allclose(channels_last, project_l1(x, x_nat, eps=1.0, bounds=(lo, hi)))
    assert project_l1(x.bfloat16(), x_nat.bfloat16(), eps=1.0).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="eps must be"):
        project_l1(x, x_nat, eps=-1.0)


def test_projection_equals_the_originals_where_importable():
    original = pytest.importorskip("autoattack.autopgd_base", reason="fra31/auto-attack is not installed (test-only)")
    g = torch.Generator().manual_seed(3)
    x_nat = torch.rand(16, 1, 8, 8, generator=g)
    delta = torch.randn(16, 1, 8, 8, generator=g)
    theirs = x_nat + delta + original.L1_projection(x_nat, delta, 3.0)
    assert torch.allclose(project_l1(x_nat + delta, x_nat, eps=3.0), theirs, atol=2e-5)


class _Linear(nn.Module):
    def __init__(self, d=64, k=5):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _minimal_l1(model, x, y):
    """The exact minimal L1 distance to another class of a linear model inside [0, 1]: for each
    class, move the coordinates with the largest weight difference first, each up to its box
    limit (a fractional knapsack)."""
    w, b = model.fc.weight.detach().double(), model.fc.bias.detach().double()
    flat = x.flatten(1).double()
    z = flat @ w.t() + b  # no graph: the weights are detached
    out = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for i in range(len(x)):
        for j in range(w.shape[0]):
            if j == int(y[i]):
                continue
            need, dw = float(z[i, y[i]] - z[i, j]), w[y[i]] - w[j]
            room = torch.where(dw > 0, flat[i], 1 - flat[i])
            dist = 0.0
            for k in dw.abs().argsort(descending=True).tolist():
                gain = float(dw[k].abs() * room[k])
                if gain >= need:
                    dist, need = dist + need / float(dw[k].abs()), 0.0
                    break
                dist, need = dist + float(room[k]), need - gain
            if need <= 1e-12:
                out[i] = min(out[i], dist)
    return out


@pytest.fixture(scope="module")
def linear_case():
    model = _Linear().eval()
    x = torch.rand(120, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    distance = _minimal_l1(model, x, y)
    return model, x, y, distance, float(distance.median())


@pytest.mark.parametrize("make", [
    lambda m, eps: APGD(m, eps=eps, norm="l1", steps=100, early_stop=True),
    lambda m, eps: APGD(m, eps=eps, norm="l1", steps=100, use_largereps=True, restarts=3),
    lambda m, eps: APGDT(m, eps=eps, norm="l1", steps=100, n_target_classes=4, use_largereps=True),
    lambda m, eps: FAB(m, eps=eps, norm="l1", steps=100),
    lambda m, eps: Square(m, eps=eps, norm="l1", n_queries=1500),
], ids=["apgd", "apgd-largereps", "apgd-t", "fab", "square"])
def test_l1_attacks_against_the_exact_distance(make, linear_case):
    model, x, y, distance, eps = linear_case
    attack = make(model, eps)
    attack.generator.manual_seed(0)
    adv = attack(x, y)
    assert ((adv >= 0) & (adv <= 1)).all()
    assert ((adv - x).flatten(1).abs().sum(1) <= eps * (1 + 1e-5)).all()
    with torch.no_grad():
        fooled = model(adv).argmax(1) != y
    assert not fooled[distance > eps * (1 + 1e-4)].any()  # beyond the exact distance: impossible
    close = distance < eps / 2
    assert close.sum() >= 10 and fooled[close].float().mean() >= (0.99 if isinstance(attack, FAB) else 0.6)
    if isinstance(attack, FAB):  # FAB is exact on a linear model: every reachable point falls
        assert fooled[distance < eps * 0.999].all()


def test_attacks_without_an_l1_version_refuse_it_by_name():
    model = _Linear()
    with pytest.raises(ValueError, match="for PGD"):
        PGD(model, eps=1.0, norm="l1")
    with pytest.raises(ValueError, match="use_largereps is the L1 schedule"):
        APGD(model, eps=1.0, norm="linf", use_largereps=True)
    x = torch.rand(2, 64)
    with pytest.raises(ValueError, match="pgd_step"):
        pgd_step(x, x, x, step=0.1, eps=1.0, norm="l1")
    with pytest.raises(ValueError, match="evaluate"):
        evaluate(model, (x, torch.zeros(2, dtype=torch.long)), eps=1.0, norm="l1", progress=False)


def test_autoattack_standard_in_l1_runs_the_originals_l1_set():
    model, x, y = trained_digits_cnn()
    report = autoattack(model, (x[:40], y[:40]), eps=2.0, norm="l1", steps=10, n_queries=100, seed=0,
                        progress=False)
    assert report.attacks == ["apgd-ce", "apgd-t", "fab-t", "square"] and report.norm == "l1"
    assert report.robust_accuracy.mean <= report.robust_after[0] <= report.clean_accuracy.mean


def test_autoattack_l1_agrees_with_the_original_sample_by_sample():
    original = pytest.importorskip("autoattack", reason="fra31/auto-attack is not installed (test-only)")
    model, x, y = trained_digits_cnn()
    x, y = x[:200], y[:200]
    ours = autoattack(model, (x, y), eps=2.0, norm="l1", seed=0, progress=False)
    # a copy: the original leaves parameter .grad on the model it attacks, and this one is cached and shared
    aa = original.AutoAttack(copy.deepcopy(model), norm="L1", eps=2.0, version="standard", device="cpu", seed=0,
                             verbose=False)
    adv = aa.run_standard_evaluation(x, y, bs=250)
    with torch.no_grad():
        theirs = model(adv).argmax(1) == y
    agree = (torch.tensor(ours.robust) == theirs).float().mean()
    assert abs(ours.robust_accuracy.mean - float(theirs.float().mean())) <= 0.02 and agree >= 0.97


class _UserNet(nn.Module):
    """A user module with its own forward: a residual block, BatchNorm, reflect padding, GELU."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 6, 3, padding=1, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6 * 64, 10)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.bn(self.conv(x)))
        return self.head((h + self.conv(x)).flatten(1))


def test_l1_fast_and_evaluate_on_a_users_model_leave_it_as_it_was():
    model = _UserNet().train()
    calls = []
    model.conv.register_forward_hook(lambda m, a, o: calls.append(1))
    x = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 10, (24,), generator=torch.Generator().manual_seed(3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for version in ("standard", "fast"):
        report = autoattack(model, (x, y), eps=1.0, norm="l1", version=version, steps=5, n_queries=20, seed=0,
                            progress=False)
        assert len(report.robust) == 24 and report.robust_accuracy.mean <= report.clean_accuracy.mean
    evaluate(model, (x, y), eps=0.1, attacks=("fgsm", "apgd-ce"), steps={"apgd": 5}, check_samples=8,
             corruptions=("contrast",), progress=False)
    assert model.training and calls  # mode restored, the user's hook ran
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BatchNorm stats untouched
