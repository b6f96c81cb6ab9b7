"""setup.py: the CUDA kernels only when asked (ROBUSTKERNELS_CUDA=1), and an arch list that works
with no GPU visible (torch's default fails there)."""

import pathlib
import runpy

import pytest
import torch
import torch.utils.cpp_extension as cpp_extension

from robustkernels.kernels.cuda_arch import DEFAULT_CUDA_ARCH_LIST, describe, resolve_cuda_arch_list

SETUP = pathlib.Path(__file__).resolve().parents[1] / "setup.py"


@pytest.fixture
def setup_py(monkeypatch):
    """setup.py's functions (its setup() call runs only as __main__), with a CUDA torch faked."""
    for name in ("ROBUSTKERNELS_CUDA", "TORCH_CUDA_ARCH_LIST"):  # set first: restored even if setup.py sets it
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    module = runpy.run_path(str(SETUP), run_name="setup_under_test")
    module["build_cuda"].__globals__["CUDA_HOME"] = "/usr/local/cuda"  # nvcc "found"
    return module


def test_cuda_build_is_opt_in_even_with_a_cuda_torch_and_nvcc(setup_py, monkeypatch, capsys):
    assert setup_py["build_cuda"]() is False
    assert "ROBUSTKERNELS_CUDA=1 builds the CUDA kernels too" in capsys.readouterr().out
    monkeypatch.setenv("ROBUSTKERNELS_CUDA", "0")
    assert setup_py["build_cuda"]() is False
    monkeypatch.setenv("ROBUSTKERNELS_CUDA", "1")
    assert setup_py["build_cuda"]() is True


def test_cuda_build_asked_for_without_cuda_torch_says_why(setup_py, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setenv("ROBUSTKERNELS_CUDA", "1")
    with pytest.raises(RuntimeError, match="torch.version.cuda=None"):
        setup_py["build_cuda"]()
    monkeypatch.setenv("ROBUSTKERNELS_CUDA", "yes")
    with pytest.raises(ValueError, match="ROBUSTKERNELS_CUDA must be 0 or 1"):
        setup_py["build_cuda"]()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine-without-a-GPU default")
def test_no_gpu_visible_builds_for_the_default_archs(setup_py, monkeypatch, capsys):
    # what torch's builder does with TORCH_CUDA_ARCH_LIST unset and no GPU: an IndexError
    with pytest.raises(IndexError):
        cpp_extension._get_cuda_arch_flags()
    assert setup_py["cuda_arch_list"]() == (DEFAULT_CUDA_ARCH_LIST, "default")
    assert "8.0;9.0+PTX (the default" in capsys.readouterr().out
    flags = cpp_extension._get_cuda_arch_flags()  # now set: sm_80, sm_90 and PTX for compute_90
    assert {"-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
            "-gencode=arch=compute_90,code=compute_90"} <= set(flags)


def test_arch_list_resolution():
    assert resolve_cuda_arch_list(None, []) == ("8.0;9.0+PTX", "default")
    assert resolve_cuda_arch_list("  ", []) == ("8.0;9.0+PTX", "default")
    assert resolve_cuda_arch_list("7.5 8.6;;9.0+PTX", []) == ("7.5;8.6;9.0+PTX", "env")
    assert resolve_cuda_arch_list(None, [(9, 0), (8, 0), (9, 0)]) == ("8.0;9.0+PTX", "visible")
    assert resolve_cuda_arch_list("8.6", [(9, 0)]) == ("8.6", "env")
    assert describe("8.0;9.0+PTX", "default").startswith("8.0;9.0+PTX (the default: TORCH_CUDA_ARCH_LIST unset")
