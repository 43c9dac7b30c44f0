"""Development sessions for subplan. `nox -l` lists them; `nox` runs the default set."""

from __future__ import annotations

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "unit_tests", "coverage_report", "features"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
COVERAGE_FAIL_UNDER = "97"


def _install(session: nox.Session, *groups: str, editable: bool = True) -> None:
    packages = [p for g in groups for p in nox.project.dependency_groups(PYPROJECT, g)]
    if packages:
        session.install(*packages)
    if editable:
        session.install("-e", ".")


@nox.session
def lint(session: nox.Session) -> None:
    """Lint and check formatting with ruff."""
    _install(session, "lint", editable=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check src, tests, features and benchmarks with mypy --strict."""
    _install(session, "typecheck")
    session.run("mypy", "--strict", *session.posargs)


@nox.session
def unit_tests(session: nox.Session) -> None:
    """Run the pytest suite (unit, property, integration) under coverage."""
    _install(session, "test")
    session.run("coverage", "erase")
    # pyproject's [tool.coverage.run] patch = ["subprocess"] measures child processes too
    # (the CLI run as a subprocess, workers of the process backend).
    session.run("coverage", "run", "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session(requires=["unit_tests"])
def coverage_report(session: nox.Session) -> None:
    """Combine coverage data and fail under 97% (lines and branches)."""
    _install(session, "test", editable=False)
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report", f"--fail-under={COVERAGE_FAIL_UNDER}")


@nox.session
def features(session: nox.Session) -> None:
    """Run the Gherkin features (API and CLI) with behave."""
    _install(session, "features")
    session.run("behave", "--format=progress", *(session.posargs or ["features/"]))


@nox.session(default=False)
def benchmarks(session: nox.Session) -> None:
    """Run the ASV benchmarks once (--quick) against the current environment."""
    _install(session, "benchmarks")
    session.run("asv", "machine", "--yes")
    session.run(
        "asv",
        "run",
        "--quick",
        "--show-stderr",
        "--environment",
        f"existing:{session.virtualenv.location}/bin/python",
        *session.posargs,
    )
