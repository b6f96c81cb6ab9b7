""".ci/gpu: each stage on its own (a failing or hanging stage does not stop the later ones, the
summary names it, the exit code says so), and one clear line on a machine without a GPU."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "gpu"
STAGES = ["build", "info", "bench-kernels", "tests-pgd_op", "tests-noise", "tests-lwta", "bench-e2e", "tests-philox",
          "tests-backend", "tests-triton_launch"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_ci(out, env=None, timeout=120):
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def fake_stages(tmp_path, body: str) -> pathlib.Path:
    """A stand-in for every stage's command: appends the stage name to marks.txt, then ``body``."""
    fake = tmp_path / "fake.sh"
    fake.write_text(f'#!/usr/bin/env bash\necho "$1" >> "{tmp_path}/marks.txt"\ncase "$1" in\n{body}\n'
                    '  *) echo "stage $1 fine" ;;\nesac\n')
    fake.chmod(0o755)
    return fake


def stage_table(out) -> dict[str, str]:
    rows = [line.split("\t") for line in (out / "stages.tsv").read_text().splitlines()]
    return {name: status for name, status, *_ in rows}


def test_a_failing_and_a_hanging_stage_do_not_stop_the_others(tmp_path):
    fake = fake_stages(tmp_path, '  tests-lwta) echo "3 failed"; exit 3 ;;\n  bench-kernels) sleep 60 ;;')
    out = tmp_path / "out"
    result = run_ci(out, {"ROBUSTKERNELS_GPU_CI_FAKE": str(fake), "ROBUSTKERNELS_GPU_CI_STAGE_LIMIT_S": "2"})
    assert result.returncode != 0
    assert (tmp_path / "marks.txt").read_text().split() == STAGES  # every stage ran, in order
    table = stage_table(out)
    assert table == {**{name: "ok" for name in STAGES}, "tests-lwta": "FAILED", "bench-kernels": "TIMEOUT"}
    assert "failed: bench-kernels tests-lwta" in result.stdout
    assert "3 failed" in (out / "tests-lwta.log").read_text()
    assert "stage tests-triton_launch fine" in (out / "gpu.log").read_text()  # after the failures: run, logged


def test_all_stages_passing_exits_zero(tmp_path):
    out = tmp_path / "out"
    result = run_ci(out, {"ROBUSTKERNELS_GPU_CI_FAKE": str(fake_stages(tmp_path, ""))})
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(stage_table(out).values()) == {"ok"} and "all stages passed" in result.stdout


def test_stages_past_the_budget_are_skipped_and_count_as_failed(tmp_path):
    fake = fake_stages(tmp_path, "  info) sleep 3 ;;")
    out = tmp_path / "out"
    result = run_ci(out, {"ROBUSTKERNELS_GPU_CI_FAKE": str(fake), "ROBUSTKERNELS_GPU_CI_BUDGET_S": "2"})
    assert result.returncode != 0
    table = stage_table(out)
    assert table["build"] == "ok" and table["info"] == "TIMEOUT" and table["tests-triton_launch"] == "SKIPPED"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine-without-a-GPU message")
def test_without_a_gpu_it_fails_in_one_line(tmp_path):
    result = run_ci(tmp_path / "out")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(".ci/gpu: cannot validate the GPU paths on this machine: ")
    assert "CPU build" in lines[0] or "no CUDA device" in lines[0]


def test_without_an_output_folder_it_says_how_to_call_it():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "bash .ci/gpu OUT_DIR" in result.stderr


def test_bench_json_keeps_the_cases_measured_before_a_failure(tmp_path, monkeypatch):
    """The bench stages write their JSON after every case: a case that raises is named in
    ``errors``, the cases around it are kept, and the run ends with an error."""
    import json

    import robustkernels.bench as bench
    from robustkernels.bench.cases import Case

    def make(name, fail):
        def build(device, backend):
            if fail and backend is not None:
                raise RuntimeError("kernel exploded")
            x = torch.ones(64)
            return lambda: x + 1

        return Case("toy", name, "fp32", 64, 512, build)

    saved = []
    monkeypatch.setattr(bench, "op_cases", lambda ops, quick: [make("first", False), make("bad", True),
                                                                make("last", False)])
    monkeypatch.setattr(bench, "_backends", lambda device: ["cpp"])
    save = bench.Results.save
    monkeypatch.setattr(bench.Results, "save", lambda self: (saved.append(json.dumps(self.data)), save(self)))
    path = tmp_path / "bench.json"
    with pytest.raises(RuntimeError, match="1 bench case.s. failed: toy bad"):
        bench.main_bench("cpu", ["pgd"], quick=True, json_path=str(path), e2e=False)
    data = json.loads(path.read_text())
    assert [r["case"] for r in data["ops"]] == ["first", "last"] and data["complete"]
    assert data["errors"] == [{"case": "toy bad", "error": "RuntimeError: kernel exploded"}]
    # written as it went: after the first case, before the last
    partial = [json.loads(s) for s in saved]
    assert any([r["case"] for r in p["ops"]] == ["first"] and not p["complete"] for p in partial)
