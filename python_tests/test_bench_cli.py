"""``robustkernels bench``: runs, reports ratios and targets, writes JSON (small settings here)."""

import importlib.util
import json
import pathlib

import pytest
import torch

import robustkernels
from robustkernels.bench import main_bench, spawn_variant


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


def test_the_profiler_prints_nothing_into_the_tables(capfd):
    from robustkernels.bench.timing import peak_memory_kib

    assert peak_memory_kib(lambda: torch.ones(1000) + 1) >= 0
    captured = capfd.readouterr()  # file-descriptor level: the profiler's C++ side wrote USDT lines there
    assert "USDT" not in captured.err and "profiler_start" not in captured.err + captured.out


def test_quick_end_to_end_rows_say_why_they_are_noise(capsys):
    from robustkernels.bench import _print_e2e

    row = {"case": "pgd10", "model": "m", "eager_s": 1.0, "ours_s": 1.1, "speedup": 0.91, "peak_mib_eager": 1,
           "peak_mib_ours": 1}
    _print_e2e([row], quick=True)
    assert "quick sizes: each side is one short run" in capsys.readouterr().out
    _print_e2e([row], quick=False)
    assert "quick sizes" not in capsys.readouterr().out


def test_without_compiled_backends_says_so(monkeypatch, capsys):
    monkeypatch.setattr(robustkernels._extension, "LOADED", False)
    result = main_bench("cpu", ["pgd"], quick=True, e2e=False)
    assert result["ops"] == [] and "no compiled backend can run on cpu" in capsys.readouterr().out


def test_end_to_end_variant_in_a_fresh_process():
    result = spawn_variant("pgd_at_lwta", "eager", "cpu", True)
    assert result["model"] == "WRN-10-1 LWTA" and result["seconds"] > 0 and result["peak_kib"] >= 0


def _benchmark_script(name: str = "targets"):
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_are_marked_met_or_not():
    rows = [{"op": "pgd_step", "case": "large [x] linf", "dtype": "fp32", "speedup": 6.0, "share_of_copy": 0.4},
            {"op": "pgd_step", "case": "B in millions [x] l2", "dtype": "fp32", "speedup": 4.0, "share_of_copy": 0.4},
            {"op": "noisy_weight", "case": "w", "dtype": "bf16", "speedup": 2.5, "kept_mib_ours": 0.0,
             "kept_mib_eager": 14.0}]
    e2e = [{"case": "pgd_at_lwta", "speedup": 2.5, "peak_ratio": 0.7}]
    checked = _benchmark_script().check_targets({"ops": rows, "end_to_end": e2e})
    marks = {target: (status, figure) for target, status, figure in checked}
    assert marks["PGD step >= 5x eager, every shape"] == ("NOT met", "min 4.0x (B in millions [x] l2, fp32)")
    assert marks["PGD step >= 50% of copy bandwidth, large size"][0] == "NOT met"
    assert marks["noisy weight fwd+bwd >= 2x the PNI authors' form"][0] == "met"
    assert marks["zero bytes of noise kept for the backward"][0] == "met"
    assert marks["WRN-34-1 LWTA PGD-AT step >= 2x faster"][0] == "met"
    assert marks["WRN-34-1 LWTA PGD-AT step peak memory <= 0.6x"][0] == "NOT met"
    assert "LWTA fwd+bwd <= 1.5x ReLU" not in marks  # not measured: left out


def test_seed_spread_compares_a_side_with_itself_over_every_pair_of_seeds():
    verdicts = [[True, True, False, False], [True, False, False, False], [True, True, True, False]]
    rows = [{"ours_robust": v, "ours_acc": sum(v) / 4} for v in verdicts]
    spread = _benchmark_script("aa_agreement").seed_spread(rows, "ours")
    # pairs (0,1), (0,2), (1,2): agreement 3/4, 3/4, 2/4; accuracy gaps 1/4, 1/4, 2/4
    assert spread["pairs"] == 3
    assert spread["agreement_min"] == pytest.approx(0.5) and spread["agreement_mean"] == pytest.approx(2 / 3)
    assert spread["gap_max"] == pytest.approx(0.5) and spread["gap_mean"] == pytest.approx(1 / 3)
    assert _benchmark_script("aa_agreement").seed_spread(rows[:1], "ours") == {}


@pytest.mark.skipif("cpp" not in robustkernels.available_backends("cpu"), reason="needs the compiled extension")
def test_bench_json_feeds_the_targets_script(tmp_path, capsys):
    path = tmp_path / "bench.json"
    main_bench("cpu", ["noise"], quick=True, json_path=str(path), e2e=False)
    assert "benchmarks/targets.py" in capsys.readouterr().out
    checked = _benchmark_script().check_targets(json.loads(path.read_text()))
    assert [row[0] for row in checked] == ["noisy weight fwd+bwd >= 2x the PNI authors' form",
                                           "zero bytes of noise kept for the backward"]


def test_autoattack_rows_give_every_lever_against_its_baseline():
    from robustkernels.bench.autoattack import format_rows

    row = {"case": "AA standard, mnist", "ours_s": 10.0, "ours_acc": 0.35, "peer_s": 30.0, "peer_acc": 0.35,
           "no_active_set_s": 12.0, "no_active_set_acc": 0.35, "bf16_s": 7.5, "bf16_acc": 0.34}
    lines = format_rows([row]).splitlines()[2:]
    assert lines == [
        "| AA standard, mnist | 10.0 | 35.0% | torchattacks AA (100 it.) | 30.0 | 35.0% | 3.00x |",
        "| AA standard, mnist | 10.0 | 35.0% | ours, active set off | 12.0 | 35.0% | 1.20x |",
        "| AA standard, mnist, bf16 autocast | 7.5 | 34.0% | torchattacks AA (100 it.) | 30.0 | 35.0% | 4.00x |",
    ]
