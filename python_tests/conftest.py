"""Test set-up. TRITON_INTERPRET must be set before any Triton kernel is decorated, so it is
set here, before robustkernels (or triton) is imported."""

import os
import pathlib

os.environ.setdefault("TRITON_INTERPRET", "1")  # the CPU tests' default; cuda tests refuse it (below)


def triton_interpreted() -> bool:
    """Whether our Triton kernels were decorated under TRITON_INTERPRET=1 (the setting is read
    when a kernel is defined, so it is the kernels, not the variable, that say)."""
    from robustkernels.ops.noise import triton as noise

    return type(noise._noise_add_kernel).__name__ == "InterpretedFunction"


def pytest_runtest_setup(item):
    """cuda-marked tests are there to check the compiled kernels on the GPU: under Triton's
    interpreter they would check the interpreter, so they fail at once and say how to run them."""
    if "cuda" not in item.keywords or not torch.cuda.is_available():
        return
    if "triton" in robustkernels.available_backends("cuda") and (
            os.environ.get("TRITON_INTERPRET") == "1" or triton_interpreted()):
        pytest.fail("cuda tests check compiled Triton kernels, not the interpreter: run them with "
                    "TRITON_INTERPRET=0 (e.g. TRITON_INTERPRET=0 pytest -m cuda)", pytrace=False)

import pytest  # noqa: E402
import torch  # noqa: E402

import robustkernels  # noqa: E402

CPU_BACKENDS = ("reference", "cpp", "triton")


def backend_params(backends=CPU_BACKENDS, device="cpu"):
    """pytest params for each backend; one that cannot run here is skipped with the reason.

    Set ROBUSTKERNELS_REQUIRE_BACKENDS=cpp,triton (as CI does) to make a missing one a failure.
    """
    available = robustkernels.available_backends(device)
    params = []
    for name in backends:
        marks = []
        if name not in available:
            marks.append(pytest.mark.skip(reason=f"backend {name!r} unavailable on {device}"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def pytest_configure(config):
    required = [b for b in os.environ.get("ROBUSTKERNELS_REQUIRE_BACKENDS", "").split(",") if b]
    missing = [b for b in required if b not in robustkernels.available_backends("cpu")]
    if missing:
        raise pytest.UsageError(
            f"ROBUSTKERNELS_REQUIRE_BACKENDS asks for {missing}, not available on cpu "
            f"(extension: {robustkernels._extension.REASON or 'loaded'})"
        )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


DATA_ENV, REQUIRE_DATA_ENV = "ROBUSTKERNELS_DATA", "ROBUSTKERNELS_REQUIRE_DATA"


@pytest.fixture(scope="session")
def shared_data():
    """The real data files (MNIST in ``mnist/``, CIFAR-10 in ``cifar-10-batches-py/``), never
    downloaded: ``$ROBUSTKERNELS_DATA``, else ``../shared/data`` beside the checkout. Absent, the
    tests that read them skip saying where the files go - or fail where
    ``ROBUSTKERNELS_REQUIRE_DATA=1`` (CI) asks for them."""
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    path = pathlib.Path(os.environ.get(DATA_ENV) or default)
    if not path.is_dir():
        message = (f"real data files not found in {path}: put MNIST (mnist/) and CIFAR-10 (cifar-10-batches-py/) "
                   f"there or set {DATA_ENV} to their folder (README, 'Tests')")
        if os.environ.get(REQUIRE_DATA_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


REQUIRE_EXTRAS_ENV = "ROBUSTKERNELS_REQUIRE_EXTRAS"


def optional_package(name: str):
    """The module ``name`` of an optional extra (``lightning``, ``accelerate``); missing, the test
    skips saying how to install it - or fails where ``ROBUSTKERNELS_REQUIRE_EXTRAS=1`` (CI) asks."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"{name} is not installed: pip install -e '.[{name}]' (README, 'Install')"
        if os.environ.get(REQUIRE_EXTRAS_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
