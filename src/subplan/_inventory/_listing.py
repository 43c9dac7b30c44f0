"""List a project's files: :func:`scan` a directory, or take a list of paths.

Inside a git work tree :func:`scan` asks ``git ls-files -co --exclude-standard``; elsewhere
it walks the tree with :func:`os.scandir` and applies ``.gitignore`` files the way git
does. Both modes share the rules that matter to a planner:

* paths are relative to the root, ``/``-separated, sorted with :func:`path_sort_key`;
* ``.git`` (directory or file) and ``.subplan/`` are left out at every level, and so is
  whatever matches the caller's ``exclude`` patterns;
* sizes come from one ``lstat`` per file; file contents are never read;
* binaries, lockfiles, vendored and generated files weigh 0 tokens (see
  :mod:`._weights`) unless ``weigh_all=True``;
* symlinks are never followed out of the root. A link to a regular file inside the root
  is listed under the link's own path with the target's size; a link to a directory is
  not descended and is recorded as skipped ("symlink to a directory"), like links that
  are broken, loop, or leave the root;
* names that are not UTF-8 or hold a line break, special files and unreadable entries
  are recorded as :class:`Skipped`, never raised: one odd file must not stop a plan;
* plans, reports and event files that subplan wrote (JSON whose head names a
  ``subplan.*/N`` schema, or an event line) are recorded as skipped, never planned.
"""

from __future__ import annotations

import errno
import os
import pathlib
import re
import stat
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from .._errors import InputError
from .._model import (
    FileEntry,
    any_unclean,
    estimate_tokens,
    in_order,
    normalize_path,
    path_sort_key,
)
from ._gitignore import IgnoreRules, is_ignored
from ._weights import is_weightless, never_planned, weightless_indices

__all__ = ["Inventory", "Skipped", "from_paths", "read_path_list", "scan"]

#: Directory names left out at every level: git's own, and subplan's default runs directory.
_GIT_DIR: Final = ".git"
_RUNS_DIR: Final = ".subplan"

# Variables that make git look at another repository than the one around the root. A
# caller running inside a git hook has them set for *its* repository.
_GIT_LOCATION_VARS: Final = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
        "GIT_OBJECT_DIRECTORY",
        "GIT_PREFIX",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_NAMESPACE",
    }
)
_GIT_UNREADABLE_RE: Final = re.compile(rb"^warning: could not open directory '(.*)': ", re.M)
_SIZE_RE: Final = re.compile(r"[0-9]+")
# Sizes joined by newlines, each digits with spaces around them (as .strip(" ") allows).
_SIZES_RE: Final = re.compile(r"(?: *[0-9]+ *\n)* *[0-9]+ *")

# The .gitignore files above a directory: (directory with trailing "/", rules), shallowest first.
_Levels = tuple[tuple[str, IgnoreRules], ...]

# A vanished entry (deleted tracked file, raced removal, a path "beyond" a file) is simply
# not there; any other error is worth reporting.
_GONE: Final = frozenset({errno.ENOENT, errno.ENOTDIR})


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry that was seen but not listed, and why.

    Attributes:
        path: the path relative to the root as best it can be shown; for a name that is
            not UTF-8, the ``repr`` of its bytes (``"b'bad\\\\xff.py'"``).
        reason: one short phrase, such as ``"name is not valid UTF-8"``,
            ``"symlink leaves the root"``, ``"symlink loop"``, ``"broken symlink"``,
            ``"symlink to a directory"``, ``"unreadable"`` or ``"not a regular file"``.

    Example:
        >>> Skipped("fifo", "not a regular file")
        Skipped(path='fifo', reason='not a regular file')
    """

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Inventory:
    """The files of a project, ready to plan.

    Attributes:
        root: the project directory, absolute and resolved; ``None`` for a bare path list.
        files: the files, unique, sorted with :func:`~subplan._model.path_sort_key`.
        skipped: entries seen but not listed, in path order.
        source: ``"git"`` (``git ls-files``), ``"walk"`` (scandir) or ``"list"``.

    Example:
        >>> inv = from_paths(["b.py", "a/x.py"])
        >>> inv.paths, inv.source
        (('a/x.py', 'b.py'), 'list')
    """

    root: pathlib.Path | None
    files: tuple[FileEntry, ...]
    skipped: tuple[Skipped, ...]
    source: Literal["git", "walk", "list"]

    @property
    def paths(self) -> tuple[str, ...]:
        """The paths of :attr:`files`, in the same order."""
        return tuple(f.path for f in self.files)


# -- shared helpers ---------------------------------------------------------------------


def _show(path: str) -> str:
    """``path`` itself when it is valid UTF-8, else the repr of its bytes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(path))
    return path


def _is_utf8(name: str) -> bool:
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes stand for undecodable bytes
        return False
    return True


def _resolve_root(root: str | os.PathLike[str]) -> pathlib.Path:
    """Check that ``root`` is a directory and return it absolute and resolved."""
    shown = os.fspath(root)
    try:
        st = pathlib.Path(root).stat()
    except FileNotFoundError:
        raise InputError(f"no such directory: {shown}", path=shown) from None
    except NotADirectoryError:
        raise InputError(f"not a directory: {shown}", path=shown) from None
    except PermissionError:
        raise InputError(f"permission denied: {shown}", path=shown) from None
    except OSError as exc:
        raise InputError(f"cannot open {shown}: {exc.strerror}", path=shown) from None
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"not a directory: {shown}", path=shown)
    return pathlib.Path(root).resolve()


def _weigh(files: Iterable[FileEntry], paths: Sequence[str] | None = None) -> list[FileEntry]:
    """``files`` with the weightless ones at 0 tokens (``paths``: theirs, when known)."""
    out = list(files)
    for i in weightless_indices([f.path for f in out] if paths is None else paths):
        found = out[i]
        if found.tokens:
            out[i] = FileEntry(found.path, found.size, 0)
    return out


# The head of a plan, a report or an event line that subplan wrote: never planned.
_OUTPUT_HEAD_RE: Final = re.compile(
    rb'\A\s*\{\s*(?:"schema"\s*:\s*"subplan\.[a-z]+/\d+"|"event"\s*:\s*"[a-z_]+"\s*,\s*"time")'
)
_OUTPUT_REASON: Final = "a subplan plan, report or event file"
_LINE_BREAK_REASON: Final = "name holds a line break"


def _is_output(base: str, path: str) -> bool:
    """True when ``path`` under ``base`` is a plan, report or events file subplan wrote."""
    try:
        with open(base + path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return False
    return _OUTPUT_HEAD_RE.match(head) is not None


def _escaped(path: str) -> str:
    """``path`` with backslashes and line breaks escaped, to show on one line."""
    return path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _sorted_inventory(
    root: pathlib.Path | None,
    files: Iterable[FileEntry],
    skipped: Iterable[Skipped],
    source: Literal["git", "walk", "list"],
    *,
    weigh_all: bool = True,
) -> Inventory:
    files = list(files)
    skipped = list(skipped)
    paths = [f.path for f in files]
    joined = "\n".join(paths)
    if joined.count("\n") != max(0, len(files) - 1) or "\r" in joined:
        # A name with a line break cannot go in a path list or a command's file list:
        # skipped with a warning, not an error, so one odd name does not stop a plan.
        kept = [f for f in files if "\n" not in f.path and "\r" not in f.path]
        skipped.extend(
            Skipped(_escaped(f.path), _LINE_BREAK_REASON)
            for f in files
            if "\n" in f.path or "\r" in f.path
        )
        files = kept
        paths = [f.path for f in files]
        joined = "\n".join(paths)
    if root is not None and (".json" in joined):
        base = str(root).rstrip("/") + "/"
        outputs = {
            f.path
            for f in files
            if f.path.endswith((".json", ".jsonl")) and _is_output(base, f.path)
        }
        if outputs:
            skipped.extend(Skipped(p, _OUTPUT_REASON) for p in sorted(outputs))
            files = [f for f in files if f.path not in outputs]
            paths = [f.path for f in files]
            joined = "\n".join(paths)
    if not weigh_all:
        files = _weigh(files, paths)
    # The sort keys made at C speed (see sort_paths), then one sort of positions by them,
    # unless they are in order already (a sorted list). (No name holds a line break any
    # more: they were skipped above.)
    keys = joined.replace("/", "\x00").split("\n") if files else []
    ordered: tuple[FileEntry, ...]
    if in_order(keys):
        ordered = tuple(files)
    else:
        ordered = tuple(map(files.__getitem__, sorted(range(len(files)), key=keys.__getitem__)))
    return Inventory(
        root=root,
        files=ordered,
        skipped=tuple(sorted(skipped, key=lambda s: (path_sort_key(s.path), s.reason))),
        source=source,
    )


def _link_entry(full: str, rel: str, root_prefix: str) -> FileEntry | Skipped:
    """Apply the symlink rules to the link ``full`` (shown as ``rel``)."""
    try:
        st = pathlib.Path(full).stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Skipped(rel, "symlink loop")
        if exc.errno in _GONE:
            return Skipped(rel, "broken symlink")
        return Skipped(rel, "unreadable")
    real = os.path.realpath(full)
    if real != root_prefix[:-1] and not real.startswith(root_prefix):
        return Skipped(rel, "symlink leaves the root")
    if stat.S_ISDIR(st.st_mode):
        return Skipped(rel, "symlink to a directory")
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel, "not a regular file")
    return FileEntry(rel, st.st_size)


def _add(files: list[FileEntry], skipped: list[Skipped], found: FileEntry | Skipped) -> None:
    if isinstance(found, FileEntry):
        files.append(found)
    else:
        skipped.append(found)


class _Excludes:
    """The caller's ``exclude`` patterns, plus ``.git`` and ``.subplan/`` everywhere."""

    __slots__ = ("_dirs", "_rules")

    def __init__(self, patterns: Sequence[str]) -> None:
        if isinstance(patterns, str):
            raise TypeError("exclude must be a sequence of patterns, not a single string")
        rules = IgnoreRules.from_lines(patterns)
        self._rules = rules if rules else None
        # Directory verdicts, memoized for git mode where every file brings its parents.
        self._dirs: dict[str, bool] = {"": False}

    def file(self, rel: str, name: str) -> bool:
        """True when the file (or symlink, or special file) ``rel`` is left out."""
        return name == _GIT_DIR or (
            self._rules is not None and self._rules.match(rel, is_dir=False, name=name) is True
        )

    def directory(self, rel: str, name: str) -> bool:
        """True when the directory ``rel`` (and so everything below it) is left out."""
        return name in (_GIT_DIR, _RUNS_DIR) or (
            self._rules is not None and self._rules.match(rel, is_dir=True, name=name) is True
        )

    def below_excluded(self, parent: str) -> bool:
        """True when ``parent`` or one of its ancestors is left out (memoized)."""
        verdict = self._dirs.get(parent)
        if verdict is None:
            grand, _, name = parent.rpartition("/")
            verdict = self.below_excluded(grand) or self.directory(parent, name)
            self._dirs[parent] = verdict
        return verdict


# -- scan -------------------------------------------------------------------------------


def scan(
    root: str | os.PathLike[str],
    *,
    use_git: bool | None = None,
    exclude: Sequence[str] = (),
    weigh_all: bool = False,
) -> Inventory:
    """List the files of the project at ``root`` without reading them.

    Inside a git work tree the listing is ``git ls-files -co --exclude-standard``: tracked
    files that are still on disk plus untracked files that are not ignored. When ``root``
    is a subdirectory of the work tree, only files below it are listed. Elsewhere a
    scandir walk honours every ``.gitignore`` at or below ``root`` and the root's
    ``.git/info/exclude``, with git's semantics (an excluded directory is not entered, so
    nothing below it can be re-included). See the module docstring for symlinks and
    skipped entries.

    Args:
        root: the project directory.
        use_git: ``None`` to use git when ``root`` is in a work tree, ``True`` to require
            it, ``False`` to always walk.
        exclude: extra gitignore-style patterns, relative to ``root``, for files to leave
            out (a negated pattern only takes back an earlier pattern of this list; it
            cannot bring back a file that git ignores).
        weigh_all: count every file as bytes/4 tokens; by default binaries, lockfiles,
            vendored and generated files weigh 0 tokens.

    Returns:
        The inventory; ``source`` says which listing was used. It may hold no files.

    Raises:
        InputError: ``root`` is missing, not a directory or not readable; or
            ``use_git=True`` and ``root`` is not inside a git work tree.

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = pathlib.Path(d, "a.py").write_text("x = 1\\n")
        ...     inv = scan(d, use_git=False)
        >>> [(f.path, f.size, f.tokens) for f in inv.files]
        [('a.py', 6, 2)]
    """
    excludes = _Excludes(exclude)
    real_root = _resolve_root(root)
    top = str(real_root)
    try:
        with os.scandir(top):
            pass
    except PermissionError:
        raise InputError(f"permission denied: {os.fspath(root)}", path=top) from None
    if use_git is not False:
        listed = _git_ls_files(top)
        if listed is not None and use_git is None and not listed.names and _ignored_below(top):
            # A directory its enclosing repository ignores (a Python under ~/.pyenv, whose
            # clone ignores versions/) is not part of that repository: walk it instead.
            listed = None
        if listed is not None:
            files, skipped = _from_git(top, listed, excludes)
            return _sorted_inventory(real_root, files, skipped, "git", weigh_all=weigh_all)
        if use_git:
            raise InputError(f"not a git work tree: {os.fspath(root)}", path=top)
    files, skipped = _walk(top, excludes)
    return _sorted_inventory(real_root, files, skipped, "walk", weigh_all=weigh_all)


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["LC_ALL"] = "C"  # warnings are parsed: keep them untranslated
    return env


def _git(top: str, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(
            ["git", "-C", top, *args],
            capture_output=True,
            env=_git_env(),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError:  # no git on PATH
        return None


@dataclass(frozen=True, slots=True)
class _GitListing:
    names: list[bytes]
    unreadable: list[bytes]  # directories git could not open, relative to the root


def _ignored_below(top: str) -> bool:
    """True when ``top`` is a directory below a work tree's top that git ignores."""
    prefix = _git(top, "rev-parse", "--show-prefix")
    if prefix is None or prefix.returncode != 0 or not prefix.stdout.strip():
        return False  # the top of a work tree is never ignored by it
    ignored = _git(top, "check-ignore", "-q", ".")
    return ignored is not None and ignored.returncode == 0


def _git_ls_files(top: str) -> _GitListing | None:
    """Run git's listing at ``top``; ``None`` when it is not a work tree (or no git)."""
    proc = _git(top, "ls-files", "-z", "-co", "--exclude-standard")
    if proc is None or proc.returncode != 0:
        return None
    names = proc.stdout.split(b"\0")
    names.pop()  # the empty string after the last NUL (or of an empty listing)

    unreadable: list[bytes] = []
    warned = _GIT_UNREADABLE_RE.findall(proc.stderr)
    if warned:
        # Git names them from the top of the work tree, not from the root asked for.
        where = _git(top, "rev-parse", "--show-prefix")
        prefix = where.stdout.rstrip(b"\n") if where is not None else b""
        unreadable = [w.removeprefix(prefix).rstrip(b"/") for w in warned if w.startswith(prefix)]
    return _GitListing(names, unreadable)


def _from_git(
    top: str, listing: _GitListing, excludes: _Excludes
) -> tuple[list[FileEntry], list[Skipped]]:
    files: list[FileEntry] = []
    skipped: list[Skipped] = []
    root_prefix = top.rstrip("/") + "/"
    base = root_prefix
    lstat = os.lstat
    # Per parent directory: is it a real directory (not a symlink, not gone) and not
    # excluded? A tracked "d/f" whose "d" became a symlink must not be followed.
    usable: dict[str, bool] = {"": True}

    def usable_dir(rel: str) -> bool:
        verdict = usable.get(rel)
        if verdict is None:
            parent = rel.rpartition("/")[0]
            verdict = usable_dir(parent) and not excludes.below_excluded(rel)
            if verdict:
                try:
                    verdict = stat.S_ISDIR(lstat(base + rel).st_mode)
                except OSError:
                    verdict = False
            usable[rel] = verdict
        return verdict

    previous = None
    for raw in listing.names:
        if raw == previous:  # unmerged paths appear once per stage
            continue
        previous = raw
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(Skipped(repr(raw.rstrip(b"/")), "name is not valid UTF-8"))
            continue
        if name.endswith("/"):  # an untracked nested repository
            name = name[:-1]
        parent, _, base_name = name.rpartition("/")
        if not (usable.get(parent) or usable_dir(parent)) or excludes.file(name, base_name):
            continue
        full = base + name
        try:
            st = lstat(full)
        except OSError as exc:
            if exc.errno not in _GONE:
                skipped.append(Skipped(name, "unreadable"))
            continue
        mode = st.st_mode
        if stat.S_ISREG(mode):
            files.append(FileEntry(name, st.st_size))
        elif stat.S_ISLNK(mode):
            _add(files, skipped, _link_entry(full, name, root_prefix))
        elif stat.S_ISDIR(mode) and excludes.below_excluded(name):
            continue
        else:  # a submodule or nested repository, a FIFO, a socket, a device
            skipped.append(Skipped(name, "not a regular file"))
    for raw in listing.unreadable:
        name = raw.decode("utf-8", "surrogateescape")
        skipped.append(Skipped(_show(name), "unreadable"))
    return files, skipped


def _walk(top: str, excludes: _Excludes) -> tuple[list[FileEntry], list[Skipped]]:
    files: list[FileEntry] = []
    skipped: list[Skipped] = []
    root_prefix = top.rstrip("/") + "/"
    info_exclude = None
    git_dir = pathlib.Path(top, _GIT_DIR)
    if git_dir.is_dir():
        info_exclude = IgnoreRules.from_file(str(git_dir / "info" / "exclude"))
    # Each pending directory: (path relative to root with trailing "/", the .gitignore
    # levels above it, whether its name - or an ancestor's - is not UTF-8).
    pending: list[tuple[str, _Levels, bool]] = [("", (), False)]
    while pending:
        rel_dir, levels, bad_name = pending.pop()
        try:
            with os.scandir(root_prefix + rel_dir if rel_dir else top) as it:
                entries = list(it)
        except OSError:
            skipped.append(Skipped(_show(rel_dir[:-1]), "unreadable"))
            continue
        for entry in entries:
            if entry.name == ".gitignore" and entry.is_file(follow_symlinks=False):
                rules = IgnoreRules.from_file(entry.path)
                if rules is not None:
                    levels = (*levels, (rel_dir, rules))
                break
        for entry in entries:
            name = entry.name
            rel = rel_dir + name
            if entry.is_dir(follow_symlinks=False):
                if not (
                    excludes.directory(rel, name)
                    or is_ignored(levels, rel, is_dir=True, name=name, fallback=info_exclude)
                ):
                    pending.append((rel + "/", levels, bad_name or not _is_utf8(name)))
                continue
            if excludes.file(rel, name) or is_ignored(
                levels, rel, is_dir=False, name=name, fallback=info_exclude
            ):
                continue
            if bad_name or not _is_utf8(name):
                skipped.append(Skipped(_show(rel), "name is not valid UTF-8"))
            elif entry.is_symlink():
                _add(files, skipped, _link_entry(entry.path, rel, root_prefix))
            elif entry.is_file(follow_symlinks=False):
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError as exc:
                    if exc.errno not in _GONE:
                        skipped.append(Skipped(rel, "unreadable"))
                    continue
                files.append(FileEntry(rel, size))
            else:
                skipped.append(Skipped(rel, "not a regular file"))
    return files, skipped


# -- path lists -------------------------------------------------------------------------

_NEVER_REASON: Final = "in a .git or .subplan directory"


def _size_under(base: str | None, path: str) -> int:
    """Size of the regular file ``path`` under ``base`` (via a symlink too), else 0."""
    if base is None:
        return 0
    full = base.rstrip("/") + "/" + path
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            st = pathlib.Path(full).stat()
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _list_lines(lines: Iterable[str]) -> Iterator[str]:
    if isinstance(lines, str):  # a whole text, not an iterable of lines
        yield from lines.splitlines()
    else:
        yield from lines


def read_path_list(
    lines: Iterable[str],
    *,
    root: str | os.PathLike[str] | None = None,
    source: str = "<list>",
    weigh_all: bool = False,
) -> Inventory:
    r"""Read a path list: the ``subplan plan --from-list FILE`` format.

    One path per line, relative to the project root, optionally followed by a TAB and
    its size in bytes (``src/a.py<TAB>1234``). The first TAB ends the path, so a path
    cannot hold one. Blank lines and lines starting with ``#`` are skipped (write
    ``./#name`` for a file whose name starts with ``#``); trailing ``\n`` and ``\r\n`` are
    stripped. Paths are normalized with :func:`~subplan._model.normalize_path`.

    A line without a size takes the size of the file under ``root`` (following a symlink)
    when ``root`` is given and the file is there, else 0, so its token estimate is 0.
    Paths inside ``.git`` or ``.subplan`` directories are never planned: they are
    recorded as skipped. Binaries, lockfiles, vendored and generated files weigh 0
    tokens unless ``weigh_all``.

    Args:
        lines: the lines, as from an open text file; a single ``str`` is split into lines.
        root: the project directory for missing sizes; also becomes ``Inventory.root``.
        source: the name of the list in error messages.
        weigh_all: count every file as bytes/4 tokens.

    Returns:
        An inventory with ``source="list"``.

    Raises:
        InputError: a bad path or size, a duplicate path (naming the line of the first),
            or no path at all; the message starts with ``SOURCE:LINE:``; ``.path`` is the
            offending path (``source`` when the list is empty). Also when ``root`` is not
            a directory.

    Example:
        >>> inv = read_path_list(["# generated", "src/a.py\t400", "./b.py", ""])
        >>> [(f.path, f.size, f.tokens) for f in inv.files]
        [('b.py', 0, 0), ('src/a.py', 400, 100)]
    """
    real_root = None if root is None else _resolve_root(root)
    base = None if real_root is None else str(real_root)
    numbers: list[int] = []
    texts: list[str] = []
    sizes: list[str | None] = []
    for lineno, line in enumerate(_list_lines(lines), start=1):
        line = line.removesuffix("\n").removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        text, tab, size_text = line.partition("\t")
        numbers.append(lineno)
        texts.append(text)
        sizes.append(size_text if tab else None)
    # One pass over all paths at C speed; only a suspicious list pays for normalizing
    # each path (which cleans what it can and names what it refuses).
    paths = texts
    joined = "\n" + "\n".join(texts) + "\n"
    if any_unclean(joined):
        paths = []
        for lineno, text in zip(numbers, texts, strict=True):
            try:
                paths.append(normalize_path(text))
            except InputError as exc:
                raise InputError(f"{source}:{lineno}: {exc}", path=exc.path) from None
    if len(set(paths)) != len(paths):
        first_line: dict[str, int] = {}
        for lineno, path in zip(numbers, paths, strict=True):
            if path in first_line:
                raise InputError(
                    f"{source}:{lineno}: duplicate path {path!r} "
                    f"(first on line {first_line[path]})",
                    path=path,
                )
            first_line[path] = lineno
    files: list[FileEntry] = []
    skipped: list[Skipped] = []
    suspicious = ".git" in joined or ".subplan" in joined
    if not suspicious and None not in sizes:
        # Every line gives its size: all checked by one regex pass at C speed (a bad one
        # is found and named by the loop below).
        given_sizes: list[str] = sizes  # type: ignore[assignment]
        if _SIZES_RE.fullmatch("\n".join(given_sizes)):
            files = [
                FileEntry(p, n, estimate_tokens(n))
                for p, n in zip(paths, map(int, given_sizes), strict=True)
            ]
            return _sorted_inventory(real_root, files, skipped, "list", weigh_all=weigh_all)
    for lineno, path, given in zip(numbers, paths, sizes, strict=True):
        if suspicious and never_planned(path):
            skipped.append(Skipped(path, _NEVER_REASON))
            continue
        if given is not None:
            digits = given.strip(" ")
            if not _SIZE_RE.fullmatch(digits):
                raise InputError(
                    f"{source}:{lineno}: size is not a non-negative integer: {given!r}",
                    path=path,
                )
            size = int(digits)
        else:
            size = _size_under(base, path)
        files.append(FileEntry(path, size))
    if not files:
        raise InputError(f"no files in {source}", path=source)
    return _sorted_inventory(real_root, files, skipped, "list", weigh_all=weigh_all)


def from_paths(
    paths: Iterable[str | FileEntry],
    *,
    root: str | os.PathLike[str] | None = None,
    weigh_all: bool = False,
) -> Inventory:
    """Make an inventory from paths an agent already has.

    Paths are normalized with :func:`~subplan._model.normalize_path`; a
    :class:`~subplan._model.FileEntry` keeps its size and tokens. A plain path takes the
    size of the file under ``root`` when given and present, else 0; a binary, lockfile,
    vendored or generated one weighs 0 tokens unless ``weigh_all``. Paths inside
    ``.git`` or ``.subplan`` directories are never planned (recorded as skipped).

    Args:
        paths: relative paths or file entries, in any order.
        root: the project directory for sizes; also becomes ``Inventory.root``.
        weigh_all: count every plain path as bytes/4 tokens.

    Returns:
        An inventory with ``source="list"``.

    Raises:
        InputError: a bad or duplicate path (``.path`` names it), no paths at all, or a
            ``root`` that is not a directory.
        TypeError: ``paths`` is a single string, or holds something else than ``str``
            and ``FileEntry``.

    Example:
        >>> from subplan._model import FileEntry
        >>> inv = from_paths(["./src/b.py", FileEntry("src/a.py", 40)])
        >>> [(f.path, f.tokens) for f in inv.files]
        [('src/a.py', 10), ('src/b.py', 0)]
    """
    if isinstance(paths, str):
        raise TypeError("paths must be an iterable of paths, not a single string")
    real_root = None if root is None else _resolve_root(root)
    base = None if real_root is None else str(real_root)
    seen: set[str] = set()
    files: list[FileEntry] = []
    skipped: list[Skipped] = []
    for item in paths:
        if isinstance(item, FileEntry):
            path = normalize_path(item.path)
            entry = item if path == item.path else FileEntry(path, item.size, item.tokens)
        elif isinstance(item, str):
            path = normalize_path(item)
            entry = FileEntry(path, _size_under(base, path))
            if not weigh_all and entry.tokens and is_weightless(path):
                entry = FileEntry(path, entry.size, 0)
        else:
            raise TypeError(f"expected a path string or FileEntry, got {type(item).__name__}")
        if path in seen:
            raise InputError(f"duplicate path {path!r}", path=path)
        seen.add(path)
        if never_planned(path):
            skipped.append(Skipped(path, _NEVER_REASON))
            continue
        files.append(entry)
    if not files:
        raise InputError("no files given")
    return _sorted_inventory(real_root, files, skipped, "list")
