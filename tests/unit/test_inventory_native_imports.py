"""Dependency edges beyond Python: C/C++, device trees, Go, Rust, Java/Kotlin, JS workspaces."""

from __future__ import annotations

import pathlib

from subplan import decompose, scan
from subplan._inventory import import_graph


def write(root: pathlib.Path, files: dict[str, str]) -> list[str]:
    """Create ``files`` below ``root``; return their paths."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return list(files)


def edges(root: pathlib.Path, files: dict[str, str]) -> set[tuple[str, str]]:
    return set(import_graph(root, write(root, files)).edges)


def test_c_includes_resolve_relative_then_by_include_directory(tmp_path: pathlib.Path) -> None:
    found = edges(
        tmp_path,
        {
            "src/main.c": '#include "util.h"\n#include <stdio.h>\n#  include <net/sock.h>\n',
            "src/util.h": "#pragma once\n",
            "src/util.c": '#include "util.h"\n#include "../include/net/sock.h"\n',
            "include/net/sock.h": "",
            "arch/x86/include/net/sock.h": "",
            "arch/x86/boot.c": "#include <net/sock.h>\n",
        },
    )
    assert {
        ("src/main.c", "src/util.h"),
        ("src/main.c", "include/net/sock.h"),
        ("src/util.c", "src/util.h"),
        ("src/util.c", "include/net/sock.h"),
        ("arch/x86/boot.c", "arch/x86/include/net/sock.h"),  # the nearest one
    } == found


def test_device_tree_includes(tmp_path: pathlib.Path) -> None:
    found = edges(
        tmp_path,
        {
            "arch/arm/boot/dts/board.dts": '/include/ "soc.dtsi"\n#include <dt-bindings/gpio.h>\n',
            "arch/arm/boot/dts/soc.dtsi": "",
            "include/dt-bindings/gpio.h": "",
        },
    )
    assert {
        ("arch/arm/boot/dts/board.dts", "arch/arm/boot/dts/soc.dtsi"),
        ("arch/arm/boot/dts/board.dts", "include/dt-bindings/gpio.h"),
    } == found


def test_go_imports_resolve_through_the_module_path(tmp_path: pathlib.Path) -> None:
    found = edges(
        tmp_path,
        {
            "go.mod": "module example.com/app\n\ngo 1.22\n",
            "cmd/app/main.go": (
                'package main\n\nimport (\n\t"fmt"\n\tdb "example.com/app/internal/db"\n)\n'
            ),
            "internal/db/db.go": 'package db\nimport "example.com/app/internal/log"\n',
            "internal/db/db_test.go": "package db\n",
            "internal/log/log.go": "package log\n",
            "internal/log/more.go": "package log\n",
        },
    )
    assert {
        ("cmd/app/main.go", "internal/db/db.go"),
        ("internal/db/db.go", "internal/log/log.go"),
        ("internal/db/db.go", "internal/log/more.go"),
    } == found


def test_rust_mod_use_crate_super_and_workspace_crates(tmp_path: pathlib.Path) -> None:
    found = edges(
        tmp_path,
        {
            "core/Cargo.toml": '[package]\nname = "my-core"\nversion = "0.1.0"\n',
            "core/src/lib.rs": "pub mod parse;\nmod util;\n",
            "core/src/parse.rs": "use crate::util::helper;\nmod lexer;\n",
            "core/src/parse/lexer.rs": "use super::super::util;\nuse super::Token;\n",
            "core/src/util/mod.rs": "pub fn helper() {}\n",
            "cli/Cargo.toml": '[package]\nname = "cli"\n[dependencies]\nmy-core = "0.1"\n',
            "cli/src/main.rs": "use my_core::parse::Parser;\nuse std::io;\n",
        },
    )
    assert {
        ("core/src/lib.rs", "core/src/parse.rs"),
        ("core/src/lib.rs", "core/src/util/mod.rs"),
        ("core/src/parse.rs", "core/src/util/mod.rs"),
        ("core/src/parse.rs", "core/src/parse/lexer.rs"),
        ("core/src/parse/lexer.rs", "core/src/parse.rs"),
        ("cli/src/main.rs", "core/src/parse.rs"),
    } <= found


def test_java_and_kotlin_imports_resolve_by_package_and_class(tmp_path: pathlib.Path) -> None:
    found = edges(
        tmp_path,
        {
            "src/main/java/com/x/App.java": (
                "package com.x;\nimport com.x.util.Strings;\nimport static com.x.util.Maths.max;\n"
                "import com.x.model.*;\nimport java.util.List;\n"
            ),
            "src/main/java/com/x/util/Strings.java": "package com.x.util;\n",
            "src/main/java/com/x/util/Maths.java": "package com.x.util;\n",
            "src/main/java/com/x/model/User.java": "package com.x.model;\n",
            "src/main/kotlin/com/x/Main.kt": "package com.x\n\nimport com.x.App\n",
        },
    )
    assert {
        ("src/main/java/com/x/App.java", "src/main/java/com/x/util/Strings.java"),
        ("src/main/java/com/x/App.java", "src/main/java/com/x/util/Maths.java"),
        ("src/main/java/com/x/App.java", "src/main/java/com/x/model/User.java"),
        ("src/main/kotlin/com/x/Main.kt", "src/main/java/com/x/App.java"),
    } == found


def test_js_workspace_packages_resolve_by_their_package_json_name(
    tmp_path: pathlib.Path,
) -> None:
    found = edges(
        tmp_path,
        {
            "package.json": '{"name": "root", "workspaces": ["packages/*"]}',
            "packages/shared/package.json": '{"name": "@acme/shared", "main": "dist/index.js"}',
            "packages/shared/src/index.ts": "export const x = 1\n",
            "packages/shared/src/deep/thing.ts": "export const y = 1\n",
            "packages/app/package.json": '{"name": "app"}',
            "packages/app/src/main.ts": (
                'import { x } from "@acme/shared"\n'
                'import { y } from "@acme/shared/src/deep/thing"\n'
                'import React from "react"\n'
            ),
            "node_modules/react/package.json": '{"name": "react"}',
            "node_modules/react/index.js": "",
        },
    )
    assert {
        ("packages/app/src/main.ts", "packages/shared/src/index.ts"),
        ("packages/app/src/main.ts", "packages/shared/src/deep/thing.ts"),
    } == found


def test_only_the_head_of_a_large_file_is_read(tmp_path: pathlib.Path) -> None:
    body = "int x;\n" * 20_000  # 140 KB: an include after it is past the head
    found = edges(
        tmp_path,
        {"a.c": '#include "a.h"\n' + body + '#include "b.h"\n', "a.h": "", "b.h": ""},
    )
    assert {("a.c", "a.h")} == found


def test_an_include_graph_keeps_c_files_together(tmp_path: pathlib.Path) -> None:
    files = {f"src/{n}.c": f'#include "{n}.h"\n' + "x" * 4000 for n in ("a", "b", "c", "d")}
    files |= {f"src/{n}.h": "y" * 4000 for n in ("a", "b", "c", "d")}
    paths = write(tmp_path, files)
    graph = import_graph(tmp_path, paths)
    plan = decompose(scan(tmp_path, use_git=False).files, max_tokens=2100, import_graph=graph)
    for n in "abcd":
        assert plan.leaf_for(f"src/{n}.c").id == plan.leaf_for(f"src/{n}.h").id
