"""RunOptions: validated once, read-only, and stored as the run's config unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execute_helpers import flat_plan
from subplan import ConfigError, Halt, RetryPolicy, RunOptions, open_store, resume, run

NAMES = st.text("abcxyz", min_size=1, max_size=4)


@st.composite
def options(draw: st.DrawFn) -> RunOptions:
    return RunOptions(
        max_parallel=draw(st.integers(1, 500)),
        retries=RetryPolicy(
            retries=draw(st.integers(0, 5)),
            backoff_base=draw(st.floats(0, 10)),
            max_crashes=draw(st.integers(1, 4)),
        ),
        timeout=draw(st.none() | st.floats(0.001, 1e6)),
        dependencies=draw(st.dictionaries(NAMES, st.lists(NAMES, max_size=3), max_size=3)),
        group_caps=draw(st.dictionaries(NAMES, st.integers(1, 9), max_size=3)),
        groups=draw(st.dictionaries(NAMES, st.lists(NAMES, max_size=2), max_size=3)),
        priorities=draw(st.dictionaries(NAMES, st.integers(-5, 5), max_size=3)),
        seed=draw(st.none() | st.integers(0, 2**32)),
        rate_limits=draw(st.booleans()),
        backend=draw(st.sampled_from(["thread", "process"])),
    )


@given(options())
def test_what_the_store_keeps_gives_the_same_options_back(chosen: RunOptions) -> None:
    assert chosen == RunOptions.from_dict(chosen.to_dict())


def test_the_stored_config_has_the_keys_earlier_versions_wrote(tmp_path: Path) -> None:
    report = run(flat_plan(2), lambda s, c: None, run_id="keys", runs_dir=tmp_path, store="")
    assert "succeeded" == report.status
    with open_store(None, tmp_path) as store:
        config = store.get_run("keys").config
    assert {
        "max_parallel",
        "retry",
        "timeout",
        "backend",
        "dependencies",
        "group_caps",
        "groups",
        "priorities",
        "integrate",
        "seed",
        "rate_limits",
        "pool",
        "work",
        "workspaces",
    } == set(config)


def test_a_stored_run_resumes_with_its_own_options(tmp_path: Path) -> None:
    plan = flat_plan(4)
    first_leaf = plan.leaves[0].id
    chosen = RunOptions(max_parallel=3, timeout=30.0, seed=7, priorities={first_leaf: 1})
    calls: list[str] = []

    def fail_once(subplan: object, ctx: object) -> bool:
        calls.append(getattr(subplan, "id", ""))
        return len(calls) > 1

    first = run(plan, fail_once, options=chosen, run_id="r", runs_dir=tmp_path, store="")
    assert "failed" == first.status
    again = resume("r", lambda s, c: None, runs_dir=tmp_path)
    assert "succeeded" == again.status
    with open_store(None, tmp_path) as store:
        stored = RunOptions.from_dict(store.get_run("r").config)
    assert chosen == stored


def test_options_and_option_keywords_are_not_both_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        run(
            flat_plan(1), lambda s, c: None, options=RunOptions(), max_parallel=3, runs_dir=tmp_path
        )


def test_the_mappings_are_copied_and_read_only() -> None:
    caps = {"a": 1}
    chosen = RunOptions(group_caps=caps, dependencies={"b": ["a"]})
    caps["a"] = 5
    assert 1 == chosen.group_caps["a"]
    assert ("a",) == chosen.dependencies["b"]
    with pytest.raises(TypeError):
        chosen.group_caps["a"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_parallel": 0}, "max_parallel must be >= 1"),
        ({"max_parallel": True}, "max_parallel must be an integer"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"timeout": "5"}, "timeout must be > 0"),
        ({"backend": "cloud"}, "unknown backend 'cloud'"),
        ({"scheduler": "tcp://h:8786"}, "needs backend='dask'"),
        ({"rate_limits": "yes"}, "rate_limits must be"),
        ({"halt": "soon"}, "halt must be a Halt"),
        ({"dependencies": {"b": "a"}}, "must be a list of names"),
    ],
)
def test_a_bad_option_is_one_clear_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunOptions(**changes)  # type: ignore[arg-type]


def test_replace_checks_again() -> None:
    with pytest.raises(ConfigError, match="max_parallel"):
        RunOptions().replace(max_parallel=-1)
    assert Halt("soon", 2) == RunOptions().replace(halt=Halt("soon", 2)).halt
