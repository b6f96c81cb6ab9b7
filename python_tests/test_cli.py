"""`robustkernels info`."""

import pytest
import torch

from robustkernels import _extension, cli

from .helpers import run_python


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
