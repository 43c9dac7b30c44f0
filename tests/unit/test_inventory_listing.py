"""Walk-mode listing, .gitignore semantics, symlinks and path lists of subplan._inventory."""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import subplan._inventory as inventory
from subplan._errors import InputError
from subplan._inventory import Inventory, Skipped, from_paths, read_path_list, scan
from subplan._inventory._gitignore import IgnoreRules, _Rule, is_ignored
from subplan._model import FileEntry

IS_ROOT = os.geteuid() == 0


def write(root: pathlib.Path, files: dict[str, str]) -> None:
    """Create ``files`` (path -> content) below ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def walk(root: str | os.PathLike[str], **kwargs: Any) -> Inventory:
    return scan(root, use_git=False, **kwargs)


# -- public surface ---------------------------------------------------------------------


def test_all_names_the_public_api() -> None:
    assert [
        "Inventory",
        "Skipped",
        "from_paths",
        "import_graph",
        "read_path_list",
        "scan",
    ] == inventory.__all__
    for name in inventory.__all__:
        assert getattr(inventory, name).__module__.startswith("subplan._inventory.")


# -- basic listing ----------------------------------------------------------------------


def test_walk_lists_files_with_sizes_sorted_by_component(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"a/x.py": "12345678", "a-b/x.py": "1", "a/y.py": "", "z.txt": "abc"})

    inv = walk(tmp_path)

    assert ("a/x.py", "a/y.py", "a-b/x.py", "z.txt") == inv.paths
    assert (
        FileEntry("a/x.py", 8),
        FileEntry("a/y.py", 0),
        FileEntry("a-b/x.py", 1),
        FileEntry("z.txt", 3),
    ) == inv.files
    assert [2, 0, 1, 1] == [f.tokens for f in inv.files]
    assert "walk" == inv.source
    assert () == inv.skipped
    assert tmp_path.resolve() == inv.root


def test_root_is_resolved_and_accepts_str(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"proj/a.py": "x"})
    (tmp_path / "link").symlink_to(tmp_path / "proj")

    inv = walk(str(tmp_path / "link"))

    assert (tmp_path / "proj").resolve() == inv.root
    assert ("a.py",) == inv.paths


def test_empty_directory_gives_empty_inventory(tmp_path: pathlib.Path) -> None:
    inv = walk(tmp_path)
    assert ((), ()) == (inv.files, inv.skipped)


def test_auto_detect_outside_a_work_tree_walks(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    write(tmp_path, {"proj/a.py": "x"})

    inv = scan(tmp_path / "proj")

    assert ("walk", ("a.py",)) == (inv.source, inv.paths)


def test_git_and_runs_directories_are_left_out_at_every_level(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        {
            ".git/config": "x",
            ".subplan/run/state.db": "x",
            "sub/.git": "gitdir: ../.git/modules/sub",
            "sub/.subplan/x": "x",
            "sub/a.py": "x",
            "other/.subplan": "a file, not the runs directory",
        },
    )

    assert ("other/.subplan", "sub/a.py") == walk(tmp_path).paths


def test_exclude_patterns_are_gitignore_style_relative_to_the_root(
    tmp_path: pathlib.Path,
) -> None:
    write(
        tmp_path,
        {
            "README.md": "",
            "docs/guide.md": "",
            "docs/conf.py": "",
            "src/a.py": "",
            "src/notes.md": "",
            "src/docs/keep.py": "",
            ".gitignore": "*.log\n",
            "debug.log": "",
        },
    )

    inv = walk(tmp_path, exclude=["*.md", "!README.md", "/docs/", "!debug.log"])

    # "!debug.log" only takes back an exclude pattern: it cannot undo the .gitignore.
    assert (".gitignore", "README.md", "src/a.py", "src/docs/keep.py") == inv.paths


def test_exclude_must_not_be_a_single_string(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        walk(tmp_path, exclude="*.md")


# -- root errors ------------------------------------------------------------------------


def test_missing_root_is_an_input_error(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError) as info:
        scan(missing)
    assert f"no such directory: {missing}" == str(info.value)
    assert str(missing) == info.value.path


def test_root_that_is_a_file_is_an_input_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"f.txt": "x"})
    for root in (tmp_path / "f.txt", tmp_path / "f.txt" / "sub"):
        with pytest.raises(InputError) as info:
            scan(root)
        assert f"not a directory: {root}" == str(info.value)
        assert str(root) == info.value.path


def test_root_that_is_a_symlink_loop_is_an_input_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(
        InputError, match=r"^cannot open .*loop: Too many levels of symbolic links$"
    ):
        scan(tmp_path / "loop")


def test_unlistable_root_is_an_input_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault injected where the kernel would refuse a non-root user.
    real_scandir = os.scandir
    top = str(tmp_path.resolve())

    def refusing(path: Any) -> Any:
        if os.fspath(path) == top:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(InputError) as info:
        scan(tmp_path, use_git=False)
    assert f"permission denied: {tmp_path}" == str(info.value)


# -- .gitignore semantics (exact expectations; tests/integration compares with git) -----


GITIGNORE_CASES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "negation and directory patterns": (
        {
            ".gitignore": "*.log\n!keep.log\nbuild/\n",
            "a.log": "",
            "keep.log": "",
            "src/b.log": "",
            "src/keep.log": "",
            "build/out.txt": "",
            "src/build/out.txt": "",
            "src/build.txt": "",
        },
        (".gitignore", "keep.log", "src/build.txt", "src/keep.log"),
    ),
    "a pruned directory cannot be re-included": (
        {".gitignore": "out/\n!out/keep.txt\n", "out/keep.txt": "", "x.txt": ""},
        (".gitignore", "x.txt"),
    ),
    "patterns are relative to their .gitignore": (
        {
            "sub/.gitignore": "/only-here.txt\ndeep/*.tmp\n",
            "sub/x/.gitignore": "# no pattern here\n",
            "only-here.txt": "",
            "sub/only-here.txt": "",
            "sub/x/only-here.txt": "",
            "sub/deep/a.tmp": "",
            "sub/x/deep/a.tmp": "",
            "deep/a.tmp": "",
        },
        (
            "deep/a.tmp",
            "only-here.txt",
            "sub/.gitignore",
            "sub/x/.gitignore",
            "sub/x/deep/a.tmp",
            "sub/x/only-here.txt",
        ),
    ),
    "deeper files override shallower ones both ways": (
        {
            ".gitignore": "*.gen\n!*.txt\n",
            "a/.gitignore": "!*.gen\n*.txt\n",
            "x.gen": "",
            "x.txt": "",
            "a/x.gen": "",
            "a/x.txt": "",
            "a/b/x.gen": "",
            "a/b/x.txt": "",
        },
        (".gitignore", "a/.gitignore", "a/b/x.gen", "a/x.gen", "x.txt"),
    ),
    "a negated directory does not re-include its files": (
        {".gitignore": "*\n!*/\n!.gitignore\n!*.py\n", "d/a.py": "", "d/a.txt": "", "b.txt": ""},
        (".gitignore", "d/a.py"),
    ),
    "a negated directory in a deeper file keeps the shallower file rules": (
        {
            ".gitignore": "*.txt\n",
            "sub/.gitignore": "!D/\n",
            "sub/D/f.txt": "",
            "sub/D/g.py": "",
        },
        (".gitignore", "sub/.gitignore", "sub/D/g.py"),
    ),
    "double star forms": (
        {
            ".gitignore": "x/**\n!x/keep\n**/gen/\na/**/z.c\n",
            "x/drop": "",
            "x/keep": "",
            "x/sub/f": "",
            "p/gen/q": "",
            "gen/q": "",
            "a/z.c": "",
            "a/m/n/z.c": "",
            "b/z.c": "",
        },
        (".gitignore", "b/z.c", "x/keep"),
    ),
    "comments, escapes, trailing spaces, CRLF and a BOM": (
        {
            ".gitignore": "\ufeff# comment\r\n\\#hash\r\nspace.txt   \r\nesc\\ \r\n\r\n",
            "#hash": "",
            "# comment": "",
            "space.txt": "",
            "esc ": "",
            "esc": "",
        },
        ("# comment", ".gitignore", "esc"),
    ),
    "a file named like a directory pattern stays": (
        {".gitignore": "logs/\n", "logs": "a file", "x/logs/a": ""},
        (".gitignore", "logs"),
    ),
}


@pytest.mark.parametrize("case", sorted(GITIGNORE_CASES))
def test_walk_follows_gitignore_semantics(tmp_path: pathlib.Path, case: str) -> None:
    files, expected = GITIGNORE_CASES[case]
    write(tmp_path, files)

    assert expected == walk(tmp_path).paths


def test_info_exclude_is_honoured_below_every_gitignore(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        {
            ".git/info/exclude": "*.secret\n*.tmp\n",
            ".gitignore": "!keep.tmp\n",
            "a.secret": "",
            "a.tmp": "",
            "keep.tmp": "",
            "sub/b.secret": "",
        },
    )

    assert (".gitignore", "keep.tmp") == walk(tmp_path).paths


def test_gitignore_symlink_is_not_followed(tmp_path: pathlib.Path) -> None:
    # Git (>= 2.32) does not read a .gitignore that is a symlink.
    write(tmp_path, {"rules": "*.txt\n", "a.txt": ""})
    (tmp_path / ".gitignore").symlink_to("rules")

    assert (".gitignore", "a.txt", "rules") == walk(tmp_path).paths


def test_malformed_and_empty_patterns_are_skipped() -> None:
    rules = IgnoreRules.from_lines(["[", "!", "/", "", "*.o", "#x", "[z-a]", "x\\", "\\"])
    assert rules.match("a.o", is_dir=False) is True
    assert rules.match("a.c", is_dir=False) is None
    assert not IgnoreRules.from_lines(["", "# only a comment"])


def test_unreadable_gitignore_is_no_rules(tmp_path: pathlib.Path) -> None:
    assert IgnoreRules.from_file(str(tmp_path / "missing")) is None


def test_is_ignored_without_levels_uses_the_fallback() -> None:
    fallback = IgnoreRules.from_lines(["*.o"])
    assert is_ignored((), "a/b.o", is_dir=False, fallback=fallback)
    assert not is_ignored((), "a/b.c", is_dir=False, fallback=fallback)
    assert not is_ignored((), "a/b.o", is_dir=False)


def test_a_rule_that_only_matches_a_parent_directory_is_no_match() -> None:
    rules = IgnoreRules.from_lines(["a/b", "x/**", "**/m/n"])
    assert rules.match("a/b/c", is_dir=False) is None
    assert rules.match("a/b", is_dir=False) is True
    assert rules.match("x/y/z", is_dir=False) is True
    assert rules.match("x", is_dir=True) is None
    assert rules.match("m/n", is_dir=False) is True
    assert rules.match("k/m/n", is_dir=False) is True
    assert rules.match("k/m/n/o", is_dir=False) is None
    assert rules.match("n", is_dir=False) is None


def test_unanchored_path_rules_are_tried_one_by_one() -> None:
    # pathspec anchors every regex it makes today; a future one that does not must still
    # be honoured (no prefilter can rule it out then).
    rules = IgnoreRules([_Rule(re.compile("d/e(?:(?P<ps_d>/)|$)"), ignore=True, dir_only=False)])
    assert rules.match("c/d/e", is_dir=False) is True
    assert rules.match("c/d/e/f", is_dir=False) is None
    assert rules.match("c/d/x", is_dir=False) is None


# -- symlinks ---------------------------------------------------------------------------


def test_symlink_rules(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside"
    root = tmp_path / "proj"
    write(outside, {"secret.txt": "0123456789", "dir/f": ""})
    write(root, {"real/data.txt": "123456", "real/sub/f.py": "x"})
    os.mkfifo(root / "fifo")
    links = {
        "to_file": "real/data.txt",
        "to_file_abs": str(root / "real/data.txt"),
        "via_parent": "../proj/real/data.txt",
        "to_dir": "real",
        "to_root": ".",
        "to_outside_file": str(outside / "secret.txt"),
        "to_outside_dir": "../outside/dir",
        "dangling": "missing.txt",
        "self": "self",
        "ping": "pong",
        "pong": "ping",
        "to_fifo": "fifo",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)

    inv = walk(root)

    assert (
        FileEntry("real/data.txt", 6),
        FileEntry("real/sub/f.py", 1),
        FileEntry("to_file", 6),
        FileEntry("to_file_abs", 6),
        FileEntry("via_parent", 6),
    ) == inv.files
    assert (
        Skipped("dangling", "broken symlink"),
        Skipped("fifo", "not a regular file"),
        Skipped("ping", "symlink loop"),
        Skipped("pong", "symlink loop"),
        Skipped("self", "symlink loop"),
        Skipped("to_dir", "symlink to a directory"),
        Skipped("to_fifo", "not a regular file"),
        Skipped("to_outside_dir", "symlink leaves the root"),
        Skipped("to_outside_file", "symlink leaves the root"),
        Skipped("to_root", "symlink to a directory"),
    ) == inv.skipped


def test_symlinks_are_subject_to_ignore_rules_as_files(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {".gitignore": "link\nd/\n", "real/x": "", "d/y": ""})
    (tmp_path / "link").symlink_to("real/x")
    (tmp_path / "e").symlink_to("d")  # "d/" only matches directories, never a link

    inv = walk(tmp_path)

    assert (".gitignore", "real/x") == inv.paths
    assert (Skipped("e", "symlink to a directory"),) == inv.skipped


# -- odd names and unreadable entries ----------------------------------------------------


def test_non_utf8_names_are_skipped_not_raised(tmp_path: pathlib.Path) -> None:
    base = os.fsencode(tmp_path)
    write(tmp_path, {"ok.py": "", ".gitignore": "*.o\n"})
    for rel in (b"bad\xff.py", b"dir\xfe/in.py", b"dir\xfe/sub/deep.py", b"ign\xff.o"):
        full = base + b"/" + rel
        os.makedirs(full.rpartition(b"/")[0], exist_ok=True)  # noqa: PTH103 - bytes path
        with open(full, "wb") as f:
            f.write(b"x")

    inv = walk(tmp_path)

    assert (".gitignore", "ok.py") == inv.paths
    assert {
        Skipped(repr(b"bad\xff.py"), "name is not valid UTF-8"),
        Skipped(repr(b"dir\xfe/in.py"), "name is not valid UTF-8"),
        Skipped(repr(b"dir\xfe/sub/deep.py"), "name is not valid UTF-8"),
    } == set(inv.skipped)


def test_unicode_names_are_fine(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"données/é.py": "é"})
    assert (FileEntry("données/é.py", 2),) == walk(tmp_path).files


def test_fifo_is_skipped(tmp_path: pathlib.Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    assert (Skipped("pipe", "not a regular file"),) == walk(tmp_path).skipped


def test_unreadable_directory_real_permissions(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"locked/a.py": "x", "open/b.py": "y"})
    (tmp_path / "locked").chmod(0)
    try:
        inv = walk(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)

    if IS_ROOT:  # permission bits do not stop root: the directory is read
        assert ("locked/a.py", "open/b.py") == inv.paths
        assert () == inv.skipped
    else:
        assert ("open/b.py",) == inv.paths
        assert (Skipped("locked", "unreadable"),) == inv.skipped


class _Entry:
    """A DirEntry stand-in whose stat fails, as it does for a non-root user."""

    def __init__(self, real: os.DirEntry[str], error: int) -> None:
        self._real = real
        self._error = error
        self.name = real.name
        self.path = real.path

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._real.is_dir(follow_symlinks=follow_symlinks)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._real.is_file(follow_symlinks=follow_symlinks)

    def is_symlink(self) -> bool:
        return self._real.is_symlink()

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise OSError(self._error, os.strerror(self._error), self.path)


def test_directory_and_file_failures_are_skipped_and_the_walk_goes_on(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"locked/a.py": "", "open/b.py": "", "open/denied.py": "", "open/gone.py": ""})
    real_scandir = os.scandir
    errors = {"denied.py": errno.EACCES, "gone.py": errno.ENOENT}

    class Listing:
        def __init__(self, path: str) -> None:
            if path.rstrip("/").endswith("/locked"):
                raise PermissionError(errno.EACCES, "Permission denied", path)
            with real_scandir(path) as it:
                self._entries = [_Entry(e, errors[e.name]) if e.name in errors else e for e in it]

        def __enter__(self) -> Iterator[Any]:
            return iter(self._entries)

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(os, "scandir", Listing)
    inv = walk(tmp_path)

    assert ("open/b.py",) == inv.paths
    assert (Skipped("locked", "unreadable"), Skipped("open/denied.py", "unreadable")) == inv.skipped


def _drop_dac_override() -> None:  # pragma: no cover - runs in the forked child
    """Make root subject to file permissions, like any user (capabilities 1 and 2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def test_unreadable_entries_with_real_permission_checks(tmp_path: pathlib.Path) -> None:
    """The kernel's real refusals, in a child that cannot bypass file permissions."""
    write(tmp_path, {"proj/locked/a.py": "x", "proj/open/b.py": "y", "shut/in/c.py": ""})
    (tmp_path / "proj/link.py").symlink_to("locked/a.py")
    (tmp_path / "proj/locked").chmod(0)
    (tmp_path / "shut").chmod(0)  # "shut/in" cannot even be stat()ed
    code = (
        "import json, sys\n"
        "from subplan._inventory import scan\n"
        "from subplan._errors import InputError\n"
        "inv = scan(sys.argv[1] + '/proj', use_git=False)\n"
        "out = {'paths': inv.paths, 'skipped': [[s.path, s.reason] for s in inv.skipped]}\n"
        "for root in ('/proj/locked', '/shut/in'):\n"
        "    try:\n"
        "        scan(sys.argv[1] + root, use_git=False)\n"
        "    except InputError as exc:\n"
        "        out[root] = str(exc).replace(sys.argv[1], 'T')\n"
        "print(json.dumps(out))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=_drop_dac_override if IS_ROOT else None,
        )
    finally:
        for d in (tmp_path / "proj/locked", tmp_path / "shut"):
            d.chmod(0o755)
    assert 0 == proc.returncode, proc.stderr
    assert {
        "paths": ["open/b.py"],
        "skipped": [["link.py", "unreadable"], ["locked", "unreadable"]],
        "/proj/locked": "permission denied: T/proj/locked",
        "/shut/in": "permission denied: T/shut/in",
    } == json.loads(proc.stdout)


# -- read_path_list ---------------------------------------------------------------------


def test_path_list_with_sizes_comments_blank_lines_and_crlf() -> None:
    lines = ["# a comment\r\n", "src/b.py\t400\r\n", "\n", "   \n", "./src//a.py\n", "c.py\t 7 "]

    inv = read_path_list(lines)

    assert (
        FileEntry("c.py", 7),
        FileEntry("src/a.py", 0),
        FileEntry("src/b.py", 400),
    ) == inv.files
    assert [2, 0, 100] == [f.tokens for f in inv.files]
    assert (None, (), "list") == (inv.root, inv.skipped, inv.source)


def test_path_list_from_a_whole_text() -> None:
    assert ("a.py", "b.py") == read_path_list("b.py\na.py\n").paths


def test_a_sized_list_keeps_line_numbers_in_errors() -> None:
    text = "a.py\t1\nb.py\t2\na.py\t3\n"
    with pytest.raises(InputError, match=r"^<list>:3: duplicate path 'a.py' \(first on line 1\)"):
        read_path_list(io.StringIO(text))


def test_path_list_hash_file_needs_dot_slash() -> None:
    assert ("#notes.md",) == read_path_list(["#notes.md", "./#notes.md"]).paths


def test_path_list_sizes_from_root(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"a.py": "12345", "d/b.py": "1"})
    (tmp_path / "link.py").symlink_to("a.py")
    (tmp_path / "dangling.py").symlink_to("nope.py")

    inv = read_path_list(
        ["a.py", "d/b.py\t99", "missing.py", "d", "link.py", "dangling.py"], root=tmp_path
    )

    assert {
        "a.py": 5,
        "d/b.py": 99,
        "missing.py": 0,
        "d": 0,
        "link.py": 5,
        "dangling.py": 0,
    } == {f.path: f.size for f in inv.files}
    assert tmp_path.resolve() == inv.root


@pytest.mark.parametrize(
    ("lines", "message", "path"),
    [
        (["a.py", "b.py\tabc"], "<list>:2: size is not a non-negative integer: 'abc'", "b.py"),
        (["a.py\t-1"], "<list>:1: size is not a non-negative integer: '-1'", "a.py"),
        (["a.py\t"], "<list>:1: size is not a non-negative integer: ''", "a.py"),
        (["a.py\t1.5"], "<list>:1: size is not a non-negative integer: '1.5'", "a.py"),
        (["a.py\t1\t2"], "<list>:1: size is not a non-negative integer: '1\\t2'", "a.py"),
        (["a.py\t\u0663"], "<list>:1: size is not a non-negative integer: '\u0663'", "a.py"),
        (
            ["x", "a/b.py", "", "# c", "./a//b.py"],
            "<list>:5: duplicate path 'a/b.py' (first on line 2)",
            "a/b.py",
        ),
        (["a", "b", "c", "../x"], "<list>:4: path leaves the project root: '../x'", "../x"),
        (
            ["/etc/passwd"],
            "<list>:1: path must be relative to the project root: '/etc/passwd'",
            "/etc/passwd",
        ),
        (["\t12"], "<list>:1: not a usable file path: ''", ""),
        (["./\t12"], "<list>:1: path names no file: './'", "./"),
        ([], "no files in <list>", "<list>"),
        (["# only comments", "", "  "], "no files in <list>", "<list>"),
    ],
)
def test_path_list_errors(lines: list[str], message: str, path: str) -> None:
    with pytest.raises(InputError) as info:
        read_path_list(lines)
    assert message == str(info.value)
    assert path == info.value.path


def test_path_list_errors_name_the_source() -> None:
    with pytest.raises(InputError) as info:
        read_path_list(["a.py", "a.py"], source="plan.txt")
    assert "plan.txt:2: duplicate path 'a.py' (first on line 1)" == str(info.value)
    with pytest.raises(InputError) as info:
        read_path_list([], source="plan.txt")
    assert "no files in plan.txt" == str(info.value)


def test_path_list_root_must_be_a_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError, match=r"^no such directory: "):
        read_path_list(["a.py"], root=tmp_path / "missing")


# -- from_paths -------------------------------------------------------------------------


def test_from_paths_normalizes_and_keeps_entries(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"src/a.py": "1234567890"})

    inv = from_paths(
        ["./src//a.py", FileEntry("./b.py", 40, tokens=3), FileEntry("c.py", 8)], root=tmp_path
    )

    assert (
        FileEntry("b.py", 40, 3),
        FileEntry("c.py", 8),
        FileEntry("src/a.py", 10),
    ) == inv.files
    assert (tmp_path.resolve(), "list", ()) == (inv.root, inv.source, inv.skipped)


def test_from_paths_without_root_has_unknown_sizes() -> None:
    inv = from_paths(["b.py", "a.py"])
    assert (FileEntry("a.py", 0), FileEntry("b.py", 0)) == inv.files
    assert inv.root is None


@pytest.mark.parametrize(
    ("paths", "message", "path"),
    [
        (["a.py", "./a.py"], "duplicate path 'a.py'", "a.py"),
        (["a.py", FileEntry("a.py", 3)], "duplicate path 'a.py'", "a.py"),
        (["../x.py"], "path leaves the project root: '../x.py'", "../x.py"),
        ([FileEntry("/abs.py")], "path must be relative to the project root: '/abs.py'", "/abs.py"),
        ([], "no files given", None),
    ],
)
def test_from_paths_errors(paths: list[str | FileEntry], message: str, path: str | None) -> None:
    with pytest.raises(InputError) as info:
        from_paths(paths)
    assert message == str(info.value)
    assert path == info.value.path


def test_from_paths_type_errors() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        from_paths("a.py")
    with pytest.raises(TypeError, match="got PosixPath"):
        from_paths([pathlib.Path("a.py")])  # type: ignore[list-item]


def test_inventory_paths_follow_files() -> None:
    inv = Inventory(None, (FileEntry("a"), FileEntry("b")), (), "list")
    assert ("a", "b") == inv.paths


# -- never planned: names with line breaks, subplan's own outputs -------------------------


@pytest.mark.parametrize("use_git", [False, True])
def test_a_name_with_a_line_break_is_skipped_not_refused(
    tmp_path: pathlib.Path, use_git: bool
) -> None:
    write(tmp_path, {"src/a.py": "x = 1\n", "src/b\nc.py": "y\n", "d\re.txt": "z\n"})
    if use_git:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    inv = scan(tmp_path, use_git=use_git)
    assert ("src/a.py",) == inv.paths
    assert [
        Skipped("d\\re.txt", "name holds a line break"),
        Skipped("src/b\\nc.py", "name holds a line break"),
    ] == sorted(inv.skipped, key=lambda s: s.path)


def test_plans_reports_and_event_files_are_never_planned(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        {
            "a.py": "x = 1\n",
            "plan.json": '{\n  "schema": "subplan.plan/1",\n  "config": {}\n}\n',
            "out/report.json": '{"schema": "subplan.report/1", "run_id": "r"}',
            "events.jsonl": '{"event": "run_started", "time": 1.5, "run_id": "r"}\n',
            "more/ev.jsonl": '{"schema": "subplan.event/1", "event": "x"}\n',
            "package.json": '{"name": "web", "schema": "subplan.plan/1"}\n',
            "data.jsonl": '{"event": "click"}\n',
        },
    )
    expected = ("a.py", "data.jsonl", "package.json")
    inv = scan(tmp_path, use_git=False)
    assert expected == inv.paths
    reasons = {s.path: s.reason for s in inv.skipped}
    assert {"plan.json", "out/report.json", "events.jsonl", "more/ev.jsonl"} == set(reasons)
    assert {"a subplan plan, report or event file"} == set(reasons.values())
    # From a list too, when the files are there to look at.
    listed = read_path_list(
        ["a.py", "plan.json", "events.jsonl", "data.jsonl", "package.json"], root=tmp_path
    )
    assert expected == listed.paths
    assert ("a.py", "events.jsonl", "plan.json") == read_path_list(
        ["a.py", "plan.json", "events.jsonl"]
    ).paths


def test_a_listed_json_file_that_is_not_there_is_planned(tmp_path: pathlib.Path) -> None:
    listed = read_path_list(["gone.json\t40", ".git/config", "a.py\t4"], root=tmp_path)
    assert ("a.py", "gone.json") == listed.paths
    assert [Skipped(".git/config", "in a .git or .subplan directory")] == list(listed.skipped)
