"""The import graph of the product: no circles, and every arrow points inwards.

Read from the source (``ast``), not by importing: the rules hold whatever is installed.  Module-
level imports make the graph (those under ``if TYPE_CHECKING:`` are for the type checker only);
imports inside functions are deliberate and lazy, and are checked only where a rule says so.

Layers, outermost first: ``producers`` and ``workers`` use ``shared`` and ``schema``; ``shared``
uses neither; nothing uses ``tests``.  Inside ``shared`` the use cases (``shared.services``) and
the pipeline stages (``shared.pipeline``) sit above delivery, which must not reach up to either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("shared", "workers", "producers", "schema")


@dataclass(frozen=True)
class Import:
    """One import statement of a product module."""

    importer: str
    imported: str
    lazy: bool  # inside a function


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _product_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path
    yield ROOT / "celeryconfig.py"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> Iterator[Import]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, lazy)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    # ``from shared import lifecycle`` imports the module shared.lifecycle.
                    yield Import(module, f"{base}.{alias.name}", lazy)
            yield from visit(child, inner)

    yield from visit(ast.parse(path.read_text(), filename=str(path)), False)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module → the product modules it imports at module level."""
    modules = {_module_name(p) for p in _product_files()}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for path in _product_files():
        for imp in _imports(path):
            if imp.lazy:
                continue
            target = imp.imported
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != imp.importer:
                edges[imp.importer].add(target)
    return edges


def _all_imports() -> list[Import]:
    return [imp for path in _product_files() for imp in _imports(path)]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_the_graph_is_read_from_every_product_module(graph: dict[str, set[str]]) -> None:
    assert {"shared.lifecycle", "shared.services.jobs", "workers.base", "producers.api.app"} <= set(
        graph
    )
    assert "shared.lifecycle" in graph["shared.services.jobs"]


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# (importer prefix, forbidden imported prefixes, even lazily?)
RULES: list[tuple[str, tuple[str, ...], bool]] = [
    ("schema", ("shared", "workers", "producers"), True),
    ("shared", ("workers", "producers"), True),
    ("shared.delivery", ("shared.pipeline", "shared.services"), True),
    ("shared.services", ("shared.pipeline",), True),
    ("shared.summarize", ("shared.pipeline", "shared.services", "shared.delivery"), True),
    ("shared.discord", ("shared.pipeline", "shared.services", "shared.delivery"), True),
    ("shared.llm", ("shared.pipeline", "shared.services", "shared.delivery"), True),
    ("workers", ("producers",), True),
    ("producers", ("workers",), False),
    ("", ("tests",), True),
]


def _starts(module: str, prefix: str) -> bool:
    return prefix == "" or module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "forbidden", "lazy_too"), RULES)
def test_arrows_point_inwards(importer: str, forbidden: tuple[str, ...], lazy_too: bool) -> None:
    broken = [
        f"{imp.importer} imports {imp.imported}" + (" (inside a function)" if imp.lazy else "")
        for imp in _all_imports()
        if _starts(imp.importer, importer)
        and (lazy_too or not imp.lazy)
        and any(_starts(imp.imported, f) for f in forbidden)
    ]
    assert broken == []


def test_only_the_embedded_mode_and_the_worker_command_load_workers() -> None:
    """A producer publishes by task name; worker code runs in its process only when the CLI
    runs the embedded worker or starts a worker."""
    users = {
        imp.importer
        for imp in _all_imports()
        if _starts(imp.importer, "producers") and _starts(imp.imported, "workers")
    }
    assert users <= {"producers.cli.jobrun", "producers.cli.processes"}
