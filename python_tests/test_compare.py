"""`robustkernels compare`: the Pareto front, the table and a small end-to-end run."""

import json

import pytest

from robustkernels.cli import main
from robustkernels.recipes.compare import CompareRow, pareto_front, to_markdown


def _row(name, seconds, robust):
    return CompareRow(name, 1, False, seconds, 0.8, robust, 1.0)


def test_pareto_front_keeps_what_nothing_beats_on_both_axes():
    rows = [_row("slow-strong", 100, 0.40), _row("fast-weak", 10, 0.20), _row("dominated", 50, 0.15),
            _row("fast-strong", 30, 0.35), _row("tie", 30, 0.35)]
    pareto_front(rows)
    assert {r.name for r in rows if r.pareto} == {"slow-strong", "fast-weak", "fast-strong", "tie"}
    table = to_markdown(rows, reference="slow-strong")
    assert "| fast-weak | 1 | 1 | 80.0% | 20.0% | 10 s | 10.00x cheaper | yes |" in table
    assert "| dominated | 1 | 1 | 80.0% | 15.0% | 50 s | 2.00x cheaper |  |" in table


def test_compare_trains_evaluates_and_writes_the_table_and_figure(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--dataset", "digits", "--model", "cnn", "--epochs", "2", "--train-samples", "512",
                 "--batch-size", "16", "--methods", "standard,fgsm-rs,free-at+levers", "--eval-samples", "40",
                 "--val-samples", "40", "--lr", "0.1", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "| free-at+levers | 1 |" in printed  # free-at: epochs / replays, at least 1
    result = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in result["rows"]] == ["standard", "fgsm-rs", "free-at+levers"]
    assert [r["auto_levers"] for r in result["rows"]] == [False, False, True]
    for r in result["rows"]:
        assert 0 <= r["robust_accuracy"] <= r["clean_accuracy"] <= 1 and r["train_seconds"] > 0
        assert not r["at_chance"]  # models that learned: a Pareto front of chance-level rows means nothing
    assert any(r["pareto"] for r in result["rows"])
    assert (out / "compare.png").stat().st_size > 10_000 and (out / "compare.md").exists()


@pytest.mark.parametrize("argv, match", [
    (["--methods", "pgd-at+slow"], "the only suffix is +levers"),
    (["--methods", "nope"], "method must be one of"),
    (["--methods", ","], "--methods is empty"),
    (["--model", "wrn-5-1", "--dataset", "digits"], "depth must be"),
])
def test_compare_refuses_bad_arguments_in_one_line(argv, match, tmp_path, capsys):
    code = main(["compare", *argv, "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and match in err, err
