"""Argv templates: parsing rules, exact error messages, rendering, and its invariants."""

from __future__ import annotations

import pickle
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan import ConfigError, InputError, SubplanError
from subplan._command._exec import (
    PLACEHOLDERS,
    CommandTemplate,
    TemplateError,
    render_file_arg,
)

T = TypeVar("T")


def roundtrip(obj: T) -> T:
    """``obj`` through pickle, as a process pool would pass it."""
    copy: T = pickle.loads(pickle.dumps(obj))  # noqa: S301 - our own bytes
    return copy


KNOWN = "known: {id}, {files}, {files_list}, {attempt}, {run_id}, {workspace}, {label}"
VALUES = {
    "id": "sp-0123456789abcdef",
    "files_list": "runs/r1/sp-0123456789abcdef/files.txt",
    "attempt": "2",
    "run_id": "r1",
    "workspace": "/tmp/ws",
    "label": "src/pkg",
}


def test_placeholders_are_the_documented_ones() -> None:
    assert ("id", "files", "files_list", "attempt", "run_id", "workspace", "label") == PLACEHOLDERS


def test_parse_keeps_argv_and_reports_used_placeholders() -> None:
    template = CommandTemplate.parse(["agent", "--out=runs/{id}.txt", "{label}", "{files}"])

    assert ("agent", "--out=runs/{id}.txt", "{label}", "{files}") == template.argv
    assert frozenset({"id", "label", "files"}) == template.placeholders


def test_render_substitutes_inside_arguments() -> None:
    template = CommandTemplate.parse(
        ["{workspace}/bin/agent", "--out=runs/{run_id}/{id}-{attempt}.txt", "{label}: {id}"]
    )

    rendered = template.render(VALUES, ["a.py"])

    assert [
        "/tmp/ws/bin/agent",
        "--out=runs/r1/sp-0123456789abcdef-2.txt",
        "src/pkg: sp-0123456789abcdef",
    ] == rendered


def test_files_expands_to_one_argument_per_file_in_place() -> None:
    template = CommandTemplate.parse(["agent", "--", "{files}", "--list", "{files_list}"])

    rendered = template.render(VALUES, ["a.py", "dir/b c.py", "x;y$(z)'\"`"])

    assert [
        "agent",
        "--",
        "a.py",
        "dir/b c.py",
        "x;y$(z)'\"`",
        "--list",
        VALUES["files_list"],
    ] == rendered


def test_files_may_appear_twice_and_may_be_empty() -> None:
    template = CommandTemplate.parse(["agent", "{files}", "{files}"])

    assert ["agent", "a", "b", "a", "b"] == template.render({}, ["a", "b"])
    assert ["agent"] == template.render({}, [])


def test_dash_file_names_cannot_become_options() -> None:
    template = CommandTemplate.parse(["agent", "{files}"])

    rendered = template.render({}, ["-rf", "--help", "-", "a/-b", "ok"])

    assert ["agent", "./-rf", "./--help", "./-", "a/-b", "ok"] == rendered


def test_render_file_arg_refuses_unusable_names() -> None:
    for bad in ("", "a\x00b"):
        with pytest.raises(InputError, match="not a usable file name") as info:
            render_file_arg(bad)
        assert bad == info.value.path


def test_render_refuses_nul_in_a_value() -> None:
    template = CommandTemplate.parse(["agent", "{label}"])

    with pytest.raises(InputError, match=r"value of \{label\} contains a NUL"):
        template.render({"label": "a\x00b"}, [])


def test_double_braces_are_literal() -> None:
    template = CommandTemplate.parse(["printf", "{{id}}", "}}{{", "{{{id}}}", "{{}}"])

    assert frozenset({"id"}) == template.placeholders
    assert ["printf", "{id}", "}{", "{sp-1}", "{}"] == template.render({"id": "sp-1"}, [])


def test_literal_arguments_are_returned_unchanged_and_render_returns_a_new_list() -> None:
    template = CommandTemplate.parse(["agent", "--flag", "a b"])

    first = template.render({}, [])
    first.append("mutated")

    assert frozenset() == template.placeholders
    assert ["agent", "--flag", "a b"] == template.render({}, [])


def test_extra_values_are_ignored_and_files_key_is_never_read() -> None:
    template = CommandTemplate.parse(["agent", "{files}"])

    assert ["agent", "a"] == template.render({"files": "NOT THIS", "other": "x"}, ["a"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["agent", "--x={foo}"],
            f"unknown placeholder {{foo}} in argument 1 ('--x={{foo}}'); {KNOWN}",
        ),
        (
            ["agent", "run", "--x={foo}"],
            f"unknown placeholder {{foo}} in argument 2 ('--x={{foo}}'); {KNOWN}",
        ),
        (["agent", "{}"], f"unknown placeholder {{}} in argument 1 ('{{}}'); {KNOWN}"),
        (["agent", "{ id }"], f"unknown placeholder {{ id }} in argument 1 ('{{ id }}'); {KNOWN}"),
        (["{foo}"], f"unknown placeholder {{foo}} in argument 0 ('{{foo}}'); {KNOWN}"),
        (
            ["agent", "x{"],
            f"unmatched '{{' in argument 1 ('x{{'); write '{{{{' for a literal brace; {KNOWN}",
        ),
        (
            ["agent", "x}y"],
            f"unmatched '}}' in argument 1 ('x}}y'); write '}}}}' for a literal brace; {KNOWN}",
        ),
        (
            ["agent", "{a{id}"],
            f"unmatched '{{' in argument 1 ('{{a{{id}}'); write '{{{{' for a literal brace; "
            f"{KNOWN}",
        ),
        (
            ["agent", "--f={files}"],
            "{files} must be an argument on its own, not part of argument 1 ('--f={files}'); "
            "it expands to one argument per file; "
            "use {files_list} for the path of a file listing them",
        ),
        (
            ["agent", "{files}{files}"],
            "{files} must be an argument on its own, not part of argument 1 "
            "('{files}{files}'); it expands to one argument per file; "
            "use {files_list} for the path of a file listing them",
        ),
        (["{files}", "x"], "the program (argument 0, '{files}') cannot come from {files}"),
        (
            ["{files_list}"],
            "the program (argument 0, '{files_list}') cannot come from {files_list}",
        ),
        (
            ["{workspace}/{files_list}"],
            "the program (argument 0, '{workspace}/{files_list}') cannot come from {files_list}",
        ),
        ([], "no command given"),
        (("agent", 3), "argument 1 (3) is a int, not a string"),
    ],
)
def test_parse_errors_have_exact_one_line_messages(argv: list[str], message: str) -> None:
    with pytest.raises(TemplateError) as info:
        CommandTemplate.parse(argv)

    assert message == str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, SubplanError)


def test_parse_error_carries_its_data() -> None:
    with pytest.raises(TemplateError) as info:
        CommandTemplate.parse(["agent", "run", "--x={foo}"])

    assert ("foo", 2, "--x={foo}") == (
        info.value.placeholder,
        info.value.index,
        info.value.argument,
    )


def test_a_shell_string_is_refused() -> None:
    with pytest.raises(TemplateError) as info:
        CommandTemplate.parse("agent --id {id} {files}")

    assert "a command must be a list of arguments, not a string: 'agent --id {id} {files}'" == str(
        info.value
    )


def test_allowed_restricts_the_names_and_the_message_lists_them() -> None:
    with pytest.raises(TemplateError) as info:
        CommandTemplate.parse(["agent", "{workspace}"], allowed=("id", "files"))

    assert (
        "unknown placeholder {workspace} in argument 1 ('{workspace}'); known: {id}, {files}"
        == str(info.value)
    )


def test_allowed_as_a_set_is_listed_sorted() -> None:
    with pytest.raises(TemplateError, match=r"known: \{files\}, \{id\}$"):
        CommandTemplate.parse(["agent", "{x}"], allowed={"id", "files"})


def test_allowed_may_add_names_and_files_hint_follows_allowed() -> None:
    template = CommandTemplate.parse(["agent", "{branch}"], allowed=(*PLACEHOLDERS, "branch"))
    assert ["agent", "b1"] == template.render({"branch": "b1"}, [])

    with pytest.raises(TemplateError) as info:
        CommandTemplate.parse(["agent", "-{files}"], allowed=("files",))
    assert (
        "{files} must be an argument on its own, not part of argument 1 ('-{files}'); "
        "it expands to one argument per file" == str(info.value)
    )


def test_allowed_as_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not a string"):
        CommandTemplate.parse(["agent", "{files}"], allowed="files")


def test_constructor_checks_syntax_but_not_names() -> None:
    template = CommandTemplate(("agent", "{custom}"))
    assert frozenset({"custom"}) == template.placeholders

    with pytest.raises(TemplateError, match=r"unknown placeholder \{\} in argument 1"):
        CommandTemplate(("agent", "{}"))
    with pytest.raises(TemplateError, match="cannot come from"):
        CommandTemplate(("{files}",))


def test_missing_value_names_placeholder_and_argument() -> None:
    template = CommandTemplate.parse(["agent", "--out={run_id}/{id}"])

    with pytest.raises(TemplateError) as info:
        template.render({"id": "sp-1"}, [])

    assert "no value for placeholder {run_id} in argument 1 ('--out={run_id}/{id}')" == str(
        info.value
    )
    assert ("run_id", 1) == (info.value.placeholder, info.value.index)


def test_templates_are_values() -> None:
    first = CommandTemplate.parse(["agent", "{id}"])
    second = CommandTemplate(("agent", "{id}"))

    assert first == second
    assert hash(first) == hash(second)
    assert "CommandTemplate(argv=('agent', '{id}'))" == repr(first)
    with pytest.raises(AttributeError):
        first.argv = ("other",)  # type: ignore[misc]


def test_template_errors_and_templates_survive_pickling() -> None:
    error = TemplateError("unknown placeholder {x}", placeholder="x", index=1, argument="{x}")
    template = CommandTemplate.parse(["agent", "{id}", "{files}"])

    copy = roundtrip(error)

    assert (str(error), vars(error)) == (str(copy), vars(copy))
    assert template == roundtrip(template)
    assert ["agent", "i", "a"] == roundtrip(template).render({"id": "i"}, ["a"])


# -- properties -------------------------------------------------------------------------------

# File names as subplan produces them: no NUL, no line breaks, relative.
file_names = st.text(
    alphabet=st.characters(blacklist_characters="\x00\n\r", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=20,
).filter(lambda name: not name.startswith("/"))
# Literal arguments: anything, with braces escaped so they stay literal.
literals = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
    max_size=12,
)
value_names = [name for name in PLACEHOLDERS if name != "files"]
# A template item: ("lit", text), ("files", ""), or ("value", name) inside a literal.
items = st.one_of(
    st.tuples(st.just("lit"), literals),
    st.tuples(st.just("files"), st.just("")),
    st.tuples(st.sampled_from(value_names), literals),
)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@given(
    program=literals.filter(bool),
    spec=st.lists(items, max_size=6),
    files=st.lists(file_names, max_size=6),
    values=st.fixed_dictionaries(dict.fromkeys(value_names, literals)),
)
def test_render_never_splits_or_joins_arguments(
    program: str, spec: list[tuple[str, str]], files: list[str], values: dict[str, str]
) -> None:
    argv = [_escape(program)]
    expected: list[str] = [program]
    file_items: list[str] = []
    for kind, text in spec:
        if kind == "lit":
            argv.append(_escape(text))
            expected.append(text)
        elif kind == "files":
            argv.append("{files}")
            rendered = [f"./{f}" if f.startswith("-") else f for f in files]
            expected.extend(rendered)
            file_items.extend(rendered)
        else:
            argv.append(_escape(text) + "{" + kind + "}" + _escape(text))
            expected.append(text + values[kind] + text)
    template = CommandTemplate.parse(argv)

    rendered = template.render(values, files)

    assert expected == rendered
    assert len(argv) + argv.count("{files}") * (len(files) - 1) == len(rendered)
    assert all(not item.startswith("-") for item in file_items)


@given(files=st.lists(file_names, max_size=10))
def test_each_file_becomes_exactly_one_argument_naming_it(files: list[str]) -> None:
    rendered = CommandTemplate.parse(["agent", "{files}"]).render({}, files)[1:]

    assert len(files) == len(rendered)
    for name, item in zip(files, rendered, strict=True):
        assert not item.startswith("-")
        assert item == name or (name.startswith("-") and item == "./" + name)
