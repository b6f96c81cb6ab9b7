"""The second red team's cases, each with its new behaviour: a correct result or one clear error
that names what is wrong - never a silently wrong number."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

from robustkernels import ops
from robustkernels.data import Fields, load_digits
from robustkernels.defences import (
    BitDepthReduction,
    FeatureSqueezing,
    GaussianNoise,
    JPEGCompression,
    MedianSmoothing,
)
from robustkernels.eval import autoattack, evaluate
from robustkernels.recipes.compare import CompareRow, Contender, compare, pareto_front, to_markdown
from robustkernels.train import fit, make_method
from robustkernels.train.rundir import LOCK_NAME, run_lock

from .helpers import DictDataset
from .models import trained_digits_cnn
from .test_cli_errors import TRAIN, _error

# --- front-ends and noise: non-finite input or scale is an error naming it ---------------------

@pytest.mark.parametrize("front", [BitDepthReduction(4), MedianSmoothing(2), JPEGCompression(75),
                                   GaussianNoise(0.1)], ids=lambda f: type(f).__name__)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_front_ends_refuse_non_finite_input_alike(front, value):
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 2, 3] = value
    with pytest.raises(ValueError, match=rf"{type(front).__name__}: the input holds NaN or inf in 1 of 3 images"):
        front(x)


def test_gaussian_noise_and_noisy_weight_refuse_infinite_scales():
    with pytest.raises(ValueError, match="sigma must be finite"):
        GaussianNoise(float("inf"))
    w = torch.randn(4, 3)
    for alpha in (float("nan"), float("inf"), torch.tensor([0.1, float("nan"), 0.1, 0.1])):
        with pytest.raises(ValueError, match="alpha must be finite"):
            ops.noisy_weight(w, alpha)
    assert torch.isfinite(ops.noisy_weight(w, 0.1)).all()


def test_feature_squeezing_checks_its_inputs_and_labels():
    model, x, y = trained_digits_cnn()
    with pytest.raises(ValueError, match="squeezers must hold at least one"):
        FeatureSqueezing(model, squeezers=[])
    detector = FeatureSqueezing(model, squeezers=[BitDepthReduction(3)])
    with pytest.raises(ValueError, match="x_clean: no samples"):
        detector.calibrate(x[:0])
    detector.calibrate(x[:100])
    with pytest.raises(ValueError, match=r"y: labels must lie in \[0, 10\)"):
        detector.evaluate(x[:10], torch.full((10,), 12))
    with pytest.raises(ValueError, match="x: no samples"):
        detector.evaluate(x[:0], y[:0])
    result = detector.evaluate(x[100:200], y[100:200])
    assert 0 <= result.detection_rate <= 1 and result.accuracy_of_accepted > 0.8


# --- dict batches, and NaN inputs blamed on the input --------------------------------------------

def test_evaluate_and_autoattack_take_dict_batches():
    model, x, y = trained_digits_cnn()
    x, y = x[:40], y[:40]
    kwargs = dict(eps=0.05, attacks=("pgd",), checks=False, progress=False)
    expected = evaluate(model, (x, y), generator=torch.Generator().manual_seed(0), **kwargs).attacks["pgd"]
    for data in (DataLoader(DictDataset(x, y), batch_size=16),
                 Fields(DataLoader(DictDataset(x, y, ("px", "cls")), batch_size=16), x="px", y="cls")):
        got = evaluate(model, data, generator=torch.Generator().manual_seed(0), **kwargs).attacks["pgd"]
        assert got.robust_accuracy == expected.robust_accuracy
    aa = autoattack(model, DataLoader(DictDataset(x, y), batch_size=16), eps=0.05, steps=5, n_queries=20, seed=0,
                    progress=False)
    assert aa.robust == autoattack(model, (x, y), eps=0.05, steps=5, n_queries=20, seed=0, batch_size=16,
                                   progress=False).robust
    with pytest.raises(ValueError, match=r"dict batch with keys \['a', 'b'\].*Fields\(loader, x=\.\.\., y=\.\.\.\)"):
        evaluate(model, DataLoader(DictDataset(x, y, ("a", "b")), batch_size=16), **kwargs)


def test_nan_inputs_are_blamed_on_the_input():
    model, x, y = trained_digits_cnn()
    bad = x[:8].clone()
    bad[3, 0, 1, 1] = float("nan")
    for run in (lambda: evaluate(model, (bad, y[:8]), eps=0.05, attacks=("fgsm",), checks=False, progress=False),
                lambda: autoattack(model, (bad, y[:8]), eps=0.05, progress=False)):
        with pytest.raises(ValueError, match="data: x holds NaN or inf in 1 of 8 samples"):
            run()


# --- models with too few classes: refused before any attack --------------------------------------

@pytest.mark.parametrize("classes", [2, 3])
def test_few_class_models_are_refused_before_any_attack(classes):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, classes)).eval()
    x, y = torch.rand(12, 1, 8, 8), torch.arange(12) % classes
    with pytest.raises(ValueError, match=rf"the model has {classes} classes: apgd-t needs at least 4 classes"):
        autoattack(model, (x, y), eps=0.05, progress=False)
    message = "apgd-dlr needs at least 3 classes" if classes == 2 else "apgd-t needs at least 4"
    with pytest.raises(ValueError, match=message):
        evaluate(model, (x, y), eps=0.05, attacks=("fgsm", "apgd-dlr") if classes == 2 else ("fgsm",),
                 suite="default" if classes == 2 else "autoattack", checks=False, progress=False)
    five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)).eval()
    with pytest.raises(ValueError, match=r"apgd-t attacks 9 target classes but only 4 exist \(pass n_target_classes=4"):
        autoattack(five, (x, y % 5), eps=0.05, progress=False)
    assert autoattack(five, (x, y % 5), eps=0.05, steps=3, n_queries=10, n_target_classes=4,
                      progress=False).n_samples == 12


# --- fit: labels, loaders, paths -----------------------------------------------------------------

def _digits(n=96):
    x, y, _, _ = load_digits()
    return x[:n], y[:n]


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_fit_refuses_labels_outside_the_models_classes_before_training():
    x, y = _digits()
    y = y.clone()
    y[5] = 12
    steps = []
    with pytest.raises(ValueError, match=r"train_data: labels must lie in \[0, 10\) .* got 0\.\.12"):
        fit(_cnn(), make_method("standard"), (x, y), epochs=1, progress=False, callback=steps.append)
    with pytest.raises(ValueError, match=r"train_data \(batch 0\): labels must lie in \[0, 10\)"):
        fit(_cnn(), make_method("standard"), TensorDataset(x, y), epochs=1, batch_size=96, progress=False,
            callback=steps.append)
    assert steps == []


class _EveryOther(SequentialSampler):
    pass


@pytest.mark.parametrize("loader, ignored", [
    (lambda ds: DataLoader(ds, batch_size=40, drop_last=True), "drop_last=True"),
    (lambda ds: DataLoader(ds, batch_size=40), r"batch_size=40 \(fit's batch_size=96\)"),
    (lambda ds: DataLoader(ds, sampler=_EveryOther(ds), batch_size=96), "sampler=_EveryOther"),
    (lambda ds: DataLoader(ds, batch_sampler=[list(range(0, 96, 2))]), "batch_sampler=list"),
])
def test_fit_refuses_loader_settings_it_would_ignore(loader, ignored):
    x, y = _digits()
    with pytest.raises(ValueError, match=rf"train_data: fit would ignore the DataLoader's .*{ignored}"):
        fit(_cnn(), make_method("standard"), loader(TensorDataset(x, y)), epochs=1, batch_size=96, progress=False)


def test_fit_takes_the_loaders_batch_size_by_default():
    x, y = _digits()
    steps = []
    fit(_cnn(), make_method("standard"), DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), epochs=1,
        progress=False, callback=steps.append)
    assert len(steps) == 3  # 96 samples in batches of the loader's 32


def test_unwritable_places_are_refused_before_any_work(tmp_path, capsys):
    x, y = _digits()
    steps = []
    with pytest.raises(ValueError, match="checkpoint_path .* is not writable"):
        fit(_cnn(), make_method("standard"), (x, y), epochs=1, progress=False, callback=steps.append,
            checkpoint_path="/proc/robustkernels/ckpt.pt")
    assert steps == []
    assert "--out '/proc/robustkernels-out' is not writable" in _error(
        ["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--out", "/proc/robustkernels-out"], capsys)
    assert "augmentation 'mixup:-1': alpha must be >= 0" in _error(TRAIN + ["--augmentations", "mixup:-1", "--out",
                                                                           str(tmp_path / "r")], capsys)


# --- run folders are held by one run at a time ---------------------------------------------------

def test_a_run_folder_is_locked_and_a_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(str(out)):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        message = _error(TRAIN + ["--out", str(out)], capsys)
        assert f"--out '{out}' is in use by another run (pid {os.getpid()}" in message
        assert "is in use by another run" in _error(["eval", "--checkpoint", str(out / "c.pt"), "--out", str(out)],
                                                    capsys)
    assert not (out / LOCK_NAME).exists()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from robustkernels.train.rundir import "
                               f"run_lock\nwith run_lock({str(out)!r}):\n    print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)  # kill -9: the lock file stays behind
    holder.wait()
    assert (out / LOCK_NAME).exists()
    with run_lock(str(out)):  # stale: its process is gone, so it is taken over
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()


# --- compare: a row at chance is marked and never on the Pareto front -----------------------------

def test_compare_marks_rows_at_chance_and_keeps_them_off_the_front():
    rows = [CompareRow("good", 1, False, 10.0, 0.9, 0.5, 1.0), CompareRow("chance", 1, False, 1.0, 0.1, 0.6, 1.0,
                                                                          at_chance=True)]
    pareto_front(rows)
    assert [r.pareto for r in rows] == [True, False]
    assert "chance (at chance)" in to_markdown(rows)
    x, y = _digits(64)
    dead = [Contender("at chance", make_method("standard"), 1)]
    scores = iter([(0.1, 0.9, 64), (0.9, 0.2, 64)])  # at chance yet "robust"; a learned, weaker one
    scored = compare(_cnn, dead + [Contender("ok", make_method("standard"), 1)], (x, y), (x, y),
                     evaluate=lambda m, d: next(scores),
                     progress=False, lr=1e-3, optimizer="adam")
    assert scored[0].at_chance and not scored[0].pareto and scored[1].pareto and not scored[1].at_chance
