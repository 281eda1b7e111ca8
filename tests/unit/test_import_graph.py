"""The product's import graph: no circles, and nothing imports a layer above its own.

Read from the source with :mod:`ast` (nothing is imported), counting imports inside functions
too (a lazy import that closes a circle is still a circle); only ``if TYPE_CHECKING:`` blocks are
left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schema", "shared", "workers", "producers")

#: Layers, lowest first: a module may import its own layer and those below, never above.
LAYERS = ("schema", "shared", "workers", "producers")
#: The few places a lower layer reaches up, each for a reason.
ALLOWED_UPWARD = {
    # Alembic's entry point reads the database URL from the settings root.
    ("schema.migrations.env", "shared.db.engine"),
    ("schema.migrations.env", "shared.settings"),
}
#: Producers publish by task name; only the worker command and the embedded mode run workers.
PRODUCERS_RUNNING_WORKERS = {"producers.cli.processes", "producers.cli.jobrun"}

#: Inside ``shared``: packages that must not reach into the ones listed (they sit below them).
SHARED_BELOW = {
    "shared.delivery": ("shared.pipeline", "shared.services", "shared.digests"),
    "shared.discord": (
        "shared.delivery",
        "shared.pipeline",
        "shared.services",
        "shared.llm",
        "shared.summarize",
    ),
    "shared.llm": ("shared.pipeline", "shared.services", "shared.delivery", "shared.discord"),
    "shared.summarize": ("shared.pipeline", "shared.services", "shared.delivery"),
    "shared.ratelimit": (
        "shared.pipeline",
        "shared.services",
        "shared.delivery",
        "shared.discord",
        "shared.llm",
    ),
    "shared.services": ("shared.pipeline",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found["celeryconfig"] = ROOT / "celeryconfig.py"
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            yield from (n for body in child.orelse for n in [body, *_walk(body)])
            continue
        yield child
        yield from _walk(child)


def imports_of(path: Path) -> set[str]:
    """The product modules ``path`` imports (``from pkg import submodule`` → the submodule)."""
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(sub for sub in subs if sub in MODULES)
            if any(sub not in MODULES for sub in subs):
                found.add(node.module)
    return {name for name in found if name in MODULES}


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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


def test_the_checker_finds_a_circle_and_an_upward_import() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nimport y\n"
    )
    assert [n.names[0].name for n in _walk(tree) if isinstance(n, ast.Import)] == ["y"]


def test_the_product_has_no_import_circles() -> None:
    assert _circles(GRAPH) == []


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else 0


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_its_own(module: str) -> None:
    upward = {
        target
        for target in GRAPH[module]
        if _layer(target) > _layer(module) and (module, target) not in ALLOWED_UPWARD
    }
    assert upward == set()


def test_producers_do_not_import_worker_code() -> None:
    reaching = {
        module
        for module, targets in GRAPH.items()
        if module.startswith("producers.") and any(t.startswith("workers") for t in targets)
    }
    assert reaching == PRODUCERS_RUNNING_WORKERS


def test_shared_packages_do_not_reach_into_the_ones_above_them() -> None:
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for low, above in SHARED_BELOW.items()
        if module == low or module.startswith(low + ".")
        for target in targets
        if any(target == a or target.startswith(a + ".") for a in above)
    )
    assert wrong == []
