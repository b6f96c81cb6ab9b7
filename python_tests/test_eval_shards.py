"""``evaluate`` in shards: ``evaluate(..., shard=(K, N), state_path=...)`` attacks every N-th batch
(shard 0 also the first samples, for the masking checks and the examples) and
``merge_eval_shards`` gives the unsharded run's report - per-sample verdicts, accuracies, worst
case, checks, curves, examples and the AutoAttack part - equal but for the timings; a shard
stopped mid-run and resumed merges the same; files of other runs, missing, repeated or unfinished
shards are refused by name."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from robustkernels.eval import AutoAttackOptions, evaluate, merge_eval_shards

from .killing import Stop, kill_after, stopping_at


class Noisy(nn.Module):
    """A stochastic model: Gaussian noise on its hidden layer at every call (drawn from the global RNG)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        h = self.body(x)
        return self.head(h + 0.05 * torch.randn_like(h))


def _model(seed=0, noisy=False):
    torch.manual_seed(seed)
    return Noisy() if noisy else nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


@pytest.fixture(scope="module")
def data():
    model = _model()
    x = torch.rand(21, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::5] = (y[::5] + 1) % 10  # some clean mistakes too
    return x, y


# short attacks; check_samples 6 spans batches 0 and 1, so shard 0 attacks a batch of shard 1's for the checks
SETTINGS = dict(eps=0.05, batch_size=4, progress=False, autocast=None, channels_last=False, attacks=("fgsm", "pgd"),
                steps={"pgd": 5}, check_samples=6, examples=5, curve_eps=(0.5, 1.0, 2.0))
AA = AutoAttackOptions(version="fast", steps=6, n_queries=30)


def _seed(k=7):
    return torch.Generator().manual_seed(k)


def _without_timings(report) -> dict:
    out = json.loads(report.to_json())
    out.pop("overhead")
    for row in out["attacks"].values():
        row.pop("seconds_per_image")
    if out["autoattack"] is not None:
        out["autoattack"].pop("seconds")
    return out


def _shards(model, data, tmp_path, order=(2, 0, 1), n=3, **extra):
    paths = [tmp_path / f"shard-{k}.json" for k in range(n)]
    for k in order:
        evaluate(model, data, shard=(k, n), state_path=paths[k], generator=_seed(), **{**SETTINGS, **extra})
    return paths


@pytest.mark.parametrize("noisy", [False, True], ids=["deterministic", "stochastic"])
def test_three_shards_merge_into_the_unsharded_run(noisy, data, tmp_path):
    model = _model(noisy=noisy)
    extra = dict(suite="autoattack", autoattack=AA) if not noisy else dict(eot_iter=2, repeats=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = evaluate(model, data, generator=_seed(), **SETTINGS, **extra)
        merged = merge_eval_shards(_shards(model, data, tmp_path, **extra))
    assert 0 < one.worst_case.mean < one.clean_accuracy.mean  # some samples fall, some hold
    assert [c.status for c in one.checks].count("pass") >= 3 and one.curves and len(one.examples["images"]) == 5
    assert _without_timings(merged) == _without_timings(one)
    if not noisy:
        assert merged.autoattack["robust"] == one.autoattack["robust"] and len(one.autoattack["robust"]) == 21


def test_the_verdicts_do_not_depend_on_the_batches_each_process_attacks(data, tmp_path):
    """Shards of 2 and of 3 and the whole run: one report (each batch's draws are its own)."""
    model = _model()
    one = _without_timings(evaluate(model, data, generator=_seed(), **SETTINGS))
    two = _without_timings(merge_eval_shards(_shards(model, data, tmp_path, order=(1, 0), n=2)))
    assert one == two


def test_a_stopped_shard_resumes_to_the_same_merge(data, tmp_path):
    """Shard 1 is stopped after its first batch (as kill -9 leaves it: the file holds the batches
    done), refused by the merge as unfinished, then resumed; the merge equals the unsharded run."""
    model = _model()
    x, y = data
    one = evaluate(model, data, generator=_seed(), **SETTINGS)
    paths = _shards(model, data, tmp_path, order=(0, 2))
    state = tmp_path / "shard-1.json"

    with pytest.raises(Stop):  # fails at sample 8 (batch 2 at batch_size 4): shard 1 attacks batch 1, then stops
        evaluate(model, stopping_at(x, y, 8, batch_size=4), shard=(1, 3), state_path=state,
                 generator=_seed(), **SETTINGS)
    assert list(json.loads(state.read_text())["batches"]) == ["1"]
    with pytest.raises(ValueError, match="shards did not finish"):
        merge_eval_shards(paths)
    evaluate(model, data, shard=(1, 3), state_path=state, resume=True, generator=_seed(), **SETTINGS)
    assert _without_timings(merge_eval_shards(paths)) == _without_timings(one)


def test_shards_of_other_runs_are_refused_by_name(data, tmp_path):
    model = _model()
    paths = _shards(model, data, tmp_path)
    with pytest.raises(ValueError, match=r"shards missing: \[2\] of 3"):
        merge_eval_shards(paths[:2])
    with pytest.raises(ValueError, match=r"shards given twice: \[0\]"):
        merge_eval_shards([paths[0], paths[0], paths[1], paths[2]])
    other = tmp_path / "other"
    other.mkdir()
    for name, model_k, data_k, settings in (("eps", model, data, dict(eps=0.06)), ("model", _model(1), data, {}),
                                            ("seed", model, data, dict(generator=_seed(8))),
                                            ("data", model, (data[0].flip(0), data[1].flip(0)), {})):
        path = other / f"{name}.json"
        evaluate(model_k, data_k, shard=(2, 3), state_path=path, **{**SETTINGS, "generator": _seed(), **settings})
        with pytest.raises(ValueError, match=f"not of one run: .*{name}"):
            merge_eval_shards([paths[0], paths[1], path])
    from robustkernels.eval import autoattack

    aa_file = other / "autoattack.json"
    autoattack(model, data, eps=0.05, version="fast", steps=4, n_queries=20, shard=(0, 1), state_path=aa_file,
               progress=False, autocast=None, channels_last=False)
    with pytest.raises(ValueError, match="is not an evaluate state file"):
        merge_eval_shards([aa_file])


@pytest.mark.parametrize("options, message", [
    (dict(shard=(2, 2)), "shard must be"), (dict(shard="0/2"), "shard must be"),
    (dict(shard=(0, 2)), "pass state_path"), (dict(state_path="s.json"), "pass shard="),
    (dict(resume=True), "pass shard="), (dict(shard=(0, 2), state_path=3), "state_path must be a file path"),
    (dict(shard=(0, 2), state_path="s.json", corruptions=("contrast",)), "corruptions: not with shard"),
    (dict(shard=(0, 2), state_path="s.json", suite="autoattack",
          autoattack=AutoAttackOptions(state_path="aa.json")), "autoattack: leave state_path out"),
])
def test_bad_shard_options_are_refused_by_name(options, message, data):
    with pytest.raises((ValueError, TypeError), match=message):
        evaluate(_model(), data, **{**SETTINGS, **options})


def test_a_front_end_needs_bpda_set_in_a_shard(data, tmp_path):
    from robustkernels.defences import BitDepthReduction

    model = nn.Sequential(BitDepthReduction(4), _model())
    with pytest.raises(ValueError, match="set bpda=True or False"):
        evaluate(model, data, shard=(0, 2), state_path=tmp_path / "s.json", **SETTINGS)


def test_the_merge_command_merges_evaluate_shards(data, tmp_path, capsys):
    from robustkernels.cli import main

    model = _model()
    folder = tmp_path / "shards"
    folder.mkdir()
    _shards(model, data, folder, order=(0, 1), n=2)
    one = evaluate(model, data, generator=_seed(), **SETTINGS)
    assert main(["merge", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert str(one.worst_case) in capsys.readouterr().out
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["clean_correct"] == one.clean_correct and (tmp_path / "out" / "report.md").exists()


def test_eval_shard_folders_merge_into_the_whole_evaluation(tmp_path, capsys):
    """`robustkernels eval --shard K/N` per folder, then `merge` of the folders: the report.json
    of the unsharded `eval`, but for the timings (AutoAttack fast included)."""
    from robustkernels.cli import main
    from robustkernels.eval import RobustnessReport

    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--method", "standard", "--no-progress", "--out", str(run)]) == 0
    argv = ["eval", "--checkpoint", str(run / "checkpoint.pt"), "--samples", "24", "--attacks", "fgsm,pgd",
            "--check-samples", "10", "--batch-size", "8", "--suite", "autoattack", "--version", "fast",
            "--channels-last", "off", "--autocast", "fp32", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "whole")]) == 0
    for k in (1, 0, 2):
        assert main(argv + ["--shard", f"{k}/3", "--out", str(tmp_path / f"shard{k}")]) == 0
    assert "the N shards' folders for the report" in capsys.readouterr().out
    assert main(["merge", *(str(tmp_path / f"shard{k}") for k in range(3)), "--out", str(tmp_path / "merged")]) == 0
    whole, merged = ((tmp_path / d / "report.json").read_text() for d in ("whole", "merged"))
    assert _without_timings(RobustnessReport.from_json(merged)) == _without_timings(RobustnessReport.from_json(whole))
    assert (tmp_path / "merged" / "curves.png").exists()
    with pytest.raises(SystemExit):
        main(argv + ["--shard", "3/3", "--out", str(tmp_path / "bad")])
    assert "expected K/N with 0 <= K < N" in capsys.readouterr().err


KILL_SCRIPT = """
import torch
from torch import nn
from robustkernels.eval import evaluate
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
model.load_state_dict(torch.load({weights!r}, weights_only=True))
x, y = torch.load({data!r}, weights_only=True)
evaluate(model, (x, y), shard=(1, 2), state_path={state!r}, generator=torch.Generator().manual_seed(7), **{settings!r})
"""


def test_a_shard_killed_with_kill_9_resumes_to_the_same_merge(tmp_path):
    """Shard 1 of 2 in its own process, killed with SIGKILL after some batches: refused by the
    merge as unfinished; resumed, the merge equals the unsharded evaluation."""
    model = _model()
    x = torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    one = evaluate(model, (x, y), generator=_seed(), **SETTINGS)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save((x, y), tmp_path / "d.pt")
    paths = [tmp_path / "shard-0.json", tmp_path / "shard-1.json"]
    evaluate(model, (x, y), shard=(0, 2), state_path=paths[0], generator=_seed(), **SETTINGS)
    script = KILL_SCRIPT.format(weights=str(tmp_path / "w.pt"), data=str(tmp_path / "d.pt"), state=str(paths[1]),
                                settings=SETTINGS)
    done = kill_after(script, paths[1], 2)
    assert 0 < done < 12, done  # killed mid-run: 12 batches are shard 1's
    with pytest.raises(ValueError, match="shards did not finish"):
        merge_eval_shards(paths)
    evaluate(model, (x, y), shard=(1, 2), state_path=paths[1], resume=True, generator=_seed(), **SETTINGS)
    assert _without_timings(merge_eval_shards(paths)) == _without_timings(one)


def test_more_shards_than_batches_and_batchnorm_models_merge(tmp_path):
    """10 shards of 6 batches (4 hold none) of a BatchNorm model (its 0-dim batch counter in the
    digest), with the AutoAttack part: the merge equals the whole run; so does AutoAttack's own."""
    from robustkernels.eval import autoattack, merge_shards

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)).eval()
    x = torch.rand(21, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    extra = dict(suite="autoattack", autoattack=AA)
    one = evaluate(model, (x, y), generator=_seed(), **SETTINGS, **extra)
    paths = [tmp_path / f"s{k}.json" for k in range(10)]
    for k in range(10):
        part = evaluate(model, (x, y), shard=(k, 10), state_path=paths[k], generator=_seed(), **SETTINGS, **extra)
        assert (part.n_samples == 0) == (k >= 6)
    assert _without_timings(merge_eval_shards(paths)) == _without_timings(one)
    aa = dict(eps=0.05, version="fast", steps=6, n_queries=30, seed=1, batch_size=4, progress=False, autocast=None,
              channels_last=False)
    whole = autoattack(model, (x, y), **aa)
    files = [tmp_path / f"aa{k}.json" for k in range(8)]
    for k in range(8):
        autoattack(model, (x, y), shard=(k, 8), state_path=files[k], **aa)
    assert merge_shards(files).robust == whole.robust


def test_damaged_or_mismatched_shard_files_are_refused_by_name(data, tmp_path):
    model = _model()
    paths = _shards(model, data, tmp_path, order=(0, 1), n=2)
    original = json.loads(paths[0].read_text())
    for edit, message in ((lambda s: s["notes"]["lead"].update(labels=[3, 3]), "notes .* were edited"),
                          (lambda s: s["notes"].update(title="other"), "notes .* were edited"),
                          (lambda s: s["identity"].update(shard=[0, 0]), "not a shard's state file"),
                          (lambda s: s["identity"].update(shard=["0", "2"]), "not a shard's state file"),
                          (lambda s: s.update(batches=[]), "are not mappings"),
                          (lambda s: s["batches"].update(x={}), "batch 'x' is not a batch number")):
        state = json.loads(json.dumps(original))
        edit(state)
        paths[0].write_text(json.dumps(state))
        with pytest.raises(ValueError, match=message):
            merge_eval_shards(paths)
    paths[0].write_text(json.dumps(original))
    (tmp_path / "three").mkdir()
    three = _shards(model, data, tmp_path / "three", order=(1,), n=3)
    with pytest.raises(ValueError, match=r"N \(shard=\(K, N\)\) differs"):
        merge_eval_shards([paths[0], three[1]])
    with pytest.raises(TypeError, match="must be a list of the shards' state files"):
        merge_eval_shards(str(paths[0]))


@pytest.mark.parametrize("options, message", [
    (dict(examples=2.5), "examples must be an int >= 0"), (dict(examples=-1), "examples must be an int >= 0"),
    (dict(curve_eps="12"), "curve_eps must be a sequence"), (dict(curve_eps=()), "curve_eps must be a sequence"),
    (dict(curve_eps=(-1.0,)), "curve_eps must be a sequence"), (dict(tolerance=-1), "tolerance must be >= 0"),
    (dict(checks="no"), "checks must be True or False"), (dict(progress="no"), "progress must be True or False"),
    (dict(title=5), "title must be a str"), (dict(surrogate="m"), "surrogate must be an nn.Module"),
])
def test_bad_report_options_are_refused_by_name(options, message, data):
    with pytest.raises((ValueError, TypeError), match=message):
        evaluate(_model(), data, **{**SETTINGS, **options})


def test_square_on_inputs_that_are_not_images_is_refused_before_any_attack():
    model = nn.Sequential(nn.Linear(12, 4))
    with pytest.raises(ValueError, match=r"square needs images \[B, C, H, W\]"):
        evaluate(model, (torch.rand(8, 12), torch.zeros(8, dtype=torch.int64)), eps=0.1, attacks=("fgsm", "square"),
                 progress=False)


def test_numpy_integers_in_the_options_reach_the_state_file_as_ints(tmp_path, data):
    """examples / eot_iter / repeats as NumPy integers were checked but kept: the shard's state
    file then failed to serialise them."""
    report = evaluate(_model(), data, shard=(0, 1), state_path=tmp_path / "s.json", generator=_seed(),
                      **{**SETTINGS, "examples": np.int64(2), "eot_iter": np.int32(1), "repeats": np.uint8(1),
                         "attacks": ("fgsm",), "checks": False})
    assert json.loads((tmp_path / "s.json").read_text()) and report is not None
