"""`import robustkernels` never breaks: without the extension, ops run on the reference."""

import pytest

from robustkernels import _extension

from .helpers import run_python

CHECK_FALLBACK = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import robustkernels
    import robustkernels.ops
ours = [w for w in caught if "robustkernels" in str(w.message)]
assert len(ours) == 1, [str(w.message) for w in ours]
print("WARNING:", ours[0].message)
assert "cpp" not in robustkernels.available_backends("cpu")
from robustkernels.ops.philox import philox, reference as philox_ref
assert philox.backend_for(__import__("torch").device("cpu")) == "reference"
import torch
assert torch.equal(robustkernels.ops.philox_uniform(9, 4), philox_ref.philox_uniform(9, 4))
try:
    with robustkernels.use_backend("cpp"):
        pass
except robustkernels.BackendUnavailableError as exc:
    print("ERROR:", exc)
else:
    raise AssertionError("use_backend('cpp') should fail without the extension")
"""


def test_import_with_extension_disabled():
    result = run_python(CHECK_FALLBACK, {"ROBUSTKERNELS_DISABLE_EXTENSION": "1"})
    assert result.returncode == 0, result.stderr
    assert "WARNING: robustkernels: the compiled extension is not available" in result.stdout
    assert "ROBUSTKERNELS_DISABLE_EXTENSION=1" in result.stdout
    assert "ERROR: backend 'cpp' cannot run on this machine (extension not loaded" in result.stdout


BROKEN_EXTENSION = """
import importlib.abc, sys

class BrokenExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "robustkernels._C":
            raise ImportError("_C.so: undefined symbol: _ZN3c104cuda9SetDeviceEa")
        return None

sys.meta_path.insert(0, BrokenExtension())
"""


def test_import_with_extension_failing_to_load():
    result = run_python(BROKEN_EXTENSION + CHECK_FALLBACK, {"ROBUSTKERNELS_DISABLE_EXTENSION": "0"})
    assert result.returncode == 0, result.stderr
    assert "undefined symbol" in result.stdout


@pytest.mark.skipif(not _extension.LOADED, reason="extension not built here")
def test_extension_loaded_in_this_process():
    assert _extension.REASON == ""
