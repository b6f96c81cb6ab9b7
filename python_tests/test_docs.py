"""The documentation site's contract: every public function and class of the documented packages
has a docstring (mkdocstrings renders the API reference from them; ``mkdocs build --strict`` in
CI fails on a broken reference)."""

import importlib
import inspect

import pytest

PACKAGES = ("attacks", "eval", "train", "certify", "defences", "ops", "nn", "models", "data")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_a_docstring(package):
    module = importlib.import_module(f"robustkernels.{package}")
    names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
    missing = []
    for name in names:
        value = getattr(module, name)
        doc = (value.__doc__ or "").strip() if inspect.isclass(value) else inspect.getdoc(value)
        if inspect.isclass(value) and doc.startswith(f"{value.__name__}("):  # dataclass's generated signature
            doc = ""
        if (inspect.isfunction(value) or inspect.isclass(value)) and not doc:
            missing.append(name)
        elif callable(value) and not inspect.isclass(value) and not (inspect.getdoc(value) or "").strip():
            missing.append(name)
    assert not missing, f"robustkernels.{package}: no docstring for {missing}"
