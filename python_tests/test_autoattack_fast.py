"""``autoattack(version="fast")``: APGD-CE (50 iterations), APGD-T on 2 targets ranked at APGD-CE's
end points (100 iterations on the first, 50 on the second), a
Square guard on the share of the survivors nearest to the boundary, and smoothed PGD on every
survivor (in L2 / L1 APGD-DLR, only on batches where the guard fooled a point) - close to standard, said
plainly in the report and the log; and ``fit(val_attack="autoattack-fast", keep="best-robust")`` keeping the
weights of the best validation robust accuracy. Speed and the gap to standard are measured in
``robustkernels bench --ops autoattack``, not asserted here."""

import dataclasses
import importlib
import math

import pytest
import torch

from robustkernels.data import load_digits
from robustkernels.eval import AutoAttackReport, Stat, aa_versions, autoattack, suite
from robustkernels.eval.aa_versions import version_for
from robustkernels.threat import ThreatModel
from robustkernels.train import fit, make_method
from robustkernels.train.checkpoint import load

from .models import small_cnn, trained_digits_cnn

_ROW = version_for("fast", "linf")
FAST_LINF = dict(not_autoattack=_ROW.not_autoattack, measured=_ROW.measured)


def stage(norm: str, name: str):
    """fast's stage ``name`` in ``norm``, from the version table."""
    return next(s for s in version_for("fast", norm).stages if s.name == name)


def build(norm: str, name: str, model, threat, **options):
    return suite.autoattack_attack(stage(norm, name), model, threat, generator=torch.Generator(), **options)


def test_fast_is_standards_first_attacks_shorter_on_fewer_targets_and_says_so():
    model, x, y = trained_digits_cnn()
    data = (x[:150], y[:150])
    fast = autoattack(model, data, eps=0.1, version="fast", seed=0, progress=False)
    standard = autoattack(model, data, eps=0.1, version="standard", seed=0, progress=False)
    assert fast.attacks == ["apgd-ce", "apgd-t", "square", "smoothed-pgd"] and fast.version == "fast"
    assert fast.attacked["apgd-ce"] == standard.attacked["apgd-ce"]  # every clean-correct point
    assert fast.attacked["apgd-t"] == round(fast.robust_after[0] * 150)  # APGD-CE's survivors
    threat = ThreatModel.build(0.1, "linf", (0.0, 1.0), None)
    ce, t = (build("linf", n, model, threat) for n in ("apgd-ce", "apgd-t"))
    assert (ce.loss, ce.steps) == ("ce", 50)
    assert (t.n_target_classes, t.first_target_steps, t.steps) == (2, 100, 50)
    assert fast.not_autoattack == version_for("fast", "linf").not_autoattack  # the report quotes its row
    for norm, eps in (("l2", 1.0), ("l1", 5.0)):  # the same change measured further from standard there
        other = ThreatModel.build(eps, norm, (0.0, 1.0), None)
        ce, t = (build(norm, n, model, other) for n in ("apgd-ce", "apgd-t"))
        assert (ce.steps, t.n_target_classes, t.first_target_steps, t.steps) == (100, 3, 50, 50)
        row = version_for("fast", norm)
        report = autoattack(model, (x[:20], y[:20]), eps=eps, norm=norm, version="fast", seed=0, progress=False,
                            steps=2, n_queries=2)
        text = report.log() + report.to_markdown()
        assert row.measured in text and version_for("fast", "linf").measured not in text
        assert "smoothed PGD on every survivor" not in text
        # the report says what ran: the run's steps=2 and n_queries=2 cap the version's lengths
        assert row.not_autoattack not in text and row.described(2, 2, 9) in text
        assert "APGD-CE (2 iterations)" in text and "Square (2 queries)" in text
        assert "at the version's own lengths: this run's are shorter" in text
    short = build("linf", "apgd-t", model, threat, steps=20)
    assert (short.first_target_steps, short.steps) == (20, 20)  # autoattack(steps=...) caps both
    survivors = round(fast.robust_after[1] * 150)
    assert fast.attacked["square"] == math.ceil(stage("linf", "square").share * survivors)  # the guard: a share
    assert abs(fast.robust_accuracy.mean - standard.robust_accuracy.mean) <= 2 / 150
    text, log = fast.to_markdown(), fast.log()
    assert "NOT AutoAttack standard" in text and "NOT AutoAttack standard" in log
    assert "measured against standard" in text and "AutoAttack robust accuracy" not in text


def test_fast_says_to_run_standard_when_its_guard_finds_masking():
    """Where the Square guard or smoothed PGD fools points the attacks before it did not (the
    masking signs), fast's figure may be above standard's: the report says to run standard; where
    neither fools any, not."""
    names = ["apgd-ce", "apgd-t", "square", "smoothed-pgd"]
    masked = AutoAttackReport("fast", "linf", 0.3, 500, names, Stat(0.9), [0.4, 0.33, 0.32, 0.32], Stat(0.32), {}, {},
                              **FAST_LINF)
    clean = AutoAttackReport("fast", "linf", 0.3, 500, names, Stat(0.9), [0.4, 0.33, 0.33, 0.33], Stat(0.33), {}, {},
                             **FAST_LINF)
    assert any("run version='standard'" in w for w in masked.warnings())
    assert "run version='standard'" in masked.log() and "run version='standard'" in masked.to_markdown()
    assert not any("standard" in w for w in clean.warnings())
    smoothed = AutoAttackReport("fast", "linf", 0.3, 500, names, Stat(0.9), [0.4, 0.33, 0.33, 0.31], Stat(0.31), {},
                                {}, **FAST_LINF)  # the guard fooled none, smoothed PGD 2% more: the masking sign too
    assert any("smoothed PGD" in w and "gradient masking" in w for w in smoothed.warnings())
    assert "run version='standard'" in smoothed.log()
    as_standard = AutoAttackReport("standard", "linf", 0.3, 500, names[:3], Stat(0.9), [0.4, 0.33, 0.32], Stat(0.32),
                                   {}, {})
    assert not any("run version='standard'" in w for w in as_standard.warnings())


def test_fast_in_l1_and_on_a_dict_loader():
    model, x, y = trained_digits_cnn()
    loader = torch.utils.data.DataLoader([{"image": a, "label": b} for a, b in zip(x[:40], y[:40])], batch_size=16)
    report = autoattack(model, loader, eps=2.0, norm="l1", version="fast", seed=0, progress=False)
    assert report.norm == "l1" and report.n_samples == 40
    assert report.attacks == ["apgd-ce", "apgd-t", "square", "apgd-dlr"]  # smoothed PGD's signed steps: Linf
    assert report.robust_accuracy.mean <= report.clean_accuracy.mean


def _digits():
    x, y, xt, yt = load_digits()
    return (x, y), (xt[:80], yt[:80])


def test_fit_keeps_the_best_robust_epoch(tmp_path):
    train, val = _digits()
    torch.manual_seed(0)
    model = small_cnn()
    history = fit(model, make_method("pgd_at", eps=0.1, steps=3), train, val_data=val, epochs=3, batch_size=64,
                  lr=3e-3, optimizer="adam", val_attack="autoattack-fast", keep="best-robust", progress=False,
                  checkpoint_path=tmp_path / "ck.pt")
    scores = [r["val_fast_acc"] for r in history]
    kept = [r["epoch"] for r in history if r["kept"]]
    assert kept == [1 + max(range(len(scores)), key=lambda i: (scores[i], -i))]  # the first best epoch
    state = load(tmp_path / "ck.pt")
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())  # checkpoint = kept
    again = autoattack(model, val, eps=0.1, version="fast", batch_size=64, progress=False, seed=0)
    assert abs(again.robust_accuracy.mean - max(scores)) <= 0.05  # the kept weights score as recorded


def test_keep_and_val_attack_need_validation_data_and_known_names():
    train, val = _digits()
    method = make_method("standard")
    with pytest.raises(ValueError, match="need val_data"):
        fit(small_cnn(), method, train, keep="best-robust", progress=False)
    with pytest.raises(ValueError, match="val_attack must be one of"):
        fit(small_cnn(), method, train, val_data=val, val_attack="autoattack", progress=False)
    with pytest.raises(ValueError, match="keep must be one of"):
        fit(small_cnn(), method, train, val_data=val, keep="best", progress=False)


def test_rank_at_ranks_on_the_given_points_for_one_call(monkeypatch):
    from robustkernels.attacks import APGDT
    from robustkernels.attacks.oracle import Oracle

    model, x, y = trained_digits_cnn()
    x, y = x[:8], y[:8]
    attack = APGDT(model, eps=0.05, steps=2, n_target_classes=2)
    seen = []
    original = Oracle.ranked_class
    monkeypatch.setattr(Oracle, "ranked_class",
                        lambda self, at, rank: seen.append(at.clone()) or original(self, at, rank))
    points = (x + 0.3).clamp(0, 1)
    attack(x, y, rank_at=points)
    assert torch.equal(seen[0], points)  # the first target rank, on every sample
    seen.clear()
    attack(x, y)  # the next call ranks at the clean inputs again
    assert torch.equal(seen[0], x)
    with pytest.raises(ValueError, match="rank_at must be a tensor of x's shape"):
        attack(x, y, rank_at=points[:3])


def test_the_guard_attacks_the_survivors_nearest_to_falling(monkeypatch):
    aa = importlib.import_module("robustkernels.eval.autoattack")  # the module (eval exports the function)
    seen, build = {}, aa.autoattack_attack

    class Spy:  # records what each attack of the cascade was given and returned
        def __init__(self, attack, name):
            self.attack, self.name = attack, name

        def __call__(self, x, y, rank_at=None):
            seen[self.name] = (x, y, self.attack(x, y, rank_at=rank_at))
            return seen[self.name][2]

    monkeypatch.setattr(aa, "autoattack_attack", lambda st, *a, **k: Spy(build(st, *a, **k), st.name))
    model, x, y = trained_digits_cnn()
    autoattack(model, (x[:150], y[:150]), eps=0.1, version="fast", seed=0, progress=False)
    x_t, y_t, out = seen["apgd-t"]
    with torch.no_grad():
        logits = model(out)
    others = logits.masked_fill(torch.nn.functional.one_hot(y_t, 10).bool(), float("-inf")).amax(1)
    margin = logits.gather(1, y_t[:, None]).squeeze(1) - others
    alive = (margin > 0).nonzero().squeeze(1)
    k = math.ceil(stage("linf", "square").share * len(alive))
    nearest = set(alive[margin[alive].argsort()[:k]].tolist())
    guarded = [int((x_t == row).flatten(1).all(1).nonzero()[0]) for row in seen["square"][0]]
    assert len(guarded) == k and set(guarded) == nearest


class _Blind:
    """An attack that returns its inputs unchanged: fools nothing."""

    def __call__(self, x, y, rank_at=None):
        return x.clone()


def test_the_last_stage_runs_on_every_survivor_in_linf_and_follows_the_guard_in_l2(monkeypatch):
    """Linf: smoothed PGD (25 steps, 2 draws, sigma eps / 2) on every survivor of the guard,
    whether the guard fooled a point or not. L2: APGD-DLR (4 x 25 from uniform starts) only on a
    batch where the guard fooled a point, and not at all where it fooled none."""
    aa = importlib.import_module("robustkernels.eval.autoattack")
    build, built = aa.autoattack_attack, {}

    def spy(st, *args, **kwargs):
        built[st.name] = build(st, *args, **kwargs)
        return _Blind() if st.name == "square" and blind else built[st.name]

    monkeypatch.setattr(aa, "autoattack_attack", spy)
    model, x, y = trained_digits_cnn()
    data = (x[:150], y[:150])
    blind = True  # the guard fools nothing
    linf = autoattack(model, data, eps=0.1, version="fast", seed=0, progress=False, batch_size=150)
    assert linf.attacked["smoothed-pgd"] == round(linf.robust_after[2] * 150) > 0
    smoothed = built["smoothed-pgd"]
    assert (smoothed.steps, smoothed.draws, smoothed.sigma) == (25, 2, 0.05)
    quiet = autoattack(model, data, eps=0.7, norm="l2", version="fast", seed=0, progress=False, batch_size=150)
    assert quiet.attacked["apgd-dlr"] == 0 and "apgd-dlr" not in built
    blind = False
    row = aa_versions.TABLE[("fast", "l2")]  # make the trigger fire on this model: wait for APGD-T instead
    stages = row.stages[:-1] + (dataclasses.replace(row.stages[-1], after="apgd-t"),)
    monkeypatch.setitem(aa_versions.TABLE, ("fast", "l2"), dataclasses.replace(row, stages=stages))
    fired = autoattack(model, data, eps=0.7, norm="l2", version="fast", seed=0, progress=False, batch_size=150)
    assert fired.robust_after[1] < fired.robust_after[0]  # APGD-T fooled a point: the runs are due
    assert fired.attacked["apgd-dlr"] == round(fired.robust_after[2] * 150)  # every survivor of the guard
    assert (built["apgd-dlr"].restarts, built["apgd-dlr"].steps) == (4, 25)


@pytest.mark.parametrize("steps", [1, 2, 7])
def test_the_last_stage_scales_with_fewer_steps(steps):
    """autoattack(steps=...) shortens fast's smoothed PGD too (at most 25 steps)."""
    model, x, y = trained_digits_cnn()
    report = autoattack(model, (x[:60], y[:60]), eps=0.1, version="fast", steps=steps, seed=0, progress=False)
    assert report.attacked["smoothed-pgd"] == round(report.robust_after[2] * 60) > 0
    threat = ThreatModel.build(0.1, "linf", (0.0, 1.0), None)
    smoothed = build("linf", "smoothed-pgd", model, threat, steps=steps)
    assert smoothed.steps == min(steps, 25)
