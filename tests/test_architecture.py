"""The shape of the house, checked: layers point down only, no import cycles, small modules and functions.

Every import counts, including the ones inside functions and under ``TYPE_CHECKING`` (a lazy import is still a
dependency). A module imports only from its own layer and the layers below it (``LAYERS``, ground first); a new
module must be given a layer here, which is the moment to decide where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dogbreed"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60  # the body: signature and docstring not counted

# Ground first. A name stands for that module and everything below it ("dogbreed" alone: the package face only).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "ground",
        (
            "dogbreed.version",
            "dogbreed.errors",
            "dogbreed.config",
            "dogbreed.files",
            "dogbreed.procs",
            "dogbreed.pause",
            "dogbreed.breeds",
            "dogbreed.imagenet",
            "dogbreed.imaging",
            "dogbreed.metrics",
        ),
    ),
    ("store", ("dogbreed.store",)),
    ("formats", ("dogbreed.formats",)),
    ("datasets", ("dogbreed.datasets",)),
    ("models", ("dogbreed.models",)),
    ("engines", ("dogbreed.engines",)),
    (
        "use cases",
        (
            "dogbreed.ingest",
            "dogbreed.labels",
            "dogbreed.records",
            "dogbreed.predict",
            "dogbreed.jobqueue",
            "dogbreed.worker",
            "dogbreed.evaluate",
            "dogbreed.checks",
            "dogbreed.export",
            "dogbreed.train",
            "dogbreed.viz",
        ),
    ),
    ("python api", ("dogbreed.api", "dogbreed")),
    ("interfaces", ("dogbreed.cli", "dogbreed.serve", "dogbreed.__main__")),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _known(target: str) -> str | None:
    """The package module ``target`` names (a module, or the module holding that name), if any."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def imports_of(name: str) -> set[str]:
    """Every dogbreed module ``name`` imports, anywhere in its code. ``from dogbreed import x`` of a submodule
    imports that submodule; of any other name (``__version__``), the package face."""
    base = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(TREES[name]):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                module = ".".join(anchor + ([module] if module else []))
            targets = [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            known = _known(target)
            if known and known != name and not name.startswith(known + "."):  # a package's face: Python's own
                found.add(known)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for index, (_, names) in enumerate(LAYERS):
        for prefix in names:
            matches = module == prefix or (prefix != "dogbreed" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in MODULES if layer_of(name) is None)
    assert not unplaced, f"give these modules a layer in tests/test_architecture.py LAYERS: {unplaced}"


def test_there_are_no_import_cycles():
    assert import_cycles(GRAPH) == []


def test_imports_point_down_only():
    upward = []
    for name, targets in sorted(GRAPH.items()):
        own = layer_of(name)
        for target in sorted(targets):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not upward, "\n".join(upward)


def test_modules_are_small():
    big = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"over {MAX_MODULE_LINES} lines: {big}"


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return 0 if not body else body[-1].end_lineno - body[0].lineno + 1


def test_functions_are_small():
    long = [
        f"{name}.{node.name} ({_body_lines(node)} lines)"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION_LINES
    ]
    assert not long, f"function bodies over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checker_sees_what_it_must():
    """The rules above can fail: a cycle, an upward import and an import inside a function are all found."""
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("dogbreed.models.sources") < layer_of("dogbreed.engines.torch") < layer_of("dogbreed.cli.train")
    assert layer_of("dogbreed") == layer_of("dogbreed.api") and layer_of("dogbreed.store.jobs") == 1
    assert "dogbreed.models.sources" in GRAPH["dogbreed.predict"]  # imported inside functions too
    top_level = {n.module for n in TREES["dogbreed.api"].body if isinstance(n, ast.ImportFrom)}
    assert "dogbreed.ingest" not in top_level and "dogbreed.ingest" in GRAPH["dogbreed.api"]  # a lazy import


@pytest.mark.parametrize("name", ["dogbreed.engines", "dogbreed.models.sources", "dogbreed.store.db"])
def test_light_modules_import_nothing_heavy_at_the_top(name):
    heavy = {"torch", "torchvision", "openvino", "matplotlib", "nncf", "fastapi", "uvicorn"}
    top = [n for n in TREES[name].body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & heavy
