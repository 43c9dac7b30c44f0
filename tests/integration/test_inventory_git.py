"""Git-mode listing against real repositories, and the walk compared with git itself."""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subplan._errors import InputError
from subplan._inventory import Inventory, Skipped, scan
from subplan._model import FileEntry


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the user's and the system's git configuration (global excludes!) out."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(home.parent))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(root: pathlib.Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-C", str(root), *args],
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode("utf-8", "surrogateescape")


def write(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def make_repo(root: pathlib.Path, files: dict[str, str], *, commit: bool = True) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    write(root, files)
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "init")
    return root


def git_scan(root: pathlib.Path) -> Inventory:
    return scan(root, use_git=True)


# -- git mode ---------------------------------------------------------------------------


def test_git_mode_lists_tracked_and_untracked_but_not_ignored(tmp_path: pathlib.Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {".gitignore": "*.log\nbuild/\n", "src/a.py": "12345678", "README.md": "hi"},
    )
    write(repo, {"new.py": "x", "debug.log": "", "build/out.o": "", "src/b.log": ""})
    (repo / "forced.log").write_text("kept")
    git(repo, "add", "-f", "forced.log")  # tracked files stay listed even when ignored

    inv = scan(repo)

    assert "git" == inv.source
    assert (
        FileEntry(".gitignore", 13),
        FileEntry("README.md", 2),
        FileEntry("forced.log", 4),
        FileEntry("new.py", 1),
        FileEntry("src/a.py", 8),
    ) == inv.files
    assert () == inv.skipped
    assert repo.resolve() == inv.root


def test_git_mode_below_a_subdirectory(tmp_path: pathlib.Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {".gitignore": "*.tmp\n", "top.py": "", "pkg/a.py": "", "pkg/sub/b.py": "", "pkg-x/c": ""},
    )
    write(repo, {"pkg/new.py": "", "pkg/x.tmp": ""})

    inv = scan(repo / "pkg")

    assert ("git", ("a.py", "new.py", "sub/b.py")) == (inv.source, inv.paths)
    assert (repo / "pkg").resolve() == inv.root


def test_deleted_tracked_files_are_left_out_silently(tmp_path: pathlib.Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": "", "gone.py": "", "d/gone.py": ""})
    (repo / "gone.py").unlink()
    shutil.rmtree(repo / "d")

    inv = git_scan(repo)

    assert (("a.py",), ()) == (inv.paths, inv.skipped)


def test_unmerged_paths_are_listed_once(tmp_path: pathlib.Path) -> None:
    repo = make_repo(tmp_path / "r", {"f.txt": "base\n"})
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "f.txt").write_text("other\n")
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "f.txt").write_text("main\n")
    git(repo, "commit", "-q", "-am", "main")
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-C", str(repo), "merge", "other"],
        capture_output=True,
        check=False,
    )
    assert 3 == git(repo, "ls-files", "-c").count("f.txt")

    assert ("f.txt",) == git_scan(repo).paths


def test_non_utf8_names_are_skipped(tmp_path: pathlib.Path) -> None:
    repo = make_repo(tmp_path / "r", {"ok.py": ""}, commit=False)
    base = os.fsencode(repo)
    os.mkdir(base + b"/d\xfe")  # noqa: PTH102 - a bytes name
    for rel in (b"tracked\xff.py", b"d\xfe/untracked.py"):
        with open(base + b"/" + rel, "wb") as f:
            f.write(b"x")
    git(repo, "add", "ok.py", os.fsdecode(b"tracked\xff.py"))
    git(repo, "commit", "-q", "-m", "init")

    inv = git_scan(repo)

    assert ("ok.py",) == inv.paths
    assert (
        Skipped(repr(b"d\xfe/untracked.py"), "name is not valid UTF-8"),
        Skipped(repr(b"tracked\xff.py"), "name is not valid UTF-8"),
    ) == inv.skipped


def test_symlink_rules_in_git_mode(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.txt": "0123456789", "d/f": ""})
    repo = make_repo(tmp_path / "r", {"real/data.txt": "123456"}, commit=False)
    for name, target in {
        "to_file": "real/data.txt",
        "to_dir": "real",
        "to_root": ".",
        "to_outside": str(outside / "secret.txt"),
        "to_outside_dir": str(outside / "d"),
        "dangling": "missing",
        "ping": "pong",
        "pong": "ping",
    }.items():
        (repo / name).symlink_to(target)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")

    inv = git_scan(repo)

    assert (FileEntry("real/data.txt", 6), FileEntry("to_file", 6)) == inv.files
    assert (
        Skipped("dangling", "broken symlink"),
        Skipped("ping", "symlink loop"),
        Skipped("pong", "symlink loop"),
        Skipped("to_dir", "symlink to a directory"),
        Skipped("to_outside", "symlink leaves the root"),
        Skipped("to_outside_dir", "symlink leaves the root"),
        Skipped("to_root", "symlink to a directory"),
    ) == inv.skipped


def test_tracked_files_beyond_a_replaced_directory_are_not_followed(
    tmp_path: pathlib.Path,
) -> None:
    outside = tmp_path / "outside"
    write(outside, {"f.txt": "outside!"})
    repo = make_repo(tmp_path / "r", {"d/f.txt": "in", "e/g.txt": "in", "a.py": ""})
    shutil.rmtree(repo / "d")
    (repo / "d").symlink_to(outside)
    shutil.rmtree(repo / "e")
    (repo / "e").write_text("now a file")

    inv = git_scan(repo)

    # git sees "d" as a new untracked symlink and "e" as a new file; what was below is gone.
    assert (FileEntry("a.py", 0), FileEntry("e", 10)) == inv.files
    assert (Skipped("d", "symlink leaves the root"),) == inv.skipped


def test_submodules_and_nested_repositories_are_not_regular_files(
    tmp_path: pathlib.Path,
) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": ""})
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "sub").mkdir()
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},sub")
    make_repo(repo / "nested", {"inner.py": ""})

    inv = git_scan(repo)

    assert ("a.py",) == inv.paths
    assert (
        Skipped("nested", "not a regular file"),
        Skipped("sub", "not a regular file"),
    ) == inv.skipped


def test_special_files_tracked_then_replaced(tmp_path: pathlib.Path) -> None:
    repo = make_repo(tmp_path / "r", {"pipe": "was a file"})
    (repo / "pipe").unlink()
    os.mkfifo(repo / "pipe")

    assert (Skipped("pipe", "not a regular file"),) == git_scan(repo).skipped


def test_runs_directory_git_files_and_excludes_in_git_mode(tmp_path: pathlib.Path) -> None:
    repo = make_repo(
        tmp_path / "r",
        {
            ".subplan/run/state.json": "",
            "sub/.subplan/x": "",
            "docs/a.md": "",
            "docs/keep.md": "",
            "src/a.py": "",
            "src/b.md": "",
            "other/.subplan": "a file",
        },
    )
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "vendor").mkdir()
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},vendor")

    inv = scan(repo, exclude=["docs/", "*.md", "!keep.md", "vendor/"])

    assert ("other/.subplan", "src/a.py") == inv.paths
    assert () == inv.skipped


def test_use_git_choices(tmp_path: pathlib.Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": ""})
    plain = tmp_path / "plain"
    write(plain, {"b.py": ""})

    assert "git" == scan(repo).source
    assert "walk" == scan(repo, use_git=False).source
    assert "walk" == scan(plain).source
    with pytest.raises(InputError) as info:
        scan(plain, use_git=True)
    assert f"not a git work tree: {plain}" == str(info.value)
    assert str(plain.resolve()) == info.value.path


def test_without_git_on_path(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": ""})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    assert ("walk", ("a.py",)) == (scan(repo).source, scan(repo).paths)
    with pytest.raises(InputError, match=r"^not a git work tree: "):
        scan(repo, use_git=True)


def test_git_location_variables_of_a_hook_are_ignored(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = make_repo(tmp_path / "mine", {"mine.py": ""})
    theirs = make_repo(tmp_path / "theirs", {"theirs.py": ""})
    monkeypatch.setenv("GIT_DIR", str(theirs / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(theirs))

    assert ("mine.py",) == git_scan(mine).paths


def test_directories_git_cannot_open_are_reported(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for git that answers like git run by a user who may not read "pkg/locked"
    # (root may read everything, so the real refusal is checked with the walk instead).
    repo = make_repo(tmp_path / "r", {"pkg/a.py": ""})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_git = shutil.which("git")
    fake = bin_dir / "git"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  *ls-files*)\n"
        "    printf 'a.py\\0'\n"
        "    echo \"warning: could not open directory 'pkg/locked/': Permission denied\" >&2\n"
        "    echo \"warning: could not open directory 'elsewhere/': Permission denied\" >&2\n"
        "    ;;\n"
        f'  *) exec "{real_git}" "$@" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    inv = git_scan(repo / "pkg")

    assert ("a.py",) == inv.paths
    assert (Skipped("locked", "unreadable"),) == inv.skipped


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _drop_dac_override() -> None:  # pragma: no cover - runs in the forked child
    """Make root subject to file permissions, like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_unreadable_directories_with_real_permission_checks(tmp_path: pathlib.Path) -> None:
    """Git's own refusal, in a child that cannot bypass file permissions (even as root)."""
    repo = make_repo(tmp_path / "r", {"pkg/locked/a.py": "", "pkg/open/b.py": ""})
    write(repo, {"pkg/locked/new.py": ""})
    (repo / "pkg/locked").chmod(0)
    code = (
        "import json, sys\n"
        "from subplan._inventory import scan\n"
        "inv = scan(sys.argv[1], use_git=True)\n"
        "print(json.dumps([inv.paths, [[s.path, s.reason] for s in inv.skipped]]))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(repo / "pkg")],
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=_drop_dac_override if os.geteuid() == 0 else None,
        )
    finally:
        (repo / "pkg/locked").chmod(0o755)
    assert 0 == proc.returncode, proc.stderr
    # The tracked file cannot be stat()ed; the untracked one is not even seen.
    assert [
        ["open/b.py"],
        [["locked", "unreadable"], ["locked/a.py", "unreadable"]],
    ] == json.loads(proc.stdout)


# -- the walk agrees with git -----------------------------------------------------------


TREES: dict[str, dict[str, str]] = {
    "negation, directories, anchoring": {
        ".gitignore": "*.log\n!keep.log\nbuild/\n/top.txt\ndocs/*.md\n",
        "a.log": "",
        "keep.log": "",
        "src/b.log": "",
        "src/keep.log": "",
        "build/x": "",
        "src/build/y": "",
        "src/build.txt": "",
        "top.txt": "",
        "src/top.txt": "",
        "docs/a.md": "",
        "docs/sub/b.md": "",
        "src/docs/c.md": "",
    },
    "nested files override": {
        ".gitignore": "*.gen\n!*.txt\nout/\n",
        "a/.gitignore": "!*.gen\n*.txt\n!out/\n",
        "a/b/.gitignore": "/c.gen\n",
        "x.gen": "",
        "x.txt": "",
        "a/x.gen": "",
        "a/x.txt": "",
        "a/out/o.gen": "",
        "a/b/c.gen": "",
        "a/b/d/c.gen": "",
        "out/z": "",
    },
    "re-inclusion inside excluded directories": {
        ".gitignore": "out/\n!out/keep\nx/**\n!x/keep\n*\n!*/\n!*.py\n!.gitignore\n",
        "out/keep": "",
        "x/keep": "",
        "x/drop": "",
        "x/sub/f.py": "",
        "a/b.py": "",
        "a/b.txt": "",
    },
    "negated directory vs file rules": {
        ".gitignore": "*.txt\n",
        "sub/.gitignore": "!D/\n",
        "sub/D/f.txt": "",
        "sub/D/g.py": "",
    },
    "double stars": {
        ".gitignore": "**/gen/\na/**/z.c\n**/*.min.js\nlib/**/\n",
        "p/gen/q": "",
        "gen/q": "",
        "a/z.c": "",
        "a/m/n/z.c": "",
        "b/z.c": "",
        "w/x.min.js": "",
        "lib/f": "",
        "lib/d/f": "",
    },
    "character classes and escapes": {
        ".gitignore": "\ufeff# c\r\n\\#hash\r\nsp.txt   \r\nesc\\ \r\n[ab].c\r\n?.h\r\n\\!bang\r\n",
        "#hash": "",
        "# c": "",
        "sp.txt": "",
        "esc ": "",
        "esc": "",
        "a.c": "",
        "c.c": "",
        "x.h": "",
        "xy.h": "",
        "!bang": "",
    },
    "a malformed pattern matches nothing": {
        ".gitignore": "x\\\n*.o\n",
        "x\\": "",
        "x": "",
        "c.o": "",
    },
    "info exclude": {
        ".git/info/exclude": "*.secret\n*.tmp\n",
        ".gitignore": "!keep.tmp\n",
        "a.secret": "",
        "a.tmp": "",
        "keep.tmp": "",
        "d/b.secret": "",
    },
}


def walk_and_git(root: pathlib.Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return scan(root, use_git=False).paths, scan(root, use_git=True).paths


@pytest.mark.parametrize("name", sorted(TREES))
def test_walk_lists_what_git_lists(tmp_path: pathlib.Path, name: str) -> None:
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q")
    write(root, TREES[name])

    walked, listed = walk_and_git(root)

    assert listed == walked
    assert listed  # the tree is not empty: the comparison means something


PATTERNS = [
    "*.py",
    "!*.py",
    "a",
    "!a",
    "a/",
    "!a/",
    "/a",
    "b/",
    "*.txt",
    "!x.txt",
    "a/*",
    "**/b",
    "a/**",
    "!a/**",
    "*",
    "!*/",
    "b/x*",
    "[ab]",
    "?.py",
    "!/b/",
    "#",
    "x.txt/",
    "b/a",
    "!b/a",
    "*/x.txt",
    "a/**/b",
    "**/a/",
    "a\\ ",
]
NAMES = ["a", "b", "x.txt", "y.py", "a.py"]


@st.composite
def trees(draw: st.DrawFn) -> dict[str, str]:
    paths = draw(
        st.lists(
            st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    # A path cannot be both a file and a directory: keep files that are no prefix.
    files = {p for p in paths if not any(q.startswith(p + "/") for q in paths)}
    directories = {"/".join(p.split("/")[:i]) for p in files for i in range(len(p.split("/")))}
    out = dict.fromkeys(files, "")
    for where in sorted(directories):
        lines = draw(st.lists(st.sampled_from(PATTERNS), max_size=4))
        if lines:
            path = f"{where}/.gitignore" if where else ".gitignore"
            if path not in out and where not in files:
                out[path] = "\n".join(lines) + "\n"
    return out


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(tree=trees())
def test_walk_equals_git_on_random_trees(
    tree: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = pathlib.Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    try:
        git(root, "init", "-q")
        write(root, tree)
        walked, listed = walk_and_git(root)
        assert listed == walked
    finally:
        shutil.rmtree(root)


def test_a_directory_its_repository_ignores_is_walked(tmp_path: pathlib.Path) -> None:
    # Like a Python installed under ~/.pyenv, whose git clone ignores versions/.
    repo = tmp_path / "repo"
    (repo / "versions" / "3.11" / "lib").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("versions/\n")
    (repo / "versions" / "3.11" / "lib" / "os.py").write_text("x")
    inventory = scan(repo / "versions" / "3.11")
    assert "walk" == inventory.source
    assert ("lib/os.py",) == inventory.paths
    # An empty directory that is not ignored stays a git listing (of nothing).
    (repo / "empty").mkdir()
    assert "git" == scan(repo / "empty").source


def test_a_repository_that_ignores_everything_lists_nothing(tmp_path: pathlib.Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("*\n")
    (repo / "sub" / "a.txt").write_text("x")
    # The top of a work tree is git's to answer, even when the answer is nothing...
    assert ("git", ()) == (scan(repo).source, scan(repo).paths)
    assert () == scan(repo, use_git=True).paths
    # ...while an ignored directory below it is not part of the repository: walked.
    assert ("walk", ("a.txt",)) == (scan(repo / "sub").source, scan(repo / "sub").paths)
    assert () == scan(repo / "sub", use_git=True).paths
