"""The dependency graph of a project's source files, read with line-level regexes.

Regexes, not :mod:`ast`: a planner reads thousands of files, many of which may not parse
(work in progress, other Python versions, TypeScript), and a missed or invented edge only
nudges a clustering. Only imports that resolve to files of the given set become edges.

Python names resolve by module path. A file ``src/pkg/mod.py`` is module ``src.pkg.mod``
and, because ``src`` is not a package (it has no ``__init__.py``), also ``pkg.mod``: a
module name may start at the root or just below any directory that is not a regular
package, since such a directory may be on ``sys.path``. A name never starts inside a
package, so ``import json`` does not resolve to ``pkg/serializers/json.py``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from .._model import path_sort_key, sort_paths
from ._listing import _resolve_root
from ._native import C_SUFFIXES, GO_SUFFIXES, HEAD, JVM_SUFFIXES, RUST_SUFFIXES, native_edges

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["import_graph"]

PY_SUFFIXES: Final = (".py", ".pyi")
JS_SUFFIXES: Final = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts")
# Order of the extensions tried for an extensionless JS/TS specifier.
_JS_TRY: Final = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
# TypeScript's ESM convention: "./x.js" names the source "./x.ts".
_TS_FOR_JS: Final = {
    ".js": (".ts", ".tsx"),
    ".jsx": (".tsx",),
    ".mjs": (".mts",),
    ".cjs": (".cts",),
}

_NATIVE_SUFFIXES: Final = C_SUFFIXES + GO_SUFFIXES + RUST_SUFFIXES + JVM_SUFFIXES
_PY_SET: Final = frozenset(PY_SUFFIXES)
_JS_SET: Final = frozenset(JS_SUFFIXES)
_NATIVE_SET: Final = frozenset(_NATIVE_SUFFIXES)

_READ_LIMIT: Final = 1 << 20
_BINARY_PROBE: Final = 8192

# Anchored on a newline character rather than on "^" with re.MULTILINE: a pattern that
# starts with a literal lets the regex engine skip ahead to candidates, about three times
# faster. The text gets a leading newline so that its first line is seen too.
_PY_IMPORT_RE: Final = re.compile(
    r"""
    \n[ \t]*
    (?:
        from[ \t]+(?P<src>\.+[ \t]*[\w.]*|[\w.]+)[ \t]+import[ \t]*
        (?P<names>\([^)]*\)|(?:\\\n|[^\n])*)
    |
        import[ \t]+(?P<mods>(?:\\\n|[^\n])*)
    )
    """,
    re.VERBOSE,
)
_PY_COMMENT_RE: Final = re.compile(r"#[^\n]*")
# The leading dotted name of each comma-separated item ("a.b as x, c" -> a.b, c).
_PY_NAMES_RE: Final = re.compile(r"(?:^|,)\s*([^\W\d]\w*(?:\.[^\W\d]\w*)*)")

_JS_IMPORT_RE: Final = re.compile(
    r"""
    \b(?:from|import)\s*(?P<q>['"])(?P<spec>\.\.?(?:/[^'"\n]*)?)(?P=q)
    |
    \b(?:require|import)\s*\(\s*(?P<q2>['"`])(?P<spec2>\.\.?(?:/[^'"`\n]*)?)(?P=q2)\s*\)
    """,
    re.VERBOSE,
)


# Bare specifiers ("@scope/pkg", "pkg/sub"), resolved only against workspace packages.
_JS_BARE_RE: Final = re.compile(
    r"""
    \b(?:from|import)\s*(?P<q>['"])(?P<spec>(?:@[\w.-]+/)?[\w][\w.-]*(?:/[^'"\n]*)?)(?P=q)
    |
    \b(?:require|import)\s*\(\s*(?P<q2>['"`])(?P<spec2>(?:@[\w.-]+/)?[\w][\w.-]*(?:/[^'"`\n]*)?)(?P=q2)\s*\)
    """,
    re.VERBOSE,
)
_PACKAGE_NAME_RE: Final = re.compile(r'"name"\s*:\s*"([^"]+)"')
_PACKAGE_ENTRY_RE: Final = re.compile(r'"(?:source|module|main|types)"\s*:\s*"([^"]+)"')


def _read_head(path: str, limit: int = HEAD) -> bytes | None:
    """The first ``limit`` bytes of a text file; ``None`` when unreadable or binary."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return None
    if b"\0" in data[:_BINARY_PROBE]:
        return None
    return data


def _read_source(path: str) -> str | None:
    """The first MiB of a text file; ``None`` when unreadable or binary."""
    data = _read_head(path, _READ_LIMIT)
    return None if data is None else data.decode("utf-8", "replace")


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _PythonResolver:
    """Maps module names to files of the set; built once per graph."""

    def __init__(self, files: Sequence[str]) -> None:
        self._files = frozenset(files)
        packages: set[str] = set()
        modules: list[tuple[str, list[str]]] = []
        for path in files:
            parts = path.rsplit(".", 1)[0].split("/")
            if parts[-1] == "__init__":
                parts.pop()
                packages.add("/".join(parts))
            if parts:
                modules.append((path, parts))
        # Module name -> (candidate file, its directory components), in path order.
        index: dict[str, list[tuple[str, list[str]]]] = {}
        for path, parts in modules:
            directory = path.split("/")[:-1]
            for start in range(len(parts)):
                if start and "/".join(parts[:start]) in packages:
                    continue  # inside a regular package a name cannot start
                index.setdefault(".".join(parts[start:]), []).append((path, directory))
        for candidates in index.values():
            candidates.sort(key=lambda c: path_sort_key(c[0]))
        self._index = index
        # Names whose answer does not depend on the importer (one candidate, or none):
        # the same few names are imported over and over.
        self._memo: dict[str, str | None] = {}

    def absolute(self, name: str, importer_dir: Sequence[str]) -> str | None:
        """The file of ``name`` or of its longest importable prefix, nearest first."""
        if name in self._memo:
            return self._memo[name]
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            candidates = self._index.get(".".join(parts[:end]))
            if candidates:
                if len(candidates) == 1:
                    self._memo[name] = candidates[0][0]
                    return candidates[0][0]
                best, best_score = candidates[0][0], -1
                for path, directory in candidates:
                    score = _common_prefix(directory, importer_dir)
                    if score > best_score:
                        best, best_score = path, score
                return best
        self._memo[name] = None
        return None

    def exact(self, parts: Sequence[str]) -> str | None:
        """The package or module at exactly these path components."""
        stem = "/".join(parts)
        head = stem + "/" if stem else ""
        for candidate in (head + "__init__.py", stem + ".py", head + "__init__.pyi", stem + ".pyi"):
            if candidate in self._files:
                return candidate
        return None

    def imports(self, importer: str, text: str) -> set[str]:
        """Files of the set that ``importer`` (whose source is ``text``) imports."""
        found: set[str] = set()
        if "import" not in text:
            return found
        importer_dir = importer.split("/")[:-1]
        for match in _PY_IMPORT_RE.finditer("\n" + text):
            mods = match["mods"]
            if mods is not None:
                for item in _split_names(mods):
                    target = self.absolute(item, importer_dir)
                    if target is not None:
                        found.add(target)
                continue
            src = match["src"]
            if " " in src or "\t" in src:  # "from . mod import x" is valid too
                src = src.replace(" ", "").replace("\t", "")
            names = _split_names(match["names"])
            module = src.lstrip(".")
            level = len(src) - len(module)
            if level == 0:
                for item in names or [""]:
                    target = self.absolute(f"{module}.{item}" if item else module, importer_dir)
                    if target is not None:
                        found.add(target)
                continue
            if level - 1 > len(importer_dir):
                continue  # climbs above the root
            base = importer_dir[: len(importer_dir) - (level - 1)]
            parts = [*base, *module.split(".")] if module else base
            package = self.exact(parts)
            for item in names:
                target = self.exact([*parts, *item.split(".")]) or package
                if target is not None:
                    found.add(target)
            if not names and package is not None:
                found.add(package)
        found.discard(importer)
        return found


def _split_names(text: str) -> list[str]:
    """The dotted names of an import list (``a.b as x, c`` -> ``["a.b", "c"]``)."""
    if text.startswith("("):
        text = _PY_COMMENT_RE.sub("", text[1:-1])
    else:
        text = text.split("#", 1)[0].split(";", 1)[0]
    return _PY_NAMES_RE.findall(text.replace("\\\n", " "))


class _JsResolver:
    def __init__(self, files: Iterable[str], workspaces: dict[str, str] | None = None) -> None:
        self._files = frozenset(files)
        # Workspace package name -> its entry specifier relative to the root ("./pkg/src").
        self._workspaces = workspaces or {}

    def resolve(self, importer_dir: str, spec: str) -> str | None:
        spec = spec.split("?", 1)[0].split("#", 1)[0]
        target = posixpath.normpath(posixpath.join(importer_dir, spec))
        if target == ".." or target.startswith("../"):
            return None
        if target == ".":
            target = ""
        candidates: list[str] = []
        if target:
            candidates.append(target)
            stem, ext = posixpath.splitext(target)
            candidates.extend(stem + ts for ts in _TS_FOR_JS.get(ext, ()))
            candidates.extend(target + ext for ext in _JS_TRY)
        index = target + "/index" if target else "index"
        candidates.extend(index + ext for ext in _JS_TRY)
        for candidate in candidates:
            if candidate in self._files:
                return candidate
        return None

    def imports(self, importer: str, text: str) -> set[str]:
        found: set[str] = set()
        importer_dir = posixpath.dirname(importer)
        for match in _JS_IMPORT_RE.finditer(text):
            spec = match["spec"] or match["spec2"]
            target = self.resolve(importer_dir, spec)
            if target is not None:
                found.add(target)
        if self._workspaces:
            for match in _JS_BARE_RE.finditer(text):
                target = self.bare(match["spec"] or match["spec2"])
                if target is not None:
                    found.add(target)
        found.discard(importer)
        return found

    def bare(self, spec: str) -> str | None:
        """A workspace package's file for ``@scope/pkg`` or ``pkg/sub/path``."""
        parts = spec.split("/")
        count = 2 if spec.startswith("@") else 1
        name, sub = "/".join(parts[:count]), "/".join(parts[count:])
        entry = self._workspaces.get(name)
        if entry is None:
            return None
        places = entry.split("\0")
        if sub:
            return self.resolve("", places[0] + "/" + sub)
        for candidate in [*places[1:], places[0]]:
            target = self.resolve("", candidate)
            if target is not None:
                return target
        return None


def _workspaces(base: str, manifests: Sequence[str]) -> dict[str, str]:
    """Workspace package names from ``package.json`` files (not under node_modules).

    Each name maps to ``dir`` then, NUL-separated, the entry points its manifest names
    and ``dir/src``: tried in that order for a bare import of the package.
    """
    out: dict[str, str] = {}
    for manifest in manifests:
        if "node_modules/" in manifest:
            continue
        data = _read_head(base + manifest)
        if data is None:
            continue
        text = data.decode("utf-8", "replace")
        found = _PACKAGE_NAME_RE.search(text)
        if found is None:
            continue
        directory = posixpath.dirname(manifest) or "."
        entries = [posixpath.join(directory, e) for e in _PACKAGE_ENTRY_RE.findall(text)]
        entries.append(posixpath.join(directory, "src"))
        out.setdefault(found.group(1), "\0".join([directory, *entries]))
    return out


def _top_entries(base: str) -> set[str]:
    try:
        return set(os.listdir(base))  # noqa: PTH208 (names only: no Path per entry)
    except OSError:
        return set()


def _suffix(path: str) -> str:
    """The suffix of the file name (``.py``), or ``""``."""
    dot = path.rfind(".")
    return path[dot:] if dot > path.rfind("/") else ""


def _source_suffix(path: str) -> bool:
    suffix = _suffix(path)
    return suffix in _PY_SET or suffix in _JS_SET or suffix in _NATIVE_SET


def has_sources(root: str | os.PathLike[str], paths: Iterable[str]) -> bool:
    """True when a source file of ``paths`` could lie under ``root`` (its top-level
    directory or name is there): when False, :func:`import_graph` reads nothing and
    finds no edge, so a caller may skip it (and the import of networkx).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     has_sources(d, ["src/a.py", "README.md"])
        False
    """
    present = _top_entries(str(_resolve_root(root)).rstrip("/") + "/")
    if not present:
        return False
    return any(path.partition("/")[0] in present and _source_suffix(path) for path in paths)


def import_graph(root: str | os.PathLike[str], paths: Iterable[str]) -> nx.DiGraph:
    """Build the directed dependency graph of the source files among ``paths``.

    Nodes are the Python (``.py .pyi``), JS/TS (``.js .jsx .mjs .cjs .ts .tsx .mts
    .cts``), C/C++ and device-tree, Go, Rust and Java/Kotlin files of ``paths``
    (normalized relative paths, as in :attr:`Inventory.paths`); an edge ``a -> b`` means
    that ``a`` imports or includes ``b``. Imports of anything outside the set
    (stdlib, third-party, missing files) add nothing, and a file never imports itself.

    Python: ``import a.b``, ``import a as x, b``, ``from a.b import c`` (also with a
    parenthesized or backslash-continued name list) and relative ``from ..pkg import y``.
    An absolute name resolves to the file of its longest importable prefix (for
    ``from a.b import c``: submodule ``a.b.c``, else ``a.b``); relative imports resolve
    exactly against the importer's package directory. JS/TS: ``import ... from``,
    side-effect ``import``, ``export ... from``, ``require()`` and dynamic ``import()``
    with a relative specifier, tried as the exact file, with a TypeScript source for a
    ``.js`` name, with each extension, then as ``dir/index.<ext>``; a bare specifier
    (``@scope/pkg``, ``pkg/sub/path``) resolves when a ``package.json`` of the set (not
    under ``node_modules``) has that ``name``, through its ``source``/``module``/
    ``main``/``types`` entry or ``src/index.*``. C/C++, device trees, Go, Rust and
    Java/Kotlin: see :mod:`subplan._inventory._native` (only the first 64 KiB of each of
    those files is read).

    Notes:
        Reads at most the first MiB of each source file; a file that cannot be read or
        holds a NUL byte in its first 8 KiB contributes no edges, never an error. A name
        that several files could be resolves to the one sharing the longest directory
        prefix with the importer, ties broken by path order. Nodes and edges are added in
        path order, so the same set of paths in any order gives the same graph.
        Time is linear in the bytes read.

    Args:
        root: the project directory the paths are relative to.
        paths: the project's files; other kinds of files are ignored.

    Returns:
        A ``networkx.DiGraph`` whose nodes are path strings.

    Raises:
        InputError: ``root`` is not a directory.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = pathlib.Path(d, "a.py").write_text("from b import f\\n")
        ...     _ = pathlib.Path(d, "b.py").write_text("def f(): pass\\n")
        ...     g = import_graph(d, ["a.py", "b.py", "README.md"])
        >>> list(g.nodes), list(g.edges)
        (['a.py', 'b.py'], [('a.py', 'b.py')])
    """
    base = str(_resolve_root(root)).rstrip("/") + "/"
    ordered = sort_paths(set(paths))
    py_files: list[str] = []
    js_files: list[str] = []
    manifests: list[str] = []
    nodes: list[str] = []
    for path in ordered:
        suffix = _suffix(path)
        if suffix in _PY_SET:
            py_files.append(path)
        elif suffix in _JS_SET:
            js_files.append(path)
        elif suffix not in _NATIVE_SET:
            if path == "package.json" or path.endswith("/package.json"):
                manifests.append(path)
            continue
        nodes.append(path)
    # A path whose top-level entry is not in the root cannot be read (a list of paths
    # planned away from their tree): it is not tried, and when no path can be, there
    # is nothing to resolve at all.
    present = _top_entries(base)
    edges: list[tuple[str, str]] = []
    if any(path.partition("/")[0] in present for path in nodes):

        def head(path: str) -> bytes | None:
            return _read_head(base + path) if path.partition("/")[0] in present else None

        py = _PythonResolver(py_files)
        js = _JsResolver(js_files, _workspaces(base, manifests) if js_files else None)
        for files, resolver in ((py_files, py), (js_files, js)):
            for path in files:
                if path.partition("/")[0] not in present:
                    continue
                text = _read_source(base + path)
                if text is not None:
                    edges.extend((path, target) for target in resolver.imports(path, text))
        edges.extend(native_edges(ordered, head))
    import networkx as nx  # imported when needed: it takes a quarter of a second

    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(sorted(edges, key=lambda e: (path_sort_key(e[0]), path_sort_key(e[1]))))
    return graph
