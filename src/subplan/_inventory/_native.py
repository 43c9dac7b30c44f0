"""Dependency edges of C/C++, device trees, Go, Rust and Java/Kotlin, from regexes.

Each resolver sees the whole file set once (to build its indexes) and then the head of
each of its files. Includes, imports and ``use`` lines sit at the top of a source file,
so only the first :data:`HEAD` bytes are read. Only names that resolve to files of the
set become edges; a missed or invented edge only nudges a clustering.

* **C/C++ and device trees** (``#include "x.h"``, ``#include <dir/x.h>``,
  ``/include/ "x.dtsi"``): first relative to the including file, then as a path suffix
  of any file of the set (so ``include/``, ``-I`` and ``arch/*/include`` directories
  need no configuration), nearest to the includer first.
* **Go**: ``go.mod`` files give module paths; an import under a module names the package
  directory below it, and the file depends on that package's files.
* **Rust**: ``mod x;`` names ``x.rs`` or ``x/mod.rs`` beside (or below) the declaring
  file; ``use crate::a::b`` resolves from the crate root (the directory of ``lib.rs`` or
  ``main.rs``), ``use super::``/``self::`` relatively, and ``use other_crate::`` through
  the ``[package] name`` of the workspace's ``Cargo.toml`` files.
* **Java/Kotlin**: the ``package`` line and the file name give each file its class name;
  ``import a.b.C``, ``import static a.b.C.m`` and ``import a.b.*`` resolve against them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from .._model import path_sort_key, sort_paths

__all__ = ["HEAD", "native_edges"]

HEAD: Final = 64 * 1024
# A file depends on at most this many files of a package it imports (Go, Java ``*``).
_PACKAGE_FANOUT: Final = 16

C_SUFFIXES: Final = (
    ".c", ".h", ".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".inl",
    ".ipp", ".tcc", ".m", ".mm", ".dts", ".dtsi",
)  # fmt: skip
GO_SUFFIXES: Final = (".go",)
RUST_SUFFIXES: Final = (".rs",)
JVM_SUFFIXES: Final = (".java", ".kt", ".kts")
_KIND_OF_SUFFIX: Final = {
    **dict.fromkeys(C_SUFFIXES, "c"),
    **dict.fromkeys(GO_SUFFIXES, "go"),
    **dict.fromkeys(RUST_SUFFIXES, "rust"),
    **dict.fromkeys(JVM_SUFFIXES, "jvm"),
}
_KIND_OF_NAME: Final = {"go.mod": "go.mod", "Cargo.toml": "cargo"}

_C_INCLUDE_RE: Final = re.compile(
    rb'^[ \t]*(?:#[ \t]*(?:include|import)[ \t]*[<"]([^>"\n]+)[>"]|/include/[ \t]*"([^"\n]+)")',
    re.M,
)
_GO_MODULE_RE: Final = re.compile(rb"^module[ \t]+(\S+)", re.M)
_GO_IMPORT_BLOCK_RE: Final = re.compile(rb"^import[ \t]*\(([^)]*)\)", re.M)
_GO_IMPORT_LINE_RE: Final = re.compile(rb'^import[ \t]+(?:[\w.]+[ \t]+)?"([^"\n]+)"', re.M)
_GO_QUOTED_RE: Final = re.compile(rb'"([^"\n]+)"')
_RUST_MOD_RE: Final = re.compile(rb"^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?mod[ \t]+(\w+)[ \t]*;", re.M)
_RUST_USE_RE: Final = re.compile(rb"^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?use[ \t]+([\w:]+)", re.M)
_CARGO_NAME_RE: Final = re.compile(rb'^\[package\][^\[]*?^name[ \t]*=[ \t]*"([^"]+)"', re.M | re.S)
_JVM_PACKAGE_RE: Final = re.compile(rb"^[ \t]*package[ \t]+([\w.]+)", re.M)
_JVM_IMPORT_RE: Final = re.compile(
    rb"^[ \t]*import[ \t]+(?:static[ \t]+)?(\w+(?:\.\w+)*)(\.\*)?", re.M
)

Reader = Callable[[str], bytes | None]


def _nearest(candidates: Sequence[str], importer: str) -> str:
    """The candidate sharing the longest directory prefix with ``importer``.

    Ties go to the shallowest candidate (``include/x.h`` before ``arch/a/include/x.h``),
    then to path order.
    """
    if len(candidates) == 1:
        return candidates[0]
    base = importer.split("/")[:-1]
    best, best_score = candidates[0], (-1, 0)
    for candidate in candidates:
        parts = candidate.split("/")[:-1]
        shared = 0
        for x, y in zip(parts, base, strict=False):
            if x != y:
                break
            shared += 1
        score = (shared, -len(parts))
        if score > best_score:
            best, best_score = candidate, score
    return best


def _c_edges(files: list[str], read: Reader) -> Iterable[tuple[str, str]]:
    present = frozenset(files)
    by_name: dict[str, list[str]] = {}
    for path in files:
        by_name.setdefault(path.rpartition("/")[2], []).append(path)
    memo: dict[tuple[str, str], str | None] = {}
    for path in files:
        data = read(path)
        if data is None or (b"include" not in data and b"import" not in data):
            continue
        here = posixpath.dirname(path)
        for match in _C_INCLUDE_RE.finditer(data):
            raw = match.group(1) or match.group(2)
            spec = raw.decode("utf-8", "replace").strip()
            local = posixpath.normpath(posixpath.join(here, spec))
            if local in present:
                target: str | None = local
            else:
                key = (here, spec)
                if key in memo:
                    target = memo[key]
                else:
                    tail = "/" + spec.lstrip("./")
                    found = [p for p in by_name.get(spec.rpartition("/")[2], ()) if
                             ("/" + p).endswith(tail)]  # fmt: skip
                    target = memo[key] = _nearest(found, path) if found else None
            if target is not None and target != path:
                yield path, target


def _go_edges(files: list[str], mods: list[str], read: Reader) -> Iterable[tuple[str, str]]:
    modules: list[tuple[str, str]] = []  # (module path, its directory with trailing /)
    for mod in mods:
        data = read(mod)
        found = _GO_MODULE_RE.search(data) if data is not None else None
        if found:
            directory = posixpath.dirname(mod)
            modules.append((found.group(1).decode(), directory + "/" if directory else ""))
    if not modules:
        return
    modules.sort(key=lambda m: -len(m[0]))  # the longest module path wins
    package: dict[str, list[str]] = {}
    for path in files:
        if not path.endswith("_test.go"):
            package.setdefault(posixpath.dirname(path), []).append(path)
    for path in files:
        data = read(path)
        if data is None or b"import" not in data:
            continue
        specs = [m.group(1) for m in _GO_IMPORT_LINE_RE.finditer(data)]
        for block in _GO_IMPORT_BLOCK_RE.finditer(data):
            specs.extend(q.group(1) for q in _GO_QUOTED_RE.finditer(block.group(1)))
        for raw in specs:
            spec = raw.decode("utf-8", "replace")
            for module, directory in modules:
                if spec == module or spec.startswith(module + "/"):
                    target_dir = (directory + spec[len(module) + 1 :]).rstrip("/")
                    for target in package.get(target_dir, ())[:_PACKAGE_FANOUT]:
                        if target != path:
                            yield path, target
                    break


def _rust_edges(files: list[str], manifests: list[str], read: Reader) -> Iterable[tuple[str, str]]:
    present = frozenset(files)
    roots = sorted(
        (posixpath.dirname(p) for p in files if p.rpartition("/")[2] in ("lib.rs", "main.rs")),
        key=len,
        reverse=True,
    )
    crates: dict[str, str] = {}  # crate name (underscored) -> its lib.rs
    for manifest in manifests:
        data = read(manifest)
        found = _CARGO_NAME_RE.search(data) if data is not None else None
        if found:
            directory = posixpath.dirname(manifest)
            lib = (directory + "/" if directory else "") + "src/lib.rs"
            if lib in present:
                crates[found.group(1).decode().replace("-", "_")] = lib

    def module_file(base: str, parts: Sequence[str]) -> str | None:
        # The longest prefix of ``parts`` that names a module file below ``base``.
        for end in range(len(parts), 0, -1):
            stem = "/".join([base, *parts[:end]]) if base else "/".join(parts[:end])
            for candidate in (stem + ".rs", stem + "/mod.rs"):
                if candidate in present:
                    return candidate
        return None

    def own_file(base: str) -> str | None:
        # The file of the module whose children live in ``base``.
        for candidate in (base + ".rs", base + "/mod.rs", base + "/lib.rs", base + "/main.rs"):
            if candidate in present:
                return candidate
        return None

    for path in files:
        data = read(path)
        if data is None:
            continue
        here, _, name = path.rpartition("/")
        # The directory holding this module's children: beside lib.rs/main.rs/mod.rs,
        # else in a directory named after the file.
        stem = name[:-3]
        children = here if stem in ("lib", "main", "mod") else posixpath.join(here, stem)
        root = next((r for r in roots if here == r or here.startswith(r + "/") or not r), None)
        targets: set[str] = set()
        for match in _RUST_MOD_RE.finditer(data):
            hit = module_file(children, [match.group(1).decode()])
            if hit:
                targets.add(hit)
        for match in _RUST_USE_RE.finditer(data):
            parts = [p for p in match.group(1).decode().split("::") if p]
            if not parts:
                continue
            hit = None
            if parts[0] == "crate" and root is not None:
                hit = module_file(root, parts[1:]) or own_file(root)
            elif parts[0] in ("self", "super"):
                base = children
                while parts and parts[0] in ("self", "super"):
                    if parts.pop(0) == "super":
                        base = posixpath.dirname(base)
                hit = module_file(base, parts) or own_file(base)
            elif parts[0] in crates:
                lib = crates[parts[0]]
                hit = module_file(posixpath.dirname(lib), parts[1:]) or lib
            if hit:
                targets.add(hit)
        targets.discard(path)
        for target in sorted(targets, key=path_sort_key):
            yield path, target


def _jvm_edges(files: list[str], read: Reader) -> Iterable[tuple[str, str]]:
    classes: dict[str, str] = {}
    packages: dict[str, list[str]] = {}
    texts: dict[str, bytes] = {}
    for path in files:
        data = read(path)
        if data is None:
            continue
        texts[path] = data
        found = _JVM_PACKAGE_RE.search(data)
        package = found.group(1).decode() if found else ""
        stem = path.rpartition("/")[2].rsplit(".", 1)[0]
        classes.setdefault(f"{package}.{stem}" if package else stem, path)
        packages.setdefault(package, []).append(path)
    for path, data in texts.items():
        if b"import" not in data:
            continue
        targets: set[str] = set()
        for match in _JVM_IMPORT_RE.finditer(data):
            name = match.group(1).decode()
            if match.group(2):  # a.b.* : the package's files, or a class's nested ones
                targets.update(packages.get(name, ())[:_PACKAGE_FANOUT])
                if name in classes:
                    targets.add(classes[name])
                continue
            # a.b.C, a.b.C.Inner or (static) a.b.C.member: the longest known class prefix
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                found_class = classes.get(".".join(parts[:end]))
                if found_class is not None:
                    targets.add(found_class)
                    break
        targets.discard(path)
        for target in sorted(targets, key=path_sort_key):
            yield path, target


def native_edges(paths: Iterable[str], read: Reader) -> list[tuple[str, str]]:
    """Every dependency edge among the C/C++, device-tree, Go, Rust and JVM files.

    Args:
        paths: the project's files (normalized relative paths): a list sorted with
            :func:`~subplan._model.sort_paths` and unique, else any iterable.
        read: returns the first :data:`HEAD` bytes of a file, or ``None`` when the file
            cannot be read or is binary.

    Returns:
        ``(importer, imported)`` pairs, in path order of the importer.
    """
    ordered = paths if isinstance(paths, list) else sort_paths(set(paths))
    # One pass sorts the files by kind (a dict lookup of the suffix, not six scans).
    kinds: dict[str, list[str]] = {"c": [], "go": [], "go.mod": [], "rust": [], "cargo": []}
    kinds["jvm"] = []
    for path in ordered:
        name = path[path.rfind("/") + 1 :]
        kind = _KIND_OF_SUFFIX.get(name[name.rfind(".") :]) if "." in name else None
        if kind is None:
            kind = _KIND_OF_NAME.get(name)
        if kind is not None:
            kinds[kind].append(path)
    c_files, go_files, go_mods = kinds["c"], kinds["go"], kinds["go.mod"]
    rust_files, cargo, jvm_files = kinds["rust"], kinds["cargo"], kinds["jvm"]
    edges: list[tuple[str, str]] = []
    if c_files:
        edges.extend(_c_edges(c_files, read))
    if go_files and go_mods:
        edges.extend(_go_edges(go_files, go_mods, read))
    if rust_files:
        edges.extend(_rust_edges(rust_files, cargo, read))
    if jvm_files:
        edges.extend(_jvm_edges(jvm_files, read))
    return edges
