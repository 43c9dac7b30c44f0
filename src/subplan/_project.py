"""One call from a directory to a plan: list, read imports, decompose."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._decompose import decompose
from ._gc import gc_paused
from ._inventory import import_graph, scan
from ._model import Cuts, Plan, PlanConfig

__all__ = ["plan_project"]


def plan_project(
    root: str | os.PathLike[str],
    *,
    min_files: int = 3,
    max_depth: int = 6,
    max_files: int | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    cuts: Cuts = "full",
    imports: bool = True,
    exclude: Sequence[str] = (),
    weigh_all: bool = False,
) -> Plan:
    """Plan a directory the way ``subplan plan ROOT`` does.

    Lists the files (:func:`~subplan.scan`), reads the dependency graph (imports, includes) when
    ``imports`` is true (:func:`~subplan.import_graph`), and decomposes them.

    Args:
        root: the project directory.
        min_files: and the other options: see :func:`~subplan.decompose`.
        imports: read source files for an import graph.
        exclude: extra ``.gitignore``-style patterns to leave out.
        weigh_all: count binaries, lockfiles, vendored and generated files as bytes/4
            tokens too (by default they weigh 0).

    Returns:
        The plan.

    Raises:
        InputError: the directory is missing, or holds no files.
        ConfigError: an option is out of range.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ["a/1.py", "a/2.py", "a/3.py", "b/1.py", "b/2.py", "b/3.py"]:
        ...     (root / name).parent.mkdir(exist_ok=True)
        ...     _ = (root / name).write_text("x = 1\\n")
        >>> [leaf.label for leaf in plan_project(root, max_files=3).leaves]
        ['a', 'b']
    """
    config = PlanConfig(
        min_files=min_files,
        max_depth=max_depth,
        max_files=max_files,
        max_tokens=max_tokens,
        seed=seed,
        cuts=cuts,
    )
    with gc_paused():  # many objects, no garbage: see subplan._gc
        inventory = scan(root, exclude=exclude, weigh_all=weigh_all)
        graph = None
        if imports and inventory.root:
            graph = import_graph(inventory.root, inventory.paths)
        return decompose(inventory.files, config=config, import_graph=graph)
