"""Inventory: list a project's files and read the import graph between them.

:func:`scan` lists a directory (``git ls-files`` in a work tree, else a scandir walk that
honours ``.gitignore``); :func:`read_path_list` and :func:`from_paths` take lists of paths;
:func:`import_graph` finds which source files import or include which (Python, JS/TS,
C/C++, device trees, Go, Rust, Java/Kotlin).
"""

from ._imports import import_graph as import_graph
from ._listing import Inventory as Inventory
from ._listing import Skipped as Skipped
from ._listing import from_paths as from_paths
from ._listing import read_path_list as read_path_list
from ._listing import scan as scan

__all__ = ["Inventory", "Skipped", "from_paths", "import_graph", "read_path_list", "scan"]
