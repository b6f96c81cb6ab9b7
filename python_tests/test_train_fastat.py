"""The FastAT Benchmark's recipe pieces: the onecycle schedule (torch's OneCycleLR as the
benchmark runs it, against a torch OneCycleLR stepped by hand) and its resume rule."""

import json

import pytest
import torch

from robustkernels.data import load_digits
from robustkernels.train import fit, lr_factor, make_method
from robustkernels.train.schedules import make_scheduler

from .models import small_cnn


def test_onecycle_is_torchs_one_cycle_with_momentum_cycled():
    model = torch.nn.Linear(3, 2)
    ours = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1, momentum=0.9)
    scheduler = make_scheduler(ours, "onecycle", 200)
    reference = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.1, total_steps=200)  # the benchmark's call
    for step in range(200):
        for key in ("lr", "momentum"):
            assert ours.param_groups[0][key] == theirs.param_groups[0][key], (step, key)
        assert ours.param_groups[0]["lr"] / 0.1 == pytest.approx(lr_factor("onecycle", step / 199), abs=0.02)
        ours.step(), theirs.step(), scheduler.step(), reference.step()
    assert lr_factor("onecycle", 0.0) == pytest.approx(1 / 25) and lr_factor("onecycle", 0.3) == pytest.approx(1.0)
    assert lr_factor("onecycle", 1.0) == pytest.approx(1 / 25 / 1e4)


def test_a_onecycle_run_resumes_only_over_its_own_length(tmp_path):
    x, y, _, _ = load_digits()
    path = tmp_path / "c.pt"
    options = dict(batch_size=64, lr=0.05, optimizer="sgd", schedule="onecycle", progress=False, checkpoint_path=path)
    fit(small_cnn(), make_method("standard"), (x[:128], y[:128]), epochs=1, **options)
    with pytest.raises(ValueError, match="schedule='onecycle' spans the whole run"):
        fit(small_cnn(), make_method("standard"), (x[:128], y[:128]), epochs=2, resume=True, **options)


def test_spearman_against_its_definition():
    from robustkernels.recipes.fastat import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    a, b = [3.0, 1.0, 2.0, 2.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0]  # ties take average ranks
    ra, rb = torch.tensor([4.0, 1.0, 2.5, 2.5, 5.0]), torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])
    assert spearman(a, b) == pytest.approx(expected)
    assert spearman([1, 2], [1, 2]) != spearman([1, 2], [1, 2])  # NaN: too few pairs


def test_summary_marks_chance_rows_and_ratios():
    from robustkernels.recipes.fastat import RunResult, summarize, to_markdown

    runs = [RunResult("pgd-at+wa", s, 0.9, 0.5 + s / 100, 100.0, 4, 4) for s in range(3)]
    runs += [RunResult("n-fgsm+wa", s, 0.9, 0.45, 30.0, 4, 4) for s in range(3)]
    runs += [RunResult("elle+wa", s, 0.15, 0.15, 20.0, 4, 4) for s in range(3)]  # under 2x chance
    rows = {r.label: r for r in summarize(runs, classes=10)}
    assert rows["pgd-at+wa"].robust == pytest.approx(0.51) and rows["pgd-at+wa"].robust_std == pytest.approx(0.01)
    assert rows["n-fgsm+wa"].ratio == pytest.approx(0.3)
    assert rows["elle+wa"].at_chance and not rows["elle+wa"].pareto
    assert rows["pgd-at+wa"].pareto and rows["n-fgsm+wa"].pareto
    table = to_markdown(list(rows.values()))
    assert "| 51.0 ± 1.0% |" in table  # the sample std of 50, 51, 52
    one_seed = to_markdown(summarize(runs[:1] + runs[3:4], classes=10))
    assert "| 50.0% (1 seed) |" in one_seed and "±" not in one_seed  # one seed has no spread
    assert "machines" not in table  # every run from one machine (here: none recorded)
    runs[4].machine = "another CPU"
    assert "The training times come from 2 machines (another CPU; not recorded)" in to_markdown(
        summarize(runs, classes=10))


def test_protocol_end_to_end_on_digits(tmp_path, capsys):
    from robustkernels.cli import main

    argv = ["compare", "--protocol", "fastat", "--dataset", "digits", "--model", "cnn", "--methods",
            "pgd-at+wa,n-fgsm+wa", "--epochs", "1", "--seeds", "0", "--aa-version", "fast", "--eval-samples", "40",
            "--val-samples", "64", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "FastAT protocol at this machine's scale: cnn on digits (1284 training images, 64 held out" in printed.out
    assert "| n-fgsm+wa" in printed.out and "47.77%" in printed.out and "Spearman" in printed.out
    assert (tmp_path / "fastat.png").exists() and (tmp_path / "runs" / "n-fgsm+wa-seed0.json").exists()
    run = json.loads((tmp_path / "runs" / "n-fgsm+wa-seed0.json").read_text())
    assert [p["epoch"] for p in run["curve"]] == [1] and 0 <= run["curve"][0]["val_pgd_acc"] <= 1
    assert (tmp_path / "fastat-curves.png").exists()
    assert main(argv) == 0  # the runs are read back, not trained again
    assert "n-fgsm+wa seed 0" in capsys.readouterr().err
    assert main(argv[:8] + ["nope+wa"] + argv[9:]) == 2
    assert "nope" in capsys.readouterr().err


def test_the_timing_pass_gives_the_tables_times(tmp_path, capsys):
    """--timing writes each method's seconds per epoch; the table then takes its times from it
    (seconds per epoch x the method's epochs) and says so."""
    from robustkernels.cli import main

    argv = ["compare", "--protocol", "fastat", "--dataset", "digits", "--model", "cnn", "--methods",
            "pgd-at+wa,free-at+wa", "--epochs", "2", "--seeds", "0", "--aa-version", "fast", "--eval-samples", "20",
            "--val-samples", "64", "--out", str(tmp_path), "--no-progress"]
    assert main(argv + ["--timing"]) == 0
    timing = json.loads((tmp_path / "timing.json").read_text())
    per_epoch = timing["seconds_per_epoch"]
    assert set(per_epoch) == {"pgd-at+wa", "free-at+wa"} and all(v > 0 for v in per_epoch.values())
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # timed, not trained
    assert main(argv) == 0
    rows = {r["label"]: r for r in json.loads((tmp_path / "fastat.json").read_text())["rows"]}
    assert rows["pgd-at+wa"]["train_seconds"] == pytest.approx(2 * per_epoch["pgd-at+wa"])
    assert rows["free-at+wa"]["train_seconds"] == pytest.approx(1 * per_epoch["free-at+wa"])  # 2 x 2 / 4 replays
    assert "Training times: a separate timing pass" in capsys.readouterr().out
    assert main(["compare", "--timing", "--out", str(tmp_path / "x")]) == 2
    assert "--timing times the methods of --protocol fastat" in capsys.readouterr().err


def test_an_eps_ramp_is_part_of_the_recipe_and_runs_of_another_recipe_are_refused(tmp_path, capsys):
    from robustkernels.cli import main

    argv = ["compare", "--protocol", "fastat", "--dataset", "digits", "--model", "cnn", "--methods", "n-fgsm+wa",
            "--epochs", "2", "--seeds", "0", "--aa-version", "fast", "--eval-samples", "20", "--val-samples", "64",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv + ["--eps-warmup-epochs", "1"]) == 0
    assert "(ramped from 0 over the first 1 epochs)" in capsys.readouterr().out
    assert main(argv) == 2  # the same folder without the ramp: another recipe
    assert "holds runs of another recipe: eps_warmup_epochs 1.0 there" in capsys.readouterr().err


def test_weight_average_sets_the_wa_rows_tau_and_what_the_protocol_fixes_is_refused(tmp_path, capsys):
    """--weight-average was silently ignored with --protocol fastat: now the +wa rows' tau (in the
    header and the folder's recipe); --schedule / --keep / --val-attack, which it fixes, refused."""
    from robustkernels.cli import main

    argv = ["compare", "--protocol", "fastat", "--dataset", "digits", "--model", "cnn", "--methods", "n-fgsm+wa",
            "--epochs", "1", "--seeds", "0", "--aa-version", "fast", "--eval-samples", "20", "--val-samples", "64",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv + ["--weight-average", "0.99"]) == 0
    assert "weight averaging tau 0.99 (+wa)" in capsys.readouterr().out
    assert json.loads((tmp_path / "runs" / "recipe.json").read_text())["tau"] == 0.99
    with pytest.raises(SystemExit):  # the parser's own
        main(argv + ["--weight-average", "1"])
    assert "argument --weight-average: must be < 1, got 1" in capsys.readouterr().err
    for extra, message in ((["--methods", "n-fgsm", "--weight-average", "0.9"], "--methods has none"),
                           (["--schedule", "cyclic"], "--schedule: --protocol fastat fixes it"),
                           (["--keep", "last"], "--keep: --protocol fastat fixes it"),
                           (["--val-attack", "pgd"], "--val-attack: --protocol fastat fixes it")):
        assert main(argv + extra) == 2
        assert message in capsys.readouterr().err


def test_compare_figure_tick_labels_do_not_run_together(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from robustkernels.recipes.compare import CompareRow, plot

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    rows = [CompareRow(f"m{i}", 4, False, t, 0.8, 0.3, 1.0) for i, t in enumerate((35, 48, 80, 92, 101, 300))]
    plot(rows, tmp_path / "c.png", "ticks")
    axis = figures[0].axes[0].xaxis
    figures[0].canvas.draw()
    boxes = [t.get_window_extent() for t in axis.get_ticklabels(which="both") if t.get_text() and t.get_visible()]
    assert len(boxes) >= 2
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_curves_panel_per_method_and_none_for_runs_without_curves(tmp_path):
    from robustkernels.recipes.fastat import RunResult
    from robustkernels.recipes.fastat_curves import plot_curves

    old = RunResult("pgd-at", 0, 0.9, 0.5, 10.0, 3, 3)  # written before runs kept their curve
    assert plot_curves([old], str(tmp_path / "none.png"), "t") is None and not (tmp_path / "none.png").exists()
    curve = [{"epoch": e, "val_clean_acc": 0.5 + 0.1 * e, "val_pgd_acc": 0.1 * e} for e in (1, 2, 3)]
    runs = [RunResult(label, seed, 0.9, 0.5, 10.0, 3, 2, curve=curve) for label in ("a+wa", "b+wa") for seed in (0, 1)]
    path = plot_curves([*runs, old], str(tmp_path / "c.png"), "t", eps_warmup_epochs=1)
    assert path == str(tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 1000
