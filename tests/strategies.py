"""Shared hypothesis strategies for subplan's tests."""

from __future__ import annotations

import random
from dataclasses import replace

import networkx as nx
from hypothesis import strategies as st

from subplan import FileEntry, PlanConfig

# Small alphabets make directories collide, so trees get real structure. Directory names
# have no dot and file names always do: a path can never be both a file and a directory.
dir_names = st.sampled_from(["a", "b", "c", "src", "lib", "pkg", "x-y", "A"])
file_names = st.sampled_from(["f.py", "g.py", "h.js", "i.ts", "README.md", "z.c", "-o.txt"])


@st.composite
def paths(draw: st.DrawFn, max_dirs: int = 5) -> str:
    """One relative path: up to ``max_dirs`` directories and a file name."""
    dirs = draw(st.lists(dir_names, max_size=max_dirs))
    name = draw(file_names)
    suffix = draw(st.integers(min_value=0, max_value=20))
    stem, _, ext = name.partition(".")
    return "/".join([*dirs, f"{stem}{suffix}.{ext}"])


def path_sets(min_size: int = 1, max_size: int = 120) -> st.SearchStrategy[list[str]]:
    """A list of distinct paths."""
    return st.lists(paths(), min_size=min_size, max_size=max_size, unique=True)


@st.composite
def entries(draw: st.DrawFn, min_size: int = 1, max_size: int = 120) -> list[FileEntry]:
    """Distinct files with sizes (so token budgets matter)."""
    chosen = draw(path_sets(min_size, max_size))
    sizes = draw(st.lists(st.integers(0, 4000), min_size=len(chosen), max_size=len(chosen)))
    return [FileEntry(p, s) for p, s in zip(chosen, sizes, strict=True)]


configs = st.builds(
    PlanConfig,
    min_files=st.integers(1, 6),
    max_depth=st.integers(0, 7),
    max_files=st.none() | st.integers(1, 30),
    max_tokens=st.none() | st.integers(1, 5000),
    seed=st.integers(0, 3),
)
"""Configurations with the default cuts (``full``)."""

any_configs = st.builds(replace, configs, cuts=st.sampled_from(["full", "stable"]))
"""Configurations with any cuts: for what holds whatever the cuts."""


@st.composite
def flat_import_graphs(
    draw: st.DrawFn, min_files: int = 4, max_files: int = 40
) -> tuple[list[str], nx.DiGraph]:
    """Files of one flat directory and an import graph over them (``a -> b``: a imports b).

    Directories cannot split one flat directory, so its plan comes from the graph. A few
    edges reach modules outside the files (``ext/...``), and some files import nothing.
    """
    count = draw(st.integers(min_files, max_files))
    files = [f"pkg/m{n:02d}.py" for n in range(count)]
    nodes = st.sampled_from([*files, "ext/a.py", "ext/b.py"])
    pairs = st.tuples(nodes, nodes).filter(lambda pair: pair[0] != pair[1])
    graph = nx.DiGraph()
    graph.add_edges_from(draw(st.lists(pairs, min_size=1, max_size=3 * count, unique=True)))
    return files, graph


def reordered(graph: nx.DiGraph, rnd: random.Random) -> nx.DiGraph:
    """The same graph, its nodes and edges inserted in another (shuffled) order."""
    nodes = list(graph.nodes)
    edges = list(graph.edges)
    rnd.shuffle(nodes)
    rnd.shuffle(edges)
    other = nx.DiGraph()
    other.add_nodes_from(nodes)
    other.add_edges_from(edges)
    return other


flat_configs = st.builds(
    PlanConfig,
    min_files=st.integers(1, 4),
    max_depth=st.integers(1, 4),
    max_files=st.none() | st.integers(2, 12),
    seed=st.integers(0, 3),
)
"""Configurations under which a flat directory is split by its import graph."""
