"""One error tree: every error subplan defines lives in ``_errors.py`` and is drawn there."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import subplan
from subplan import _errors

# Signals and test helpers, not errors: work raises RateLimited to ask for a pause, and
# the scripted work of subplan.testing raises its own on purpose.
NOT_ERRORS = {"subplan._ratelimit._detector.RateLimited", "subplan.testing._scripted.ScriptedError"}


def defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(subplan.__path__, "subplan."):
        if info.name == "subplan.__main__":  # runs the command when imported
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_error_is_defined_in_the_error_module() -> None:
    outside = sorted(set(defined_exceptions()) - NOT_ERRORS)
    assert [n for n in outside if not n.startswith("subplan._errors.")] == []


def test_every_error_derives_from_subplan_error_and_is_drawn_in_the_tree() -> None:
    tree = _errors.__doc__ or ""
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        assert issubclass(cls, _errors.SubplanError), name
        drawn = re.findall(rf"^ {{4}}(?:[│ ]*[├└]── )?{name}\b", tree, flags=re.MULTILINE)
        assert 1 == len(drawn), f"{name} is drawn {len(drawn)} times in the tree"


def test_the_public_package_exports_every_error() -> None:
    assert set(_errors.__all__) <= set(subplan.__all__)
