"""``robustkernels bench``: runs, reports ratios and targets, writes JSON (small settings here)."""

import json

import pytest

import robustkernels
from robustkernels import cli
from robustkernels.bench import check_targets, main_bench, spawn_variant
from robustkernels.bench.cases import op_cases


@pytest.mark.skipif("cpp" not in robustkernels.available_backends("cpu"), reason="needs the compiled extension")
def test_quick_ops_table_and_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    result = main_bench("cpu", ["pgd", "noise"], quick=True, json_path=str(path), e2e=False)
    out = capsys.readouterr().out
    assert "pgd_step" in out and "noisy_weight" in out and "speed-up" in out
    saved = json.loads(path.read_text())
    assert saved["ops"] == result["ops"] and len(saved["ops"]) == 3  # linf, l2, noise on cpp
    for row in saved["ops"]:
        assert row["eager_ms"] > 0 and row["ours_ms"] > 0
        assert row["speedup"] == pytest.approx(row["eager_ms"] / row["ours_ms"])
        assert 0 < row["share_of_copy"] and row["gb_per_s"] > 0
    noise = next(r for r in saved["ops"] if r["op"] == "noisy_weight")
    assert noise["kept_mib_ours"] < 0.01 < noise["kept_mib_eager"]  # no noise kept for the backward


def test_without_compiled_backends_says_so(monkeypatch, capsys):
    monkeypatch.setattr(robustkernels._extension, "LOADED", False)
    result = main_bench("cpu", ["pgd"], quick=True, e2e=False)
    assert result["ops"] == [] and "no compiled backend can run on cpu" in capsys.readouterr().out


def test_end_to_end_variant_in_a_fresh_process():
    result = spawn_variant("pgd_at_lwta", "eager", "cpu", True)
    assert result["model"] == "WRN-10-1 LWTA" and result["seconds"] > 0 and result["peak_kib"] >= 0


def test_targets_are_marked_met_or_not():
    rows = [{"op": "pgd_step", "case": "large [x] linf", "speedup": 6.0, "share_of_copy": 0.4},
            {"op": "pgd_step", "case": "small [x] l2", "speedup": 2.0, "share_of_copy": 0.4},
            {"op": "noisy_weight", "case": "w", "speedup": 2.5, "kept_mib_ours": 0.0, "kept_mib_eager": 14.0}]
    e2e = [{"case": "pgd_at_lwta", "speedup": 2.5, "peak_ratio": 0.7}]
    marks = {target: (status, figure) for _, target, status, figure in check_targets(rows, e2e)}
    assert marks["PGD step >= 5x eager, large size"] == ("met", "min 6.0x")  # the small size does not count
    assert marks["PGD step >= 50% of copy bandwidth, large size"][0] == "NOT met"
    assert marks["noisy weight fwd+bwd >= 3x eager"][0] == "NOT met"
    assert marks["zero bytes of noise kept for the backward"][0] == "met"
    assert marks["WRN-34-1 LWTA PGD-AT step >= 2x faster"][0] == "met"
    assert marks["WRN-34-1 LWTA PGD-AT step peak memory <= 0.6x"][0] == "NOT met"


def test_bad_arguments(capsys):
    with pytest.raises(ValueError, match="ops must be among"):
        op_cases(["conv"], quick=True)
    assert cli.main(["bench", "--ops", "conv"]) == 2
    assert "bench: error: --ops must be among" in capsys.readouterr().err
