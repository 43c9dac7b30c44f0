"""The import graph of subplan._inventory: Python and JS/TS syntax, resolution, robustness."""

from __future__ import annotations

import pathlib
import random

import pytest

from subplan._errors import InputError
from subplan._inventory import import_graph


def write(root: pathlib.Path, files: dict[str, str | bytes]) -> list[str]:
    """Create ``files`` below ``root``; return their paths."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return list(files)


def edges(root: pathlib.Path, files: dict[str, str | bytes]) -> set[tuple[str, str]]:
    return set(import_graph(root, write(root, files)).edges)


# -- Python -----------------------------------------------------------------------------


def test_python_absolute_import_forms(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "a/__init__.py": "",
        "a/b/__init__.py": "",
        "a/b/c.py": "",
        "a/b/d.py": "",
        "x.py": "",
        "one.py": "import a.b.c\n",
        "two.py": "import a.b.d as dee, x  # two at once\n",
        "three.py": "from a.b import c, d as D\n",
        "four.py": "from a.b import (\n    c,  # the c\n    d,\n)\n",
        "five.py": "from a.b import c, \\\n    d\n",
        "six.py": "if True:\n    try:\n        import x\n    except ImportError:\n        pass\n",
        "seven.py": "import os, sys; import json\nfrom collections import abc\n",
        "eight.py": "from a.b import *\n",
        "nine.py": "import os, \\\n    x\n",
    }

    assert {
        ("one.py", "a/b/c.py"),
        ("two.py", "a/b/d.py"),
        ("two.py", "x.py"),
        ("three.py", "a/b/c.py"),
        ("three.py", "a/b/d.py"),
        ("four.py", "a/b/c.py"),
        ("four.py", "a/b/d.py"),
        ("five.py", "a/b/c.py"),
        ("five.py", "a/b/d.py"),
        ("six.py", "x.py"),
        ("eight.py", "a/b/__init__.py"),
        ("nine.py", "x.py"),
    } == edges(tmp_path, files)


def test_python_names_fall_back_to_the_longest_importable_prefix(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "pkg/__init__.py": "",
        "pkg/mod.py": "",
        "uses_function.py": "from pkg.mod import helper\n",
        "uses_missing_module.py": "import pkg.gone.deeper\n",
        "uses_package_attr.py": "from pkg import VERSION\n",
    }

    assert {
        ("uses_function.py", "pkg/mod.py"),
        ("uses_missing_module.py", "pkg/__init__.py"),
        ("uses_package_attr.py", "pkg/__init__.py"),
    } == edges(tmp_path, files)


def test_python_relative_imports_resolve_exactly(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "pkg/__init__.py": "from . import core\nfrom .util import helper\n",
        "pkg/core.py": "from . import util, missing\nfrom .sub.leaf import thing\n",
        "pkg/util.py": "from .. import top\nfrom ...too_far import x\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/leaf.py": "from ..core import run\nfrom ..util import *\nfrom .. import sub\n",
        "pkg/sub/other.py": "from . import *\nfrom .missing import y\nfrom .. util import z\n",
        "top.py": "",
        "util.py": "",
    }

    assert {
        ("pkg/__init__.py", "pkg/core.py"),
        ("pkg/__init__.py", "pkg/util.py"),
        ("pkg/core.py", "pkg/util.py"),
        ("pkg/core.py", "pkg/__init__.py"),  # "missing" is a name in the package
        ("pkg/core.py", "pkg/sub/leaf.py"),
        ("pkg/util.py", "top.py"),
        ("pkg/sub/leaf.py", "pkg/core.py"),
        ("pkg/sub/leaf.py", "pkg/util.py"),
        ("pkg/sub/leaf.py", "pkg/sub/__init__.py"),
        ("pkg/sub/other.py", "pkg/sub/__init__.py"),
        ("pkg/sub/other.py", "pkg/util.py"),
    } == edges(tmp_path, files)


def test_python_relative_import_at_the_root(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "__init__.py": "",
        "a.py": "from . import b\nfrom . import nothing\n",
        "b.py": "from .. import above\n",
    }
    assert {("a.py", "b.py"), ("a.py", "__init__.py")} == edges(tmp_path, files)


def test_python_src_layout_and_stdlib_names(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "src/pkg/__init__.py": "",
        "src/pkg/mod.py": "import json\nimport logging\nfrom pkg import serializers\n",
        "src/pkg/serializers/__init__.py": "",
        "src/pkg/serializers/json.py": "import json\n",
        "src/pkg/logging.py": "import logging\n",
        "tests/helpers.py": "",
        "tests/test_mod.py": "import helpers\nimport pkg.mod\nfrom src.pkg import mod\n",
    }

    # "json" and "logging" start inside the package pkg: they are the stdlib's, and a file
    # never imports itself. "helpers" is importable because tests/ is not a package.
    assert {
        ("src/pkg/mod.py", "src/pkg/serializers/__init__.py"),
        ("tests/test_mod.py", "tests/helpers.py"),
        ("tests/test_mod.py", "src/pkg/mod.py"),
    } == edges(tmp_path, files)


def test_python_ambiguous_names_prefer_the_nearest_then_path_order(
    tmp_path: pathlib.Path,
) -> None:
    files: dict[str, str | bytes] = {
        "svc_b/util.py": "",
        "svc_a/util.py": "",
        "svc_b/deep/main.py": "import util\n",
        "svc_a/main.py": "import util\n",
        "other/main.py": "import util\n",
    }

    assert {
        ("svc_b/deep/main.py", "svc_b/util.py"),
        ("svc_a/main.py", "svc_a/util.py"),
        ("other/main.py", "svc_a/util.py"),
    } == edges(tmp_path, files)


def test_python_package_before_module_before_stub(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "m.py": "",
        "m.pyi": "",
        "p/__init__.py": "",
        "p.py": "",
        "s.pyi": "",
        "main.py": "import m, p, s\n",
        "rel/__init__.pyi": "",
        "rel/x.pyi": "from . import y\n",
        "rel/y.pyi": "",
    }

    assert {
        ("main.py", "m.py"),
        ("main.py", "p/__init__.py"),
        ("main.py", "s.pyi"),
        ("rel/x.pyi", "rel/y.pyi"),
    } == edges(tmp_path, files)


def test_python_no_self_loops(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "pkg/__init__.py": "from . import *\nfrom pkg import x\n",
        "selfish.py": "import selfish\n",
    }
    assert set() == edges(tmp_path, files)


# -- JS / TS ----------------------------------------------------------------------------


def test_js_import_forms(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "src/a.ts": (
            "import x from './default'\n"
            'import {a, b} from "../lib/named"\n'
            "import './side'\n"
            "import type { T } from './types'\n"
            "export * from './star'\n"
            "export { y } from './reexport'\n"
            "const q = require('./required')\n"
            "const r = await import('./dynamic')\n"
            "const t = require(`./templated`)\n"
            "import {\n  m,\n  n,\n} from './multi'\n"
            "import React from 'react'\n"
            "import fs from 'node:fs'\n"
            "const s = Array.from('./not-an-import')\n"
        ),
        "src/default.ts": "",
        "lib/named.js": "",
        "src/side.mjs": "",
        "src/types.d.ts": "",
        "src/types.ts": "",
        "src/star.tsx": "",
        "src/reexport.cjs": "",
        "src/required.jsx": "",
        "src/dynamic.mts": "",
        "src/templated.cts": "",
        "src/multi.js": "",
        "src/not-an-import.ts": "",
    }

    assert {
        ("src/a.ts", target)
        for target in (
            "src/default.ts",
            "lib/named.js",
            "src/side.mjs",
            "src/types.ts",
            "src/star.tsx",
            "src/reexport.cjs",
            "src/required.jsx",
            "src/dynamic.mts",
            "src/templated.cts",
            "src/multi.js",
        )
    } == edges(tmp_path, files)


def test_js_resolution_order(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "exact.js": "import a from './both.js'\n",
        "both.js": "",
        "both.ts": "",
        "esm.ts": "import a from './only_ts.js'; import b from './comp.jsx'\n",
        "only_ts.ts": "",
        "comp.tsx": "",
        "mod.mts": "import a from './m2.mjs'; import b from './c2.cjs'\n",
        "m2.mts": "",
        "c2.cts": "",
        "ext.js": "import a from './order'\n",
        "order.js": "",
        "order.ts": "",
        "dir.js": "import a from './widgets'; import b from './widgets/'; import c from '.'\n",
        "widgets/index.jsx": "",
        "widgets/index.js": "",
        "index.ts": "import up from '../outside'; import q from './exact.js?raw#x'\n",
        "deep/a/b.js": "import c from '../../ext'; import d from '../../../gone'\n",
        "data.js": "import j from './data.json'; import me from './data'\n",
        "data.json": "{}",
    }

    assert {
        ("exact.js", "both.js"),
        ("esm.ts", "only_ts.ts"),
        ("esm.ts", "comp.tsx"),
        ("mod.mts", "m2.mts"),
        ("mod.mts", "c2.cts"),
        ("ext.js", "order.ts"),
        ("dir.js", "widgets/index.js"),
        ("dir.js", "index.ts"),
        ("index.ts", "exact.js"),
        ("deep/a/b.js", "ext.js"),
    } == edges(tmp_path, files)


# -- the graph as a whole ---------------------------------------------------------------


def test_nodes_are_the_source_files_only(tmp_path: pathlib.Path) -> None:
    paths = write(
        tmp_path,
        {"a.py": "", "b.pyi": "", "c.ts": "", "README.md": "import a\n", "d.json": "", "e.pyc": ""},
    )

    graph = import_graph(tmp_path, [*paths, "missing.py"])

    assert ["a.py", "b.pyi", "c.ts", "missing.py"] == list(graph.nodes)


def test_same_paths_in_any_order_give_the_same_graph(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {}
    for i in range(30):
        targets = [f"m{(i * 7 + k) % 30}" for k in range(1, 4)]
        files[f"pkg{i % 3}/m{i}.py"] = "".join(f"import {t}\n" for t in targets)
        files[f"web/c{i}.ts"] = f"import x from './c{(i + 1) % 30}'\n"
    paths = write(tmp_path, files)
    reference = import_graph(tmp_path, paths)
    order = (list(reference.nodes), list(reference.edges))

    assert len(reference.edges) > 60
    for seed in range(5):
        shuffled = paths[:]
        random.Random(seed).shuffle(shuffled)
        graph = import_graph(tmp_path, shuffled + shuffled[:3])
        assert order == (list(graph.nodes), list(graph.edges))


def test_binary_unreadable_and_huge_files_add_no_edges(tmp_path: pathlib.Path) -> None:
    files: dict[str, str | bytes] = {
        "target.py": "",
        "binary.py": b"import target\n\x00",
        "late_nul.py": b"import target\n" + b" " * 9000 + b"\x00",
        "latin1.py": b"# caf\xe9\nimport target\n",
        "huge.py": "x = 1\n" * 200_000 + "import target\n",
    }
    paths = write(tmp_path, files)
    (tmp_path / "dir.py").mkdir()

    graph = import_graph(tmp_path, [*paths, "dir.py", "gone.py"])

    assert {("late_nul.py", "target.py"), ("latin1.py", "target.py")} == set(graph.edges)
    assert {"dir.py", "gone.py", "binary.py", "huge.py"} <= set(graph.nodes)


def test_root_must_be_a_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError, match=r"^no such directory: "):
        import_graph(tmp_path / "missing", ["a.py"])


def test_listed_files_missing_from_the_root_are_targets_but_never_read(
    tmp_path: pathlib.Path,
) -> None:
    # A path list planned away from its tree: a.py is on disk, lib/ and c/ are not.
    write(tmp_path, {"a.py": "import lib.b\n", "x/y.c": '#include "../c/z.h"\n'})
    listed = ["a.py", "lib/b.py", "lib/c.py", "x/y.c", "c/z.h", "c/w.c"]
    graph = import_graph(tmp_path, listed)
    assert set(graph.nodes) == set(listed)
    assert set(graph.edges) == {("a.py", "lib/b.py"), ("x/y.c", "c/z.h")}
    # None of them on disk: every source file is a node, and there is no edge.
    empty = tmp_path / "empty"
    empty.mkdir()
    graph = import_graph(empty, listed)
    assert set(graph.nodes) == set(listed) and graph.number_of_edges() == 0
