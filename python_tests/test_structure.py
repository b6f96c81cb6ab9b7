"""The package's shape, checked: no import circle between modules, arrows between packages only
going one way, no private name imported across packages, each op's ``reference`` importing
nothing of ours but other references."""

import ast
import collections
import pathlib

import pytest

import robustkernels

ROOT = pathlib.Path(robustkernels.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports():
    """(importer, imported module, imported name or None) for every import of ours, lazy ones too."""
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                if target.split(".")[0] != "robustkernels":
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    yield (module, full, None) if full in MODULES else (module, target, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "robustkernels":
                        yield module, alias.name, None


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _assert_no_circle(graph: dict, what: str) -> None:
    done, active = set(), []

    def visit(node):
        if node in active:
            raise AssertionError(f"{what} circle: " + " -> ".join(active[active.index(node):] + [node]))
        if node in done:
            return
        active.append(node)
        for other in sorted(graph.get(node, ())):
            visit(other)
        active.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)


def test_no_import_circle_between_modules():
    graph = collections.defaultdict(set)
    for importer, imported, _ in _imports():
        if imported in MODULES and imported != importer:
            graph[importer].add(imported)
    _assert_no_circle(graph, "import")


def test_packages_import_one_way_and_references_import_nothing_of_ours():
    """Arrows between the top-level packages and modules form no circle (the package root's
    __init__, which re-exports the API, stands apart); an op's ground truth
    (``ops/<op>/reference.py``) imports only other ops' references."""
    edges = collections.defaultdict(set)
    for importer, imported, _ in _imports():
        a, b = _top(importer), _top(imported)
        if a and b and a != b:
            edges[a].add(b)
    _assert_no_circle(edges, "package")
    references = [m for m in MODULES if m.endswith(".reference")]
    assert len(references) >= 4, references
    leaks = [(a, b) for a, b, _ in _imports() if a in references and not b.endswith(".reference")]
    assert not leaks, leaks


def test_no_private_name_crosses_a_package():
    crossing = [(importer, f"{imported}.{name}") for importer, imported, name in _imports()
                if name and name.startswith("_") and not name.startswith("__") and _top(importer) != _top(imported)]
    assert not crossing, crossing


def test_no_function_body_over_sixty_lines():
    """Functions fit on a screen: no body (docstring excluded) longer than 60 lines."""
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                has_doc = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                start = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
                if node.end_lineno - start + 1 > 60:
                    long.append(f"{module}.{node.name}: {node.end_lineno - start + 1} lines")
    assert not long, long


def test_no_attack_class_over_fifteen_methods():
    """An attack's parts stay small enough to hold one at a time (the oracle, the starts, the loop
    and the attack itself): no class in ``attacks/`` defines more than 15 methods."""
    big = []
    for module, path in MODULES.items():
        if not module.startswith("robustkernels.attacks"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                if len(methods) > 15:
                    big.append(f"{module}.{node.name}: {len(methods)} methods")
    assert not big, big


def _params(node) -> list[str]:
    a = node.args
    return [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]


def test_at_most_one_function_over_twelve_parameters_and_no_copied_signatures():
    """Outside kernels and autograd Functions, one public entry point (``autoattack``) may take
    more than 12 parameters; settings that travel further go as one record. No two long
    signatures are copies of each other (an op's backends and its fake take its schema's
    arguments by construction: ``ops`` and ``reference`` are its kernels)."""
    long, signatures = [], collections.Counter()
    for module, path in MODULES.items():
        if any(f".{part}." in module + "." for part in ("kernels", "ops", "reference")):
            continue
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        autograd = {id(f) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                    and any("Function" in ast.unparse(b) for b in c.bases) for f in c.body}
        for f in functions:
            params = _params(f)
            if len(params) > 8:
                signatures[tuple(params)] += 1
            if len(params) > 12 and id(f) not in autograd:
                long.append(f"{module}.{f.name}: {len(params)}")
    assert len(long) <= 1, long
    copied = [sig for sig, n in signatures.items() if n > 1]
    assert not copied, copied


def test_no_version_fast_test_outside_the_version_table_and_the_report():
    """A version's behaviour lives in its row of ``eval/aa_versions`` (the report reads the row's
    text): no ``version == "fast"`` (or ``in (..., "fast")``) anywhere else."""
    allowed = {"robustkernels.eval.aa_versions", "robustkernels.eval.aa_report"}
    found = []
    for module, path in MODULES.items():
        if module in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            names = [ast.unparse(s) for s in sides]
            if any(n.split(".")[-1].endswith("version") for n in names) and any(
                    isinstance(c, ast.Constant) and c.value == "fast" for s in sides for c in ast.walk(s)):
                found.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_an_op_is_one_room_on_each_side():
    """Each op with compiled kernels lives in ``ops/<op>/`` (its checks and custom op, its reference)
    and ``csrc/<op>/`` (its CPU kernel, CUDA kernel and CUDA registration); no kernel source lies
    outside a room, and no C++ file writes a kernel's schema (``m.def`` is for the build facts)."""
    csrc = ROOT.parent / "csrc"
    if not csrc.is_dir():
        pytest.skip("csrc/ is not beside the package (an installed wheel)")
    rooms = sorted(p.name for p in (ROOT / "ops").iterdir() if (p / "__init__.py").is_file())
    assert rooms == ["lwta", "noise", "pgd", "philox"], rooms
    for room in rooms:
        assert (ROOT / "ops" / room / "reference.py").is_file(), room
        assert {"cpu.cpp", "kernel.cu", "cuda.cu"} <= {p.name for p in (csrc / room).iterdir()}, room
    sources = [p.relative_to(csrc).as_posix() for p in csrc.rglob("*") if p.suffix in (".cpp", ".cu")]
    stray = [s for s in sources if s != "ops.cpp" and s.split("/")[0] not in rooms]
    assert not stray, stray
    defs = [s for s in sources if "m.def(" in (csrc / s).read_text() and s != "ops.cpp"]
    assert not defs, defs
