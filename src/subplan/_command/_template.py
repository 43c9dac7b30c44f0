"""Argv templates for command work: ``agent --id {id} {files}`` → one argv list per subplan.

A template is a list of arguments, never a shell string. Rendering is pure string work:
each ``{name}`` is replaced inside its own argument, and ``{files}`` (an argument on its
own) becomes one argument per file. Nothing is ever split, joined or interpreted by a
shell, so file names with spaces, quotes, ``$(...)`` or ``;`` arrive intact, and a file
name starting with ``-`` is rendered as ``./-name`` so it can never become an option.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from .._errors import InputError, TemplateError

__all__ = ["PLACEHOLDERS", "CommandTemplate", "TemplateError", "render_file_arg"]

PLACEHOLDERS: Final = ("id", "files", "files_list", "attempt", "run_id", "workspace", "label")
"""The placeholders subplan fills in, in the order error messages list them."""

_FILES: Final = "files"
# Placeholders that stand for the file list (or the file holding it): never the program.
_FILE_LIST_PLACEHOLDERS: Final = frozenset({"files", "files_list"})

# One token of an argument: an escaped brace, a {placeholder}, or a stray brace.
_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

# An argument after parsing: a constant string, the marker for a lone ``{files}``, or a
# sequence of parts, each a literal string or the name of a placeholder.
_Part = tuple[bool, str]  # (is_placeholder, text or name)
_Item = str | tuple[_Part, ...] | None  # None marks a lone {files}


def render_file_arg(path: str) -> str:
    """Return the argument that passes file ``path`` to a command.

    A relative path starting with ``-`` becomes ``./-name``, which names the same file but
    can never be read as an option.

    Args:
        path: a relative, ``/``-separated path as subplan produces it.

    Returns:
        ``path``, or ``"./" + path`` when it starts with ``-``.

    Raises:
        InputError: the path is empty or contains a NUL character (it cannot be an argument).

    Example:
        >>> render_file_arg("-rf"), render_file_arg("src/a.py")
        ('./-rf', 'src/a.py')
    """
    if not path or "\x00" in path:
        raise InputError(f"not a usable file name for a command: {path!r}", path=path)
    return "./" + path if path.startswith("-") else path


def _known(allowed: Collection[str]) -> str:
    names = allowed if isinstance(allowed, Sequence) else sorted(allowed)
    return ", ".join(f"{{{name}}}" for name in names)


def _parse_item(
    item: str, index: int, allowed: Collection[str] | None, known: str
) -> tuple[_Item, frozenset[str]]:
    """Parse one argument; ``allowed=None`` accepts any non-empty placeholder name."""
    where = f"argument {index} ({item!r})"
    if not isinstance(item, str):
        raise TemplateError(
            f"{where} is a {type(item).__name__}, not a string", index=index, argument=str(item)
        )
    parts: list[_Part] = []
    names: set[str] = set()
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(item):
        literal.append(item[pos : match.start()])
        pos = match.end()
        token, name = match.group(0), match.group(1)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if name is None:
            hint = token * 2
            raise TemplateError(
                f"unmatched '{token}' in {where}; write {hint!r} for a literal brace; "
                f"known: {known}",
                index=index,
                argument=item,
            )
        if (allowed is None and not name) or (allowed is not None and name not in allowed):
            raise TemplateError(
                f"unknown placeholder {{{name}}} in {where}; known: {known}",
                placeholder=name,
                index=index,
                argument=item,
            )
        if index == 0 and name in _FILE_LIST_PLACEHOLDERS:
            raise TemplateError(
                f"the program (argument 0, {item!r}) cannot come from {{{name}}}",
                placeholder=name,
                index=index,
                argument=item,
            )
        if name == _FILES and item != "{files}":
            hint = "; use {files_list} for the path of a file listing them"
            if allowed is not None and "files_list" not in allowed:
                hint = ""
            raise TemplateError(
                f"{{files}} must be an argument on its own, not part of {where}; "
                f"it expands to one argument per file{hint}",
                placeholder=name,
                index=index,
                argument=item,
            )
        chunk = "".join(literal)
        if chunk:
            parts.append((False, chunk))
        literal = []
        parts.append((True, name))
        names.add(name)
    literal.append(item[pos:])
    text = "".join(literal)
    if not names:
        return text, frozenset()
    if _FILES in names:
        return None, frozenset(names)
    if text:
        parts.append((False, text))
    return tuple(parts), frozenset(names)


def _parse_argv(
    argv: Sequence[str], allowed: Collection[str] | None
) -> tuple[tuple[_Item, ...], frozenset[str]]:
    if isinstance(argv, str):
        raise TemplateError(
            f"a command must be a list of arguments, not a string: {argv!r}", argument=argv
        )
    if isinstance(allowed, str):
        raise TypeError("allowed must be a collection of placeholder names, not a string")
    if not argv:
        raise TemplateError("no command given")
    known = _known(PLACEHOLDERS if allowed is None else allowed)
    items: list[_Item] = []
    used: set[str] = set()
    for index, item in enumerate(argv):
        parsed, names = _parse_item(item, index, allowed, known)
        items.append(parsed)
        used.update(names)
    return tuple(items), frozenset(used)


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    """An argv template: the command to run for each subplan.

    Placeholders are ``{name}``; ``{{`` and ``}}`` stand for literal braces. ``{files}``
    must be an argument on its own and expands to one argument per file; every other
    placeholder may sit inside an argument (``--out=runs/{id}.txt``). The program
    (argument 0) cannot be ``{files}`` or ``{files_list}``.

    Build templates with :meth:`parse`, which also checks the placeholder names. The
    constructor checks the syntax only and accepts any placeholder name; :meth:`render`
    then needs a value for each.

    Attributes:
        argv: the template's arguments, as written.

    Example:
        >>> t = CommandTemplate.parse(["agent", "--id={id}", "{files}"])
        >>> sorted(t.placeholders)
        ['files', 'id']
        >>> t.render({"id": "sp-1"}, ["a.py", "-b.py"])
        ['agent', '--id=sp-1', 'a.py', './-b.py']
    """

    argv: tuple[str, ...]
    _items: tuple[_Item, ...] = field(init=False, repr=False, compare=False, hash=False)
    _used: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        items, used = _parse_argv(self.argv, None)
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "_items", items)
        object.__setattr__(self, "_used", used)

    @classmethod
    def parse(
        cls, argv: Sequence[str], *, allowed: Collection[str] = PLACEHOLDERS
    ) -> CommandTemplate:
        """Check ``argv`` and return it as a template.

        Args:
            argv: the command and its arguments, one item per argument (never a shell
                string).
            allowed: the placeholder names this template may use; by default
                :data:`PLACEHOLDERS`.

        Returns:
            The template.

        Raises:
            TemplateError: (a :class:`~subplan.ConfigError`) ``argv`` is empty or a string;
                an argument holds an unknown placeholder, ``{}``, or an unmatched brace;
                ``{files}`` is not an argument on its own; the program comes from
                ``{files}`` or ``{files_list}``. The message names the placeholder and
                the argument (``argument 0`` is the program) and lists the known names.

        Example:
            >>> CommandTemplate.parse(["agent", "--out=runs/{id}.txt"]).placeholders
            frozenset({'id'})
        """
        _parse_argv(argv, allowed)
        return cls(tuple(argv))

    @property
    def placeholders(self) -> frozenset[str]:
        """The placeholder names the template uses.

        Example:
            >>> CommandTemplate.parse(["agent", "{{id}}", "{label}"]).placeholders
            frozenset({'label'})
        """
        return self._used

    def render(self, values: Mapping[str, str], files: Sequence[str]) -> list[str]:
        """Fill in the placeholders and return the argv to run.

        Args:
            values: a string for every placeholder the template uses except ``files``
                (``{files_list}`` needs the path of a file written with
                :func:`~subplan._command._exec.write_files_list`). Extra keys are ignored;
                a ``"files"`` key is never read.
            files: the files for ``{files}``, relative ``/``-separated paths; each becomes
                exactly one argument, ``./``-prefixed when it starts with ``-``.

        Returns:
            A new argv list: the template's arguments with the values substituted and
            each lone ``{files}`` replaced by the file arguments.

        Raises:
            TemplateError: a placeholder the template uses has no value in ``values``.
            InputError: a file name is empty or contains NUL, or a value contains NUL.

        Example:
            >>> t = CommandTemplate.parse(["agent", "{label}: {id}", "{files}"])
            >>> t.render({"id": "sp-1", "label": "src"}, ["a b.py"])
            ['agent', 'src: sp-1', 'a b.py']
        """
        out: list[str] = []
        for index, item in enumerate(self._items):
            if item is None:
                out.extend(render_file_arg(path) for path in files)
            elif isinstance(item, str):
                out.append(item)
            else:
                out.append(
                    "".join(
                        self._value(values, text, index) if is_name else text
                        for is_name, text in item
                    )
                )
        return out

    def _value(self, values: Mapping[str, str], name: str, index: int) -> str:
        try:
            value = values[name]
        except KeyError:
            raise TemplateError(
                f"no value for placeholder {{{name}}} in argument {index} ({self.argv[index]!r})",
                placeholder=name,
                index=index,
                argument=self.argv[index],
            ) from None
        if "\x00" in value:
            raise InputError(f"value of {{{name}}} contains a NUL character: {value!r}")
        return value
