"""Git's ignore rules for the scandir walk: one :class:`IgnoreRules` per pattern list.

Patterns are compiled by :mod:`pathspec` (its gitignore dialect), but matched here, one
entry at a time, the way git does while it walks a tree:

* a pattern only matches the entry itself, never a path *below* a matching directory
  (the walk prunes excluded directories, so everything below one is gone anyway, and a
  file inside an un-excluded directory must not be matched through that directory);
* a trailing ``/`` makes a pattern match directories only;
* within one list the last matching pattern wins; across lists the deepest ``.gitignore``
  wins, then ``.git/info/exclude`` (see :func:`is_ignored`).

``pathspec.GitIgnoreSpec.check_file`` is not used as is because it answers for whole
paths: a negated directory pattern in a deeper ``.gitignore`` (``!build/``) would then
re-include every *file* below ``build/`` even when a shallower ``*.o`` still excludes it,
which git does not do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["IgnoreRules", "is_ignored"]

# pathspec marks with this named group the "/" after a pattern that matched a parent
# directory of the path (``build`` matching ``build/x.o``). Such a match is not a match of
# the entry itself. The name is pathspec's (checked with 1.1); the tests that compare
# the walk with git would catch a change.
_DIR_MARK: Final = "ps_d"


def _trim_trailing_spaces(line: str) -> str:
    """Drop trailing spaces unless escaped with a backslash, as git does."""
    end = len(line)
    while end and line[end - 1] == " ":
        # Count the backslashes before the space: an odd number escapes it.
        slashes = 0
        i = end - 2
        while i >= 0 and line[i] == "\\":
            slashes += 1
            i -= 1
        if slashes % 2:
            break
        end -= 1
    return line[:end]


# pathspec's regex for a pattern without an inner "/" is HEAD + core + TAIL: the core
# matches the last component, at any depth. Such rules are matched against the name
# alone, which is much faster than backtracking over the whole path.
_HEAD: Final = "^(?:.+/)?"
_TAIL: Final = f"(?:(?P<{_DIR_MARK}>/)|$)"


class _Rule:
    __slots__ = ("dir_only", "ignore", "name_core", "regex")

    def __init__(self, regex: re.Pattern[str], *, ignore: bool, dir_only: bool) -> None:
        self.ignore = ignore
        self.dir_only = dir_only
        text = regex.pattern
        core = None
        if text == ".":  # "*", "**": every name
            core = ".*"
        elif text.startswith(_HEAD) and text.endswith(_TAIL):
            core = text[len(_HEAD) : -len(_TAIL)]
            if "/" in core.replace("[^/]", ""):
                core = None
        self.name_core = core
        self.regex = regex if core is None else re.compile(rf"(?:{core})\Z", re.DOTALL)

    def hits(self, path: str, name: str) -> bool:
        """True when the rule matches the entry itself (not one of its directories)."""
        if self.name_core is not None:
            return self.regex.match(name) is not None
        found = self.regex.search(path)
        return found is not None and found.groupdict().get(_DIR_MARK) is None


def _compile(line: str) -> _Rule | None:
    line = line.removesuffix("\n").removesuffix("\r")
    if not line or line.startswith("#"):
        return None
    line = _trim_trailing_spaces(line)
    negate = line.startswith("!")
    body = line[1:] if negate else line
    # Git strips one trailing "/" and remembers "directories only"; the rest of the
    # pattern (anchoring, wildcards, escapes) is pathspec's job.
    dir_only = body.endswith("/")
    if dir_only:
        body = body[:-1]
    if not body:
        return None
    import pathspec  # on first use: a path list never needs it (14 ms to import)

    try:
        spec = pathspec.GitIgnoreSpec.from_lines([("!" if negate else "") + body])
    except (ValueError, re.error):  # "x\\", "[z-a]"
        return None  # git matches nothing with a malformed pattern; it spoils no other line
    pattern = spec.patterns[0]
    regex = getattr(pattern, "regex", None)
    if pattern.include is None or not isinstance(regex, re.Pattern):
        return None
    return _Rule(regex, ignore=pattern.include, dir_only=dir_only)


def _prefilters(rules: Sequence[_Rule]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """Unions of the name rules and of the path rules, to answer "no match" in one go.

    A missing union means "cannot rule anything out": the path rules are then tried one
    by one. The path union keeps every branch anchored, else a search would try every
    position of the path.
    """
    cores = [r.name_core for r in rules if r.name_core is not None]
    names = re.compile(rf"(?:{'|'.join(cores)})\Z", re.DOTALL) if cores else None
    branches = []
    for rule in rules:
        if rule.name_core is None:
            text = rule.regex.pattern
            if not text.startswith("^"):
                return names, None
            branches.append(text[1:].replace(f"(?P<{_DIR_MARK}>", "(?:"))
    paths = re.compile("^(?:" + "|".join(branches) + ")") if branches else None
    return names, paths


class IgnoreRules:
    """One list of gitignore patterns (a ``.gitignore`` file, ``info/exclude``, options).

    Paths given to :meth:`match` are relative to the directory the list belongs to.

    Example:
        >>> rules = IgnoreRules.from_lines(["*.o", "!keep.o", "build/"])
        >>> rules.match("a/x.o", is_dir=False), rules.match("keep.o", is_dir=False)
        (True, False)
        >>> rules.match("build", is_dir=False) is None, rules.match("build", is_dir=True)
        (True, True)
    """

    __slots__ = ("_any_name", "_any_path", "_path_rules", "_rules")

    def __init__(self, rules: Sequence[_Rule]) -> None:
        # Reversed once: the last matching pattern wins, so search from the end.
        self._rules: tuple[_Rule, ...] = tuple(reversed(rules))
        # Most entries match no pattern at all: one match of each union answers them.
        self._any_name, self._any_path = _prefilters(self._rules)
        self._path_rules = any(r.name_core is None for r in self._rules)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IgnoreRules:
        """Compile gitignore lines; comments, blank and malformed lines are dropped."""
        return cls([rule for rule in map(_compile, lines) if rule is not None])

    @classmethod
    def from_file(cls, path: str) -> IgnoreRules | None:
        """Read a gitignore file; ``None`` when it is unreadable or holds no pattern."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        # surrogateescape keeps non-UTF-8 bytes comparable with os.scandir's str names.
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
        rules = cls.from_lines(text.split("\n"))
        return rules if rules else None

    def __bool__(self) -> bool:
        return bool(self._rules)

    def match(self, path: str, *, is_dir: bool, name: str | None = None) -> bool | None:
        """Whether the list ignores ``path``: True, False (negated), None (no pattern).

        ``name`` is the last component of ``path``, when the caller has it at hand.
        """
        if name is None:
            name = path.rpartition("/")[2]
        if not (
            (self._any_name is not None and self._any_name.match(name) is not None)
            or (
                self._path_rules
                and (self._any_path is None or self._any_path.match(path) is not None)
            )
        ):
            return None
        for rule in self._rules:
            if (is_dir or not rule.dir_only) and rule.hits(path, name):
                return rule.ignore
        return None


def is_ignored(
    levels: Sequence[tuple[str, IgnoreRules]],
    path: str,
    *,
    is_dir: bool,
    name: str | None = None,
    fallback: IgnoreRules | None = None,
) -> bool:
    """Whether git would ignore ``path`` (relative to the walk root).

    Args:
        levels: ``(prefix, rules)`` of every ``.gitignore`` above ``path``, shallowest
            first; ``prefix`` is the directory of the file relative to the root, with a
            trailing ``/`` (``""`` for the root).
        path: the entry, relative to the root.
        is_dir: whether the entry is a directory (not a symlink to one).
        name: the last component of ``path``, when the caller has it at hand.
        fallback: rules consulted after every ``.gitignore`` (``.git/info/exclude``).

    Returns:
        True when the deciding pattern ignores the entry.
    """
    if name is None:
        name = path.rpartition("/")[2]
    for prefix, rules in reversed(levels):
        verdict = rules.match(path[len(prefix) :], is_dir=is_dir, name=name)
        if verdict is not None:
            return verdict
    if fallback is not None:
        return fallback.match(path, is_dir=is_dir, name=name) is True
    return False
