"""Backend selection: what is available, how it is chosen, and the errors when it cannot run."""

import os
import subprocess
import sys

import pytest
import torch

import robustkernels
from robustkernels import BackendUnavailableError, _backend, _extension, ops, use_backend
from robustkernels.ops.philox import philox as philox_op

from .helpers import run_python


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


@pytest.mark.skipif(not _extension.LOADED, reason="the C++ extension is not built")
def test_cpu_isa_switch_runs_each_variant_with_the_same_results(tmp_path):
    """ROBUSTKERNELS_CPU_ISA caps the C++ kernels' ISA variant (to measure AVX2 on an AVX-512
    machine): each variant reports itself and computes the same values - elementwise ops bitwise,
    reductions (whose summation order follows the vector width) to rounding."""
    code = (
        "import sys, torch; from robustkernels import ops, machine\n"
        "torch.manual_seed(0); x = torch.rand(4, 3, 33, 35); g = torch.randn_like(x); h = torch.randn(8, 6, 9, 9)\n"
        "out = dict(isa=machine.kernel_isa(), u=ops.philox_uniform(1001, 5), n=ops.philox_normal(1001, 5),\n"
        "           linf=ops.pgd_step(x, x.flip(0), g, step=0.01, eps=0.03),\n"
        "           l2=ops.pgd_step(x, x.flip(0), g, step=0.1, eps=0.5, norm='l2'),\n"
        "           lwta=ops.lwta(h, generator=torch.Generator().manual_seed(1)),\n"
        "           noisy=ops.noisy_weight(h, 0.25, generator=torch.Generator().manual_seed(2)))\n"
        "torch.save(out, sys.argv[1])\n")
    results = {}
    for isa in ("avx512", "avx2", "baseline"):
        path = tmp_path / f"{isa}.pt"
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                              env={**os.environ, "ROBUSTKERNELS_CPU_ISA": isa}, timeout=300)
        assert proc.returncode == 0, proc.stderr
        results[isa] = torch.load(path, weights_only=True)
    assert results["baseline"]["isa"] == "baseline"
    assert results["avx2"]["isa"] in ("AVX2", "baseline")  # capped at what the CPU has
    for isa in ("avx2", "baseline"):
        for key in ("u", "n", "linf", "lwta"):
            assert torch.equal(results[isa][key], results["avx512"][key]), (isa, key)
        for key in ("l2", "noisy"):
            torch.testing.assert_close(results[isa][key], results["avx512"][key], rtol=1e-6, atol=1e-6)


def test_auto_on_cuda_picks_per_dtype(monkeypatch):
    """Triton first on CUDA, but its kernels refuse fp64: fp64 goes to the CUDA C++ kernels
    (checked with the availability faked, so it runs on a machine without a GPU)."""
    monkeypatch.setattr(_backend, "available_backends",
                        lambda device: ["reference", "cuda", "triton"] if torch.device(device).type == "cuda"
                        else ["reference", "cpp"])
    cuda = torch.device("cuda")
    assert _backend.resolve(cuda, _backend.BACKENDS, torch.float32) == "triton"
    assert _backend.resolve(cuda, _backend.BACKENDS, torch.bfloat16) == "triton"
    assert _backend.resolve(cuda, _backend.BACKENDS, torch.float64) == "cuda"
    assert _backend.resolve(cuda, ("reference", "triton"), torch.float64) == "reference"  # no CUDA kernel: eager
    assert _backend.resolve(cuda) == "triton"  # no tensor to look at (philox): Triton
    from robustkernels.ops.pgd import pgd_step_op
    assert pgd_step_op.backend_for(cuda, torch.float64) == "cuda"
    assert pgd_step_op.backend_for(torch.device("cpu"), torch.float64) == "cpp"


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_auto_runs_every_dtype_on_a_gpu(dtype):
    x = torch.rand(4, 3, 8, 8, device="cuda", dtype=dtype)
    out = ops.pgd_step(x, x.flip(0), torch.randn_like(x), step=0.01, eps=0.03)
    assert out.dtype == dtype and torch.isfinite(out).all()
    h = torch.randn(4, 6, 5, 5, device="cuda", dtype=dtype)
    assert ops.lwta(h).dtype == dtype and ops.noisy_weight(h, 0.25).dtype == dtype


def test_every_compiled_kernel_is_declared_once_and_implemented_on_the_cpu():
    """Each KernelOp with a compiled backend declares ``robustkernels_C::<kernel>`` from its own
    schema (csrc/ writes none) and csrc/<op>/cpu.cpp implements it."""
    import robustkernels.ops  # noqa: F401 (registers every op)
    from robustkernels.ops._registry import REGISTERED

    if not robustkernels._extension.LOADED:
        pytest.skip(f"the compiled extension is not loaded: {robustkernels._extension.REASON}")
    compiled = [op for op in REGISTERED if op.compiled]
    assert len(compiled) >= 6, [op.name for op in REGISTERED]
    for op in compiled + [None]:
        kernel = "philox_fill_" if op is None else op.compiled
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"robustkernels_C::{kernel}", "CPU"), kernel
        if op is not None:
            ours = str(op.op._opoverload._schema).split("(", 1)[1].replace("SymInt", "int")
            theirs = str(getattr(torch.ops.robustkernels_C, kernel).default._schema).split("(", 1)[1]
            assert ours == theirs, (op.name, ours, theirs)


def test_a_schema_the_cpp_kernel_disagrees_with_is_refused_when_declared():
    """The dispatcher checks each C++ kernel's signature against the one Python declaration: a
    declaration that disagrees (here ``l2`` an int) fails at import, never at a call."""
    if not robustkernels._extension.LOADED:
        pytest.skip(f"the compiled extension is not loaded: {robustkernels._extension.REASON}")
    code = f"""
import torch
torch.ops.load_library({robustkernels._C.__file__!r})
lib = torch.library.Library("robustkernels_C", "FRAGMENT")
try:
    lib.define("pgd_step_(Tensor(a!) out, Tensor x_adv, Tensor x_nat, Tensor grad, Tensor step, Tensor eps, "
               "Tensor lo, Tensor hi, int l2) -> ()")
except RuntimeError as exc:
    assert "doesn't match the expected function schema" in str(exc), exc
    print("refused")
"""
    result = run_python(code)
    assert result.stdout.strip() == "refused", result.stderr


def test_cuda_tests_refuse_the_triton_interpreter(monkeypatch):
    """On a GPU machine, a cuda-marked test run under TRITON_INTERPRET=1 (conftest's CPU default)
    fails at set-up and says to run with TRITON_INTERPRET=0; other tests are left alone."""
    from types import SimpleNamespace

    from robustkernels.ops.noise import triton  # noqa: F401 (decorated now, under conftest's TRITON_INTERPRET=1)

    from . import conftest

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(robustkernels, "available_backends", lambda device="cpu": ["reference", "triton"])
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(pytest.fail.Exception, match="TRITON_INTERPRET=0"):
        conftest.pytest_runtest_setup(SimpleNamespace(keywords={"cuda": True}))
    conftest.pytest_runtest_setup(SimpleNamespace(keywords={}))  # not a cuda test: runs
    # the kernels, not only the variable: these were decorated by the interpreter in this process
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if conftest.triton_interpreted():
        with pytest.raises(pytest.fail.Exception, match="not the interpreter"):
            conftest.pytest_runtest_setup(SimpleNamespace(keywords={"cuda": True}))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_tensors_on_the_second_gpu(backend):
    """Inputs on cuda:1 while cuda:0 is current: every op runs there (launch guards), outputs on
    cuda:1, the same values as on the CPU reference backend."""
    torch.manual_seed(13)
    x, g = torch.rand(4, 6, 5, 5), torch.randn(4, 6, 5, 5)
    one = torch.device("cuda", 1)
    assert torch.cuda.current_device() == 0
    with use_backend(backend):
        pgd = ops.pgd_step(x.to(one), x.flip(0).to(one), g.to(one), step=0.01, eps=0.03)
        lwta = ops.lwta(g.to(one), generator=torch.Generator().manual_seed(1))
        noisy = ops.noisy_weight(g.to(one), 0.25, generator=torch.Generator().manual_seed(2))
        draws = ops.philox_normal(1000, 5, 7, device=one, per_block=4)
    with use_backend("reference"):
        expected = (ops.pgd_step(x, x.flip(0), g, step=0.01, eps=0.03),
                    ops.lwta(g, generator=torch.Generator().manual_seed(1)),
                    ops.philox_normal(1000, 5, 7, per_block=4))
    for got in (pgd, lwta, noisy, draws):
        assert got.device == one
    assert torch.equal(pgd.cpu(), expected[0]) and torch.equal(lwta.cpu(), expected[1])
    assert torch.equal(draws.cpu(), expected[2])
    torch.testing.assert_close(noisy.cpu(), ops.noisy_weight(g, 0.25, generator=torch.Generator().manual_seed(2)),
                               rtol=1e-6, atol=1e-6)  # std: the device's torch.std, last bit
