"""AutoAttack: FAB and APGD-T against known answers, the cascade, the cost levers (active set,
batched EOT, streaming, processes) keeping results, and the argument contract."""

import sys

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from robustkernels.attacks import APGD, APGDT, CW, FAB, PGD, Square, objective
from robustkernels.attacks.context import Context
from robustkernels.attacks.fab import project_onto_hyperplane, solve_breakpoints
from robustkernels.eval import autoattack

from .dist_worker import autoattack_rank, autoattack_small
from .models import trained_digits_cnn

EPS = 0.1


@pytest.fixture(scope="module")
def trained():
    return trained_digits_cnn()


def linear_model(d=20, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.normal_()
        lin.bias.copy_(torch.tensor([0.0, -0.5 * float((lin.weight[1] - lin.weight[0]).sum())]))  # through the centre
    x = torch.rand(64, d) * 0.2 + 0.4  # at least 0.4 from the box's faces
    return lin, x, lin(x).argmax(1)


@pytest.mark.parametrize("norm,q", [("linf", 1), ("l2", 2)])
def test_fab_finds_the_exact_minimal_distance_of_a_linear_model(norm, q):
    lin, x, y = linear_model()
    w, b = lin.weight[1] - lin.weight[0], lin.bias[1] - lin.bias[0]
    exact = (x @ w + b).abs() / w.norm(p=q)
    assert exact.max() < 0.4  # so the closest boundary point lies inside the box
    adv = FAB(lin, eps=10.0, norm=norm, steps=100)(x, y)
    assert (lin(adv).argmax(1) != y).all()
    dist = (adv - x).abs().amax(1) if norm == "linf" else (adv - x).norm(dim=1)
    assert (dist >= exact * (1 - 1e-4)).all(), "closer than the exact minimum: the distance is wrong"
    assert (dist <= exact * 1.01).all(), (dist / exact).max()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_counts_successes_within_eps_only(norm):
    lin, x, y = linear_model()
    w, b = lin.weight[1] - lin.weight[0], lin.bias[1] - lin.bias[0]
    exact = (x @ w + b).abs() / w.norm(p=1 if norm == "linf" else 2)
    eps = float(exact.median().detach())
    adv = FAB(lin, eps=eps, norm=norm, steps=100, early_stop=True)(x, y)
    fooled = lin(adv).argmax(1) != y
    assert torch.equal(adv[~fooled], x[~fooled])  # not fooled within eps: x itself
    assert (fooled == (exact * 1.01 <= eps)).float().mean() > 0.9
    assert ((adv - x).abs().amax(1) if norm == "linf" else (adv - x).norm(dim=1)).max() <= eps * (1 + 1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_projection_is_minimal_and_in_the_box(norm):
    torch.manual_seed(1)
    t, w = torch.rand(50, 7), torch.randn(50, 7)
    b = (w * torch.rand(50, 7)).sum(1)  # a plane through a point of the box: reachable
    d = project_onto_hyperplane(t, w, b, torch.zeros(1, 7), torch.ones(1, 7), norm)
    torch.testing.assert_close((w * (t + d)).sum(1), b, atol=1e-4, rtol=1e-4)
    assert ((t + d) >= -1e-6).all() and ((t + d) <= 1 + 1e-6).all()
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    for _ in range(200):  # no random feasible point of the plane in the box is closer
        z = torch.rand(50, 7)
        z = z + (b - (w * z).sum(1))[:, None] * w / (w * w).sum(1, keepdim=True)
        ok = ((z >= 0) & (z <= 1)).all(1)
        other = (z - t).abs().amax(1) if norm == "linf" else (z - t).norm(dim=1)
        assert (size[ok] <= other[ok] + 1e-5).all()


def _breakpoints(rows, dim, seed):
    """Random f(lam) = sum_i min(lam g_i, h_i) problems: zero weights, need = 0, unreachable rows."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.rand(rows, dim, generator=gen) * (torch.rand(rows, dim, generator=gen) > 0.2)
    breaks = torch.rand(rows, dim, generator=gen)
    h = breaks * g
    need = h.sum(1, keepdim=True) * torch.rand(rows, 1, generator=gen) * 1.3  # some beyond the total
    need[0], need[1] = 0.0, h[1].sum() * 1.5
    return breaks, g, h, need


def _sorted_solution(breaks, g, h, need):
    """The same lam, the slow way: f evaluated at every breakpoint, then the linear piece."""
    lam = torch.full_like(need, float("inf"))
    for r in range(len(need)):
        points = torch.cat([torch.zeros(1, dtype=torch.float64), breaks[r].double().sort().values])
        f = torch.minimum(points[:, None] * g[r].double(), h[r].double()).sum(1)
        k = int((f < need[r].double()).sum())
        if k < len(points):
            lo = points[k - 1] if k > 0 else points[0]
            slope = (g[r].double() * (breaks[r].double() > lo)).sum()
            lam[r] = float(lo + (need[r].double() - f[k - 1 if k > 0 else 0]) / slope) if k > 0 else 0.0
    return lam


@pytest.mark.parametrize("rows,dim", [(40, 7), (9, 784), (3, 3072)])
@pytest.mark.parametrize("max_newton", [16, 1])  # 1: most rows take the sorted fallback
def test_breakpoint_solver_matches_the_sorted_way(rows, dim, max_newton):
    breaks, g, h, need = _breakpoints(rows, dim, seed=rows + dim)
    lam = solve_breakpoints(breaks, g, h, need, max_newton=max_newton)
    expected = _sorted_solution(breaks, g, h, need)
    assert torch.equal(lam.isinf(), expected.isinf()) and lam.isinf().any() and lam[0].item() == 0.0
    finite = expected.isfinite()
    torch.testing.assert_close(lam[finite], expected[finite], rtol=1e-4, atol=1e-6)
    reached = torch.minimum(lam * g, h).sum(1, keepdim=True)
    torch.testing.assert_close(reached[finite], need[finite], rtol=1e-4, atol=1e-5)


class _PrecisionFlip(nn.Module):
    """Class 0 in fp32, class 1 under autocast: a low-precision verdict fp32 does not share (as
    bf16 rounding gives near the boundary, made certain here)."""

    def forward(self, x):
        flip = torch.is_autocast_enabled(x.device.type)
        score = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([score, score + (0.1 if flip else -0.1)], dim=1)


def test_low_precision_success_needs_fp32_agreement():
    model, x, y = _PrecisionFlip(), torch.full((4, 1, 2, 2), 0.6), torch.zeros(4, dtype=torch.long)
    attack = APGD(model, eps=0.1, steps=5, autocast="bf16", early_stop=True)
    oracle = attack.oracle()
    with torch.no_grad():
        low = oracle.logits(x)
    assert (low.argmax(1) == 1).all() and (oracle.logits(x, fp32=True).argmax(1) == 0).all()
    assert not oracle.succeeded(low, y, None, x).any()  # fp32 disagrees: not fooled
    assert oracle.succeeded(low, y, None).all()  # without x there is nothing to check against
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    x_adv = attack(x, y)
    assert len(calls) > 5  # not stopped at the first (bf16-only) success
    assert (model(x_adv).argmax(1) == 0).all()
    square = Square(model, eps=0.1, n_queries=20, autocast="bf16")
    ctx = Context(square.threat, square.threat.prepare(x), square.oracle(), square.generator)
    with torch.no_grad():
        assert (square._margin(ctx, x, y, None) > 0).all()  # the fp32 margin: not fooled


def test_apgd_t_targets_and_loss_by_hand():
    logits = torch.tensor([[5.0, 1.0, 4.0, 3.0, 0.0], [0.0, 2.0, 1.0, 7.0, 6.0]])

    class Fixed(nn.Module):
        def forward(self, x):
            return logits[: x.shape[0]] + 0 * x.sum()

    attack = APGDT(Fixed(), eps=0.1, n_target_classes=3)
    x = torch.zeros(2, 3)
    assert attack.oracle().ranked_class(x, 2).tolist() == [2, 4]  # second-highest logit
    assert attack.oracle().ranked_class(x, 3).tolist() == [3, 1]
    y, t = torch.tensor([0, 3]), torch.tensor([2, 4])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expected = torch.tensor([-(5 - 4) / (5 - (3 + 1) / 2), -(7 - 6) / (7 - (2 + 1) / 2)])
    torch.testing.assert_close(objective("dlr-targeted", logits, y, t), expected)


def test_apgd_t_is_at_least_as_strong_as_apgd_ce(trained):
    model, x, y = trained
    x, y = x[:150], y[:150]
    ce = APGD(model, eps=EPS, steps=30)(x, y)
    targeted = APGDT(model, eps=EPS, steps=30, n_target_classes=3)(x, y)
    clean = model(x).argmax(1) == y
    acc = lambda adv: float((clean & (model(adv).argmax(1) == y)).float().mean())  # noqa: E731
    assert acc(targeted) <= acc(ce) + 0.02
    assert (targeted - x).abs().max() <= EPS + 1e-6


class CountingModel(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, []

    def forward(self, x):
        self.rows.append(x.shape[0])
        return self.model(x)


def test_the_cascade_attacks_only_points_still_robust(trained):
    model, x, y = trained
    report = autoattack(model, (x[:120], y[:120]), eps=EPS, seed=0, steps=20, n_queries=300, progress=False)
    n, clean = report.n_samples, report.clean_accuracy.mean
    attacked = [report.attacked[a] for a in report.attacks]
    before = [clean] + report.robust_after[:-1]
    assert attacked == [round(b * n) for b in before]  # each attack ran on the points left, no more
    assert all(a >= b for a, b in zip(report.robust_after, report.robust_after[1:]))
    assert report.robust_accuracy.mean == report.robust_after[-1] == sum(report.robust) / n
    assert report.robust_after[0] < clean  # the model is not robust at this eps


def test_aa_accuracy_is_the_per_sample_worst_case(trained):
    model, x, y = trained
    x, y = x[:80], y[:80]
    report = autoattack(model, (x, y), eps=EPS, seed=1, steps=20, n_queries=300, progress=False)
    robust = torch.tensor(report.robust)
    clean = model(x).argmax(1) == y
    assert not (robust & ~clean).any()
    for attack in (APGD(model, eps=EPS, steps=20), PGD(model, eps=EPS, alpha=EPS / 4, steps=20)):
        fooled = model(attack(x, y)).argmax(1) != y
        # a point some attack breaks for sure is not robust in AutoAttack's worst case (at most a
        # couple of borderline points may differ by random start)
        assert int((robust & fooled).sum()) <= 2


@pytest.mark.parametrize("attack", ["apgd", "pgd", "fab"])
def test_active_set_changes_cost_not_results(trained, attack):
    model, x, y = trained
    x, y = x[:100], y[:100]

    def run(active):
        counting = CountingModel(model)
        build = {"apgd": lambda: APGD(counting, eps=EPS, steps=30, early_stop=True, active_set=active,
                                      generator=torch.Generator().manual_seed(0)),
                 "pgd": lambda: PGD(counting, eps=EPS, alpha=EPS / 4, steps=20, early_stop=True, active_set=active,
                                    generator=torch.Generator().manual_seed(0)),
                 "fab": lambda: FAB(counting, eps=EPS, steps=30, targeted=True, n_target_classes=2, early_stop=True,
                                    active_set=active, generator=torch.Generator().manual_seed(0))}[attack]
        adv = build()(x, y)
        return adv, sum(counting.rows)

    on, rows_on = run(True)
    off, rows_off = run(False)
    fooled_on, fooled_off = model(on).argmax(1) != y, model(off).argmax(1) != y
    assert torch.equal(fooled_on, fooled_off)
    torch.testing.assert_close(on, off, rtol=0, atol=1e-6)
    assert rows_on < 0.9 * rows_off, (rows_on, rows_off)


class NoiseBank(nn.Module):
    """A 'stochastic' model whose noise for pass j and sample i is bank[j, i], however the passes
    are batched: the same draws for sequential and batched EOT."""

    def __init__(self, model, passes, batch):
        super().__init__()
        self.model, self.batch, self.calls = model, batch, 0
        self.bank = 0.05 * torch.randn(passes, batch, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        copies = x.shape[0] // self.batch
        noise = self.bank[self.calls: self.calls + copies].reshape(x.shape)
        self.calls += copies
        return self.model(x + noise)


def test_batched_eot_gives_the_sequential_gradient(trained):
    model, x, y = trained
    x, y = x[:30], y[:30]
    grads = []
    for batched in (False, True):
        bank = NoiseBank(model, 20, 30)
        attack = PGD(bank, eps=EPS, eot_iter=20, eot_batched=batched)
        loss, grad, logits = attack.oracle().loss_and_grad(x, y, None)
        grads.append((loss, grad, logits))
        assert bank.calls == 20
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert grads[0][1].abs().sum() > 0


class LazyDigits(torch.utils.data.Dataset):
    """A map-style dataset that records which items were read."""

    def __init__(self, x, y):
        self.x, self.y, self.read = x, y, []

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.read.append(i)
        return self.x[i], self.y[i]


def test_streams_a_dataset_in_batches(trained):
    model, x, y = trained
    data = LazyDigits(x[:300], y[:300])
    counting = CountingModel(model)
    seen_at_first_call = []
    original = counting.forward

    def forward(inp):
        if not seen_at_first_call:
            seen_at_first_call.append(len(data.read))
        return original(inp)

    counting.forward = forward
    loader = torch.utils.data.DataLoader(data, batch_size=50)
    rng = torch.get_rng_state()
    report = autoattack(counting, loader, eps=EPS, batch_size=25, seed=0, steps=5, n_queries=50, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert seen_at_first_call[0] <= 50  # the first batch is attacked before the rest is read
    assert max(counting.rows) <= 25 * 9  # at most a batch (FAB copies it once per class)
    assert report.n_samples == 300
    same = autoattack(model, (x[:300], y[:300]), eps=EPS, batch_size=25, seed=0, steps=5, n_queries=50,
                      progress=False)
    assert same.robust == report.robust


@pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32", reason="needs torch.distributed")
def test_two_gloo_processes_give_the_verdicts_of_one(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(autoattack_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    shared = torch.load(out, weights_only=True)
    single = autoattack_small().to_dict()
    assert shared["robust"] == single["robust"]
    assert shared["robust_after"] == single["robust_after"]
    assert shared["attacked"] == single["attacked"]


def test_stochastic_models_get_the_rand_version(trained):
    model, x, y = trained

    class Noisy(nn.Module):
        def forward(self, inp):
            return model(inp + 0.02 * torch.randn_like(inp))

    report = autoattack(Noisy(), (x[:40], y[:40]), eps=EPS, seed=0, steps=5, progress=False)
    assert report.version == "rand" and report.eot_iter == 20 and report.repeats == 5
    assert report.attacks == ["apgd-ce", "apgd-dlr"]
    assert report.robust_accuracy.runs == 5 and report.robust_accuracy.std >= 0
    # a point the cascade fooled stays fooled in every evaluation pass: never above its figure
    assert report.robust_accuracy.mean <= report.robust_after[-1] + 1e-9


def test_rand_figure_keeps_what_a_noisy_single_pass_broke(trained):
    """A very noisy model: the cascade fools points on one pass that re-evaluation passes would
    often classify correctly again; the reported figure must not win them back."""
    model, x, y = trained

    class VeryNoisy(nn.Module):
        def forward(self, inp):
            return model(inp + 0.3 * torch.randn_like(inp))

    report = autoattack(VeryNoisy(), (x[:60], y[:60]), eps=EPS, seed=0, steps=5, progress=False)
    assert report.robust_after[-1] < report.clean_accuracy.mean  # the cascade broke some points
    assert report.robust_accuracy.mean <= report.robust_after[-1] + 1e-9


def test_autocast_verdicts_are_fp32(trained):
    model, x, y = trained
    report = autoattack(model, (x[:60], y[:60]), eps=EPS, seed=0, steps=10, n_queries=100, autocast="bf16",
                        progress=False)
    assert report.autocast == "bf16"
    full = autoattack(model, (x[:60], y[:60]), eps=EPS, seed=0, steps=10, n_queries=100, progress=False)
    assert report.clean_accuracy.mean == full.clean_accuracy.mean  # the clean pass is fp32 either way
    assert abs(report.robust_accuracy.mean - full.robust_accuracy.mean) <= 0.1


@pytest.mark.parametrize("make,error,match", [
    (lambda m: Square(m, loss="ce"), ValueError, "loss"),
    (lambda m: Square(m, early_stop=False), ValueError, "early_stop"),
    (lambda m: CW(m, norm="linf"), ValueError, "norm"),
    (lambda m: CW(m, early_stop=True), ValueError, "early_stop"),
    (lambda m: FAB(m, eot_iter=3), ValueError, "eot_iter"),
    (lambda m: FAB(m, loss="ce"), ValueError, "loss"),
    (lambda m: APGDT(m, loss="ce"), ValueError, "loss"),
    (lambda m: APGD(m, loss="margin"), ValueError, "loss"),
    (lambda m: APGD(m, eps=-1.0), ValueError, "eps"),
    (lambda m: APGD(m, autocast="fp8"), ValueError, "autocast"),
    (lambda m: FAB(m, eps=float("inf"), restarts=2), ValueError, "eps"),
    (lambda m: autoattack(m, (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), eps=0.1, version="x"),
     ValueError, "version"),
    (lambda m: autoattack(m, (torch.rand(4, 1, 8, 8), torch.zeros(4)), eps=0.1), TypeError, "labels"),
    (lambda m: autoattack(m, [1, 2, 3], eps=0.1), TypeError, "data"),
    (lambda m: autoattack(m, (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)), eps=0.1, batch_size=0),
     ValueError, "batch_size"),
])
def test_contract_errors(trained, make, error, match):
    with pytest.raises(error, match=match):
        make(trained[0])


@pytest.mark.parametrize("make", [
    lambda m: APGD(m, eps=EPS, steps=10), lambda m: APGDT(m, eps=EPS, steps=5, n_target_classes=2),
    lambda m: FAB(m, eps=EPS, steps=10), lambda m: FAB(m, eps=EPS, norm="l2", steps=10, targeted=True),
    lambda m: Square(m, eps=EPS, n_queries=30), lambda m: PGD(m, eps=EPS, steps=3, early_stop=True),
])
def test_every_attack_stays_in_the_threat_model_and_leaves_inputs(trained, make):
    model, x, y = trained
    x, y = x[:40], y[:40]
    before = x.clone()
    attack = make(model)
    adv = attack(x, y)
    assert torch.equal(x, before) and adv.shape == x.shape and adv.dtype == x.dtype
    dist = (adv - x).abs().flatten(1).amax(1) if attack.norm == "linf" else (adv - x).flatten(1).norm(dim=1)
    assert (dist <= attack.eps * (1 + 1e-5) + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1
