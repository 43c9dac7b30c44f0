"""The package's layers: lower parts never import higher ones, and modules form no cycle.

Read from the source with ``ast`` (nothing is imported): every relative import, at the top
of a module or inside a function, except those under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import subplan

SOURCE = Path(subplan.__file__).parent

# Lowest first. A module may import from its own part and from parts of lower layers.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer)
    for layer in (
        {"_errors", "_clock", "_fs", "_release", "_gc"},
        {"_model"},
        {"_render", "_decompose", "_inventory"},
        {"_project"},
        {"_store", "_limit", "_ratelimit"},
        {"_workspace"},
        {"_dispatch"},
        {"_command"},
        {"_durable"},
        {"_backends"},
        {"_options"},
        {"_run"},
        {"_report", "_integrate", "testing"},
        {"__init__"},
        {"cli"},
        {"__main__"},
    )
)

# Cycles among modules still to be cut: none. A new one fails the test below.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The top-level part of ``subplan.X.Y``: ``X`` (``__init__`` for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> nx.DiGraph:
    modules = {module_name(p): p for p in SOURCE.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]

        def visit(node: ast.AST, name: str = name, package: str = package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, ast.ImportFrom) and child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                    for alias in child.names:
                        full = f"{target}.{alias.name}"
                        found = full if full in modules else target
                        if found in modules and found != name:
                            graph.add_edge(name, found, line=child.lineno)
                visit(child)

        visit(ast.parse(path.read_text(encoding="utf-8")))
    return graph


def layer_of(part: str) -> int:
    for index, layer in enumerate(LAYERS):
        if part in layer:
            return index
    raise AssertionError(f"the part {part} is in no layer: add it to LAYERS")


def test_every_part_is_in_a_layer() -> None:
    for module in imports():
        layer_of(part_of(module))


def test_no_part_imports_a_higher_or_a_sibling_part() -> None:
    graph = imports()
    wrong = []
    for a, b, data in graph.edges(data=True):
        pa, pb = part_of(a), part_of(b)
        if pa != pb and layer_of(pa) <= layer_of(pb):
            wrong.append(f"{a} (line {data['line']}) imports {b}")
    assert [] == sorted(wrong)


def test_modules_form_no_cycle_beyond_the_known_ones() -> None:
    cycles = [c for c in nx.strongly_connected_components(imports()) if len(c) > 1]
    assert sorted(map(sorted, cycles)) == sorted(map(sorted, KNOWN_CYCLES))


def test_the_check_sees_imports_inside_functions_and_skips_type_checking_ones() -> None:
    # A run's setup reaches a dask cluster through an import inside a function: the
    # check must see it. The dask backend names Setup only for the type checker, which
    # makes no cycle at run time: the check must not see that one.
    graph = imports()
    assert graph.has_edge("subplan._backends._setup", "subplan._backends._dask_pool")
    assert not graph.has_edge("subplan._backends._dask", "subplan._backends._setup")
