"""Backend selection: what is available, how it is chosen, and the errors when it cannot run."""

import pytest
import torch

import robustkernels
from robustkernels import BackendUnavailableError, _backend, _extension, ops, use_backend
from robustkernels.ops.philox import philox as philox_op


def test_cpu_backends_listed():
    names = robustkernels.available_backends("cpu")
    assert names[0] == "reference"
    assert ("cpp" in names) == _extension.LOADED
    assert "triton" in names  # conftest sets TRITON_INTERPRET=1
    assert "cuda" not in names


def test_available_backends_accepts_devices():
    assert robustkernels.available_backends(torch.device("cpu")) == robustkernels.available_backends("cpu")
    if not torch.cuda.is_available():
        assert robustkernels.available_backends("cuda") == []


def test_auto_picks_cpp_on_cpu(monkeypatch):
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    expected = "cpp" if _extension.LOADED else "reference"
    assert philox_op.backend_for(torch.device("cpu")) == expected


def test_auto_on_cuda_prefers_triton_then_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_extension, "CUDA_BUILT", True)
    assert philox_op.backend_for(torch.device("cuda")) == "triton"
    monkeypatch.setattr(_backend, "_triton_installed", lambda: False)
    assert philox_op.backend_for(torch.device("cuda")) == "cuda"


def test_use_backend_nests_and_restores():
    assert _backend.requested_backend() == "auto"
    with use_backend("reference"):
        assert philox_op.backend_for(torch.device("cpu")) == "reference"
        with use_backend("triton") as name:
            assert name == "triton"
            assert philox_op.backend_for(torch.device("cpu")) == "triton"
        assert _backend.requested_backend() == "reference"
    assert _backend.requested_backend() == "auto"


def test_use_backend_restores_after_an_error():
    with pytest.raises(ValueError, match="n must be"):
        with use_backend("reference"):
            ops.philox_uniform(-1, 0)
    assert _backend.requested_backend() == "auto"


def test_env_var_chooses(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "reference")
    assert philox_op.backend_for(torch.device("cpu")) == "reference"
    monkeypatch.setenv(_backend.ENV_VAR, " Triton ")
    assert philox_op.backend_for(torch.device("cpu")) == "triton"
    with use_backend("reference"):  # the context manager wins over the environment
        assert philox_op.backend_for(torch.device("cpu")) == "reference"


def test_env_var_bad_name_is_named(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="ROBUSTKERNELS_BACKEND must be one of"):
        ops.philox_uniform(3, 0)


def test_env_var_unavailable_backend_raises_at_the_op(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "cuda")
    with pytest.raises(BackendUnavailableError, match="'cuda' cannot run on device 'cpu'"):
        ops.philox_uniform(3, 0)


@pytest.mark.parametrize("name, error", [("fastest", ValueError), (3, TypeError)])
def test_use_backend_bad_name(name, error):
    with pytest.raises(error, match="name"):
        with use_backend(name):
            pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_use_backend_cuda_without_gpu():
    with pytest.raises(BackendUnavailableError, match="cannot run on this machine"):
        with use_backend("cuda"):
            pass


def test_triton_needs_interpreter_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    assert "triton" not in robustkernels.available_backends("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
            with use_backend("triton"):
                pass


def test_triton_missing_is_explained(monkeypatch):
    monkeypatch.setattr(_backend, "_triton_installed", lambda: False)
    assert "triton" not in robustkernels.available_backends("cpu")
    with pytest.raises(BackendUnavailableError, match="triton is not installed"):
        with use_backend("triton"):
            pass


def test_every_op_implements_every_backend():
    assert set(philox_op.backends) == set(_backend.BACKENDS)


def test_register_backend_rejects_unknown_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        philox_op.register_backend("numba", lambda *a: None)
