"""The PostgreSQL server the tests run against, or a clear skip (or failure) without one.

``$SUBPLAN_TEST_POSTGRES_URL`` names the server (``.ci/postgres.sh`` starts one; the nox
sessions start it themselves when the variable is unset). With
``$SUBPLAN_TEST_REQUIRE_POSTGRES`` set (the nox sessions set it), a missing URL fails the
test instead of skipping it, so a suite that claims to cover PostgreSQL cannot quietly not.
"""

from __future__ import annotations

import os

import pytest

POSTGRES_ENV = "SUBPLAN_TEST_POSTGRES_URL"
REQUIRE_ENV = "SUBPLAN_TEST_REQUIRE_POSTGRES"


def postgres_url() -> str:
    """The test server's URL; skips the test (or fails it, when required) without one."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    message = f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{message} (and {REQUIRE_ENV} says one is required)")
    pytest.skip(message)
