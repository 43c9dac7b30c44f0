Feature: Dependency graphs for the languages agents meet
  subplan reads imports and includes without running anything, so a plan can keep files
  that import each other together and order its leaves. "\n" in a source stands for a
  line break; "also" names other files of the project (path=content;...).

  Scenario Outline: A <language> import becomes an edge of the graph
    Given a project where "<importer>" holds "<source>" and "<imported>" holds "<target>"
    And the project also holds "<also>"
    When its import graph is built
    Then the graph has an edge from "<importer>" to "<imported>"

    Examples:
      | language             | importer           | source                                 | imported                 | target                      | also                                  |
      | Python               | pkg/a.py           | from pkg import b                      | pkg/b.py                 | x = 1                       |                                       |
      | JavaScript           | web/a.js           | import x from './b.js'                 | web/b.js                 | export default 1            |                                       |
      | TypeScript workspace | apps/web/a.ts      | import {x} from '@acme/ui'             | packages/ui/src/index.ts | export const x = 1          | packages/ui/package.json={"name": "@acme/ui"} |
      | C                    | src/a.c            | #include "b.h"                         | src/b.h                  | int b;                      |                                       |
      | C include directory  | src/a.c            | #include <lib/b.h>                     | include/lib/b.h          | int b;                      |                                       |
      | device tree          | arch/dts/board.dts | #include "soc.dtsi"                    | arch/dts/soc.dtsi        | / { };                      |                                       |
      | Go                   | cmd/main.go        | package main\nimport "example.com/m/util" | util/u.go             | package util                | go.mod=module example.com/m           |
      | Rust                 | src/main.rs        | mod util;                              | src/util.rs              | pub fn f() {}               |                                       |
      | Java                 | src/com/a/App.java | package com.a;\nimport com.b.Util;     | src/com/b/Util.java      | package com.b;\nclass Util {} |                                     |
      | Kotlin               | src/a/App.kt       | package a\nimport b.Util               | src/b/Util.kt            | package b\nclass Util       |                                       |

  Scenario Outline: Imports of files outside the project add nothing
    Given a project where "<importer>" holds "<source>" and "README.md" holds "hello"
    When its import graph is built
    Then the graph has no edges

    Examples:
      | importer    | source                   |
      | a.py        | import os                |
      | a.c         | #include <stdio.h>       |
      | a.rs        | use std::fmt;            |
