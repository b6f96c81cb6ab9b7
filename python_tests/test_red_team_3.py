"""The third red team's cases that are not certification's, AutoAttack state's or the data
readers' (those have their own files): each a correct result or one clear error."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from robustkernels.attacks import APGD, MD, PGD
from robustkernels.cli import build_parser, main
from robustkernels.data import Fields
from robustkernels.eval import autoattack, evaluate
from robustkernels.eval.checks import above_chance
from robustkernels.train import fit, make_method
from robustkernels.train.rundir import LOCK_NAME

from .helpers import DictDataset
from .models import small_cnn, trained_digits_cnn
from .test_cli_errors import TRAIN, _error

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _points(n=24):
    model, x, y = trained_digits_cnn()
    return model, x[:n], y[:n]


@pytest.mark.parametrize("mode", ["inference", "no_grad"])
def test_attacks_run_with_gradients_inside_the_callers_mode(mode):
    model, x, y = _points()
    context = torch.inference_mode if mode == "inference" else torch.no_grad
    for make in (lambda: PGD(model, eps=0.3, steps=10, generator=torch.Generator().manual_seed(0)),
                 lambda: APGD(model, eps=0.3, steps=10, generator=torch.Generator().manual_seed(0))):
        expected = make()(x, y)
        with context():
            got = make()(x.clone(), y.clone())
        assert torch.equal(got, expected)
        assert not got.is_inference()
        assert (model(got).argmax(1) != y).sum() > (model(x).argmax(1) != y).sum()  # the attack moved


def test_autoattack_and_evaluate_inside_inference_mode_match_outside():
    model, x, y = _points(16)
    kwargs = dict(eps=0.3, version="standard", seed=0, steps=5, n_queries=20, progress=False)
    expected = autoattack(model, (x, y), **kwargs)
    with torch.inference_mode():
        got = autoattack(model, (x.clone(), y.clone()), **kwargs)
    assert got.robust == expected.robust
    assert got.robust_accuracy.mean < got.clean_accuracy.mean  # the gradient attacks did something
    opts = dict(eps=0.3, attacks=["pgd"], steps={"pgd": 5}, checks=False, progress=False,
                generator=torch.Generator().manual_seed(0))
    before = evaluate(model, (x, y), **opts)
    opts["generator"] = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        inside = evaluate(model, (x.clone(), y.clone()), **opts)
    assert inside.worst_case.mean == before.worst_case.mean < inside.clean_accuracy.mean


# --- train's --out: a finished run is never overwritten silently; a failed run leaves nothing ------

def test_train_refuses_an_out_that_holds_a_run_without_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    argv = TRAIN + ["--out", str(out), "--val-samples", "50"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["epoch"] for line in captured.out.splitlines()] == [1]  # stdout: the records only
    assert f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.jsonl'} (1 epochs)" in captured.err
    before = (out / "checkpoint.pt").read_bytes()
    message = _error(argv + ["--model", "lenet5"], capsys)
    assert f"--out '{out}' already holds a run (checkpoint.pt, metrics.jsonl): pass --resume" in message
    assert "--overwrite to replace it, or choose a fresh --out" in message
    assert (out / "checkpoint.pt").read_bytes() == before
    assert "give one" in _error(argv + ["--resume", "--overwrite"], capsys)
    assert main(argv + ["--overwrite", "--seed", "1"]) == 0
    assert (out / "checkpoint.pt").read_bytes() != before


def test_a_failed_train_leaves_no_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    _error(TRAIN + ["--out", str(out), "--model", "nowhere_rk:net"], capsys)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    _error(TRAIN + ["--out", str(kept), "--model", "nowhere_rk:net"], capsys)
    assert kept.is_dir()  # the user's own folder stays


def test_fit_reports_each_epoch_as_it_ends():
    _, x, y = trained_digits_cnn()
    seen = []
    history = fit(small_cnn(), make_method("standard"), (x[:64], y[:64]), epochs=2, batch_size=32, progress=False,
                  on_epoch=lambda record: seen.append(dict(record)))
    assert seen == history and [r["epoch"] for r in seen] == [1, 2]
    with pytest.raises(TypeError, match="on_epoch must be callable"):
        fit(small_cnn(), make_method("standard"), (x[:64], y[:64]), epochs=1, on_epoch=3)


def test_a_damaged_lock_file_is_named_not_taken_for_a_live_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("garbage")
    message = _error(TRAIN + ["--out", str(out)], capsys)
    assert f"its lock file '{out / LOCK_NAME}' is damaged" in message and "delete that file" in message


def test_eval_help_names_the_built_in_models():
    text = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()  # noqa: SLF001
    assert "(none built in)" not in text and "lenet5" in text


# --- smaller unclear errors ----------------------------------------------------------------------

def test_md_takes_its_change_point_from_its_steps():
    model, x, y = _points(4)
    assert MD(model, eps=0.3, steps=10).change_point == 5
    assert MD(model, eps=0.3).change_point == 25  # the original's
    with pytest.raises(ValueError, match="change_point must be below steps=10, got 12"):
        MD(model, eps=0.3, steps=10, change_point=12)
    with pytest.raises(ValueError, match="steps must be >= 2 for MD"):
        MD(model, eps=0.3, steps=1)


def test_fields_naming_a_missing_key_says_which():
    data = DictDataset(torch.rand(6, 1, 8, 8), torch.arange(6) % 3)
    model = small_cnn()
    with pytest.raises(ValueError, match=r"Fields\(x='wrongkey'\) is not a key of the dict batch \(keys \["):
        evaluate(model, Fields(DataLoader(data, batch_size=3), x="wrongkey", y="label"), eps=0.1, attacks=["fgsm"],
                 checks=False, progress=False)


def test_the_chance_check_does_not_call_a_perfect_model_untrained_on_few_samples():
    check = above_chance(1.0, 2, 4)
    assert check.status == "n/a" and "too few to tell" in check.detail
    assert above_chance(1.0, 10, 100).status == "pass" and above_chance(0.1, 10, 100).status == "warn"


# --- a fresh clone's test command: the real-data tests skip saying where the files go ---------------

@pytest.mark.parametrize("require", ["", "1"])
def test_real_data_tests_skip_or_fail_by_one_setting(require, tmp_path):
    env = {**os.environ, "ROBUSTKERNELS_DATA": str(tmp_path / "none"), "ROBUSTKERNELS_REQUIRE_DATA": require}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "python_tests/test_seed_report.py"], cwd=ROOT, env=env, capture_output=True, text=True)
    where = f"real data files not found in {tmp_path / 'none'}: put MNIST (mnist/) and CIFAR-10"
    assert where in proc.stdout, proc.stdout
    assert (proc.returncode != 0) == (require == "1"), proc.stdout
    assert ("1 skipped" in proc.stdout) == (require == "")


def test_evaluate_probes_the_first_batch_with_samples():
    from torch.utils.data import TensorDataset

    from robustkernels.models import build_model

    def collate(items):  # a loader whose sampler may hand out an empty batch
        if not items:
            return torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.int64)
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    torch.manual_seed(0)
    model = build_model("cnn", activation="lwta", in_channels=1, image_size=8).eval()  # stochastic
    _, x, y = trained_digits_cnn()
    data = TensorDataset(x[:16], y[:16])
    loader = DataLoader(data, batch_sampler=[[], list(range(8)), list(range(8, 16))], collate_fn=collate)
    report = evaluate(model, loader, eps=0.1, attacks=["fgsm"], checks=False, progress=False, repeats=1, eot_iter=2)
    assert report.stochastic and report.n_samples == 16
    with pytest.raises(ValueError, match="data: no samples"):
        evaluate(model, DataLoader(data, batch_sampler=[[]], collate_fn=collate), eps=0.1, attacks=["fgsm"],
                 checks=False, progress=False)


BOOM = '''
import torch.nn as nn

class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        if self.training:
            raise RuntimeError("boom in training")
        return self.body(x)

def net():
    return Boom()
'''


def test_a_train_failing_mid_run_leaves_nothing_half_done(tmp_path, monkeypatch, capsys):
    (tmp_path / "boom_rk.py").write_text(BOOM)
    monkeypatch.chdir(tmp_path)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="boom in training"):
        main(TRAIN + ["--model", "boom_rk:net", "--eps", "0.1", "--out", str(fresh)])
    assert not fresh.exists()  # the folder it created held only the empty log: gone
    out = tmp_path / "run"
    assert main(TRAIN + ["--out", str(out), "--val-samples", "50"]) == 0
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="boom in training"):
        main(TRAIN + ["--model", "boom_rk:net", "--eps", "0.1", "--out", str(out), "--overwrite"])
    assert not (out / "checkpoint.pt").exists()  # replaced together: no old checkpoint beside an emptied log
    assert main(TRAIN + ["--out", str(out), "--val-samples", "50"]) == 0  # an empty log is not a run


def test_review_messages_name_what_is_wrong(tmp_path):
    from robustkernels.data import load
    from robustkernels.models import load_weights

    with pytest.raises(TypeError, match=r"make_method\('elle'\): unexpected argument 'lam'; it takes .*lin_reg"):
        make_method("elle", eps=0.1, lam=3)
    with pytest.raises(ValueError, match="--data-dir '.*nope' does not exist"):
        load("imagefolder", str(tmp_path / "nope"))
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file; give the folder of images"):
        load("imagefolder", str(tmp_path / "f.png"))
    path = tmp_path / "c.pt"
    model = small_cnn()
    _, x, y = trained_digits_cnn()
    fit(model, make_method("standard"), (x[:32], y[:32]), epochs=1, progress=False, checkpoint_path=path)
    with pytest.raises(ValueError, match="is a checkpoint written by `robustkernels train`: pass it as --checkpoint"):
        load_weights(small_cnn(), str(path))
