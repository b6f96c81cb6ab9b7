"""`robustkernels info` and the GPU validation script's CPU-only path."""

import pathlib
import subprocess

import pytest
import torch

from robustkernels import _extension, cli

from .helpers import run_python

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_info_reports_versions_and_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"torch         {torch.__version__}" in out
    assert "triton" in out and "CUDA" in out and "threads" in out
    machine_line = next(line for line in out.splitlines() if line.startswith("machine"))
    assert "vector ISA: ATen" in machine_line and ("AVX" in machine_line or "baseline" in machine_line)
    cpu_line = next(line for line in out.splitlines() if line.strip().startswith("cpu"))
    assert ("cpp" in cpu_line) == _extension.LOADED
    assert ("built and loaded" in out) == _extension.LOADED


@pytest.mark.parametrize("env, expected", [
    ({}, "glibc malloc (default)"),
    ({"MALLOC_TRIM_THRESHOLD_": "1000000000"}, "glibc malloc, MALLOC_TRIM_THRESHOLD_=1000000000"),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "jemalloc (LD_PRELOAD)"),
    ({"THP_MEM_ALLOC_ENABLE": "1"}, "glibc malloc (default); torch THP_MEM_ALLOC_ENABLE=1"),
])
def test_machine_line_names_the_allocator(monkeypatch, env, expected):
    from robustkernels import machine

    for key in ("LD_PRELOAD", "THP_MEM_ALLOC_ENABLE", *machine.KEEP_SETTINGS):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert machine.allocator() == expected
    assert machine.describe().endswith(f"allocator: {expected}")


def test_info_as_module_without_extension():
    result = run_python(
        "import sys; from robustkernels.cli import main; sys.exit(main(['info']))",
        {"ROBUSTKERNELS_DISABLE_EXTENSION": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "NOT loaded (disabled by ROBUSTKERNELS_DISABLE_EXTENSION=1)" in result.stdout
    assert "ops run on: reference" in result.stdout


def test_cli_requires_a_command(capsys):
    with pytest.raises(SystemExit):
        cli.main([])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_script_says_why_it_cannot_run_here(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "gpu"), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(".ci/gpu: cannot validate the GPU paths on this machine:")
    assert "CPU build" in message or "no CUDA device" in message
    assert (tmp_path / "out" / "gpu.log").exists()
    usage = subprocess.run(["bash", str(ROOT / ".ci" / "gpu")], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "OUT_DIR" in usage.stderr
