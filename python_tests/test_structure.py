"""The package's shape, checked: no import circle between modules, arrows between packages only
going one way, no private name imported across packages, ``reference/`` importing nothing of
ours."""

import ast
import collections
import pathlib

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


def test_packages_import_one_way_and_reference_imports_nothing_of_ours():
    """Arrows between the top-level packages and modules form no circle (the package root's
    __init__, which re-exports the API, stands apart)."""
    edges = collections.defaultdict(set)
    for importer, imported, _ in _imports():
        a, b = _top(importer), _top(imported)
        if a and b and a != b:
            edges[a].add(b)
    assert not edges["reference"], edges["reference"]
    _assert_no_circle(edges, "package")


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
