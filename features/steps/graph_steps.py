"""Steps for import graphs: a project written to a temporary directory, its graph built."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from behave import given, then, when

from subplan import import_graph


def _write(context: Any, files: dict[str, str]) -> None:
    if not hasattr(context, "graph_root"):
        context.graph_root = Path(tempfile.mkdtemp(prefix="subplan-graph-"))
        context.graph_files = []
    for path, text in files.items():
        full = context.graph_root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text.replace("\\n", "\n") + "\n")
        context.graph_files.append(path)


@given('a project where "{importer}" holds "{source}" and "{imported}" holds "{target}"')
def step_two_files(context: Any, importer: str, source: str, imported: str, target: str) -> None:
    _write(context, {importer: source, imported: target})


@given('the project also holds "{also}"')
@given('the project also holds ""')
def step_also(context: Any, also: str = "") -> None:
    items = (item.partition("=") for item in also.split(";") if item)
    _write(context, {path: text for path, _, text in items})


@when("its import graph is built")
def step_build(context: Any) -> None:
    context.import_graph = import_graph(context.graph_root, context.graph_files)


@then('the graph has an edge from "{importer}" to "{imported}"')
def step_edge(context: Any, importer: str, imported: str) -> None:
    edges = list(context.import_graph.edges)
    assert [(importer, imported)] == edges, edges


@then("the graph has no edges")
def step_no_edges(context: Any) -> None:
    assert [] == list(context.import_graph.edges)
