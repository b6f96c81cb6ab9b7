"""The documentation site's contract: every public function and class of the documented packages
has a docstring (mkdocstrings renders the API reference from them; ``mkdocs build --strict`` in
CI fails on a broken reference); every page is in the nav; CI runs the README's install lines."""

import importlib
import importlib.util
import inspect
import pathlib
import re

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]

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


def _readme_block(name: str) -> str:
    spec = importlib.util.spec_from_file_location("readme_block", ROOT / ".ci" / "readme_block.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.block(name, (ROOT / "README.md").read_text())


def test_ci_runs_the_readmes_install_and_docs_lines_as_written():
    ci = (ROOT / ".ci" / "run").read_text()
    for name in ("install", "docs"):
        assert f'eval "$(python3 .ci/readme_block.py {name})"' in ci
    lines = [line.split("#")[0] for line in (_readme_block("install") + _readme_block("docs")).splitlines()]
    for line in lines:
        if "pip install" in line and "-e " in line:  # an isolated build would pull an unpinned (CUDA) torch
            assert "--no-build-isolation" in line, line
        if re.search(r"\btorch\b(?!attacks)", line) and "pip install" in line:
            assert "torch==" in line, line
    assert "mkdocs build --strict" in _readme_block("docs")


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert [p for p in pages if f": {p}" not in nav] == []


def test_every_attack_docstring_follows_one_template():
    """torchattacks' way: the threat model, the arguments, the shapes and an example, in that order."""
    import robustkernels.attacks as A

    sections = ("Threat model:", "Args:", "Shapes:", "Example:")
    for name in A.__all__:
        cls = getattr(A, name)
        if not (isinstance(cls, type) and issubclass(cls, A.Attack)) or cls in (A.Attack, A.Iterative):
            continue
        doc = cls.__doc__ or ""
        at = [doc.find(s) for s in sections]
        assert -1 not in at and at == sorted(at), f"{name}: the docstring needs {sections} in order"
        assert f"{name}(model" in doc, f"{name}: the example builds the attack"


def test_the_attacks_guides_own_attack_runs_on_the_contract():
    """The attacks guide writes an attack on ``Iterative`` in full: it runs, stays in the ball and
    the bounds, and fools a trained model where PGD on the margin does."""
    from robustkernels.attacks import PGD

    from .models import trained_digits_cnn

    text = (ROOT / "docs" / "guides" / "attacks.md").read_text()
    block = r"```python\n(import torch\nfrom robustkernels.attacks import Iterative.*?)```"
    code = re.search(block, text, re.S).group(1)
    scope = {}
    exec(compile(code, "attacks.md", "exec"), scope)  # noqa: S102 (our own guide's code)
    model, x, y = trained_digits_cnn()
    x, y = x[:60], y[:60]
    x_adv = scope["DecayingPGD"](model, eps=0.1, steps=20, early_stop=True)(x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        ours = (model(x_adv).argmax(1) != y).float().mean()
        pgd = (model(PGD(model, eps=0.1, alpha=0.01, steps=20, loss="margin")(x, y)).argmax(1) != y).float().mean()
    assert ours > 0.1 and ours >= pgd - 0.1
