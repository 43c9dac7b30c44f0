"""Shared hypothesis strategies for subplan's tests."""

from __future__ import annotations

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
