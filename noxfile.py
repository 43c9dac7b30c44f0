"""Development sessions for subplan. `nox -l` lists them; `nox` runs the default set."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "unit_tests", "coverage_report", "features"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
COVERAGE_FAIL_UNDER = "97"
POSTGRES_ENV = "SUBPLAN_TEST_POSTGRES_URL"
POSTGRES_SCRIPT = Path(__file__).parent / ".ci" / "postgres.sh"


def _install(session: nox.Session, *groups: str, editable: bool = True) -> None:
    packages = [p for g in groups for p in nox.project.dependency_groups(PYPROJECT, g)]
    if packages:
        session.install(*packages)
    if editable:
        session.install("-e", ".")


def _postgres_env(session: nox.Session) -> dict[str, str]:
    """The environment that points the tests at a PostgreSQL server, starting one if needed.

    ``$SUBPLAN_TEST_POSTGRES_URL`` wins when set; otherwise ``.ci/postgres.sh`` installs
    (from Debian's packages) and starts a throwaway server on loopback. The tests are told
    the server is required, so none of them can skip for want of it.
    """
    url = os.environ.get(POSTGRES_ENV)
    restart = os.environ.get("SUBPLAN_TEST_POSTGRES_RESTART")
    if not url:
        session.log("no $%s: starting a test server with %s", POSTGRES_ENV, POSTGRES_SCRIPT)
        done = subprocess.run(
            ["bash", str(POSTGRES_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
        )
        url = done.stdout.strip()
        if done.returncode != 0 or not url:
            session.error(
                f"{POSTGRES_SCRIPT} could not start PostgreSQL (exit {done.returncode}); "
                f"set ${POSTGRES_ENV} to a server's URL instead"
            )
        # a server of our own may be restarted (the lost-run-lock test needs that)
        restart = restart or f"bash {POSTGRES_SCRIPT} restart"
    env = {POSTGRES_ENV: url, "SUBPLAN_TEST_REQUIRE_POSTGRES": "1"}
    if restart:
        env["SUBPLAN_TEST_POSTGRES_RESTART"] = restart
    return env


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
    session.run(
        "coverage", "run", "-m", "pytest", *(session.posargs or ["-q"]), env=_postgres_env(session)
    )


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
